package webhook_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/webhook"
)

var sets = []sqldb.Migrations{bus.Migrations, webhook.Migrations}

// received is one request the receiver got.
type received struct {
	header http.Header
	body   []byte
}

// answer is what the receiver sends back.
type answer struct {
	status int
	header map[string]string
	body   string
}

// receiver is a real HTTP server standing in for a merchant's system. It records every request and
// answers with respond (200 by default).
type receiver struct {
	srv *httptest.Server

	mu      sync.Mutex
	got     []received
	respond func(n int, r *http.Request) answer
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.got)
		rc.got = append(rc.got, received{header: r.Header.Clone(), body: body})
		respond := rc.respond
		rc.mu.Unlock()
		a := answer{status: http.StatusOK, body: "ok"}
		if respond != nil {
			a = respond(n, r)
		}
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) answer(fn func(n int, r *http.Request) answer) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.respond = fn
}

func (rc *receiver) always(a answer) { rc.answer(func(int, *http.Request) answer { return a }) }

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

type testBundle struct {
	db     *sqldb.DB
	svc    *webhook.Service
	disp   *webhook.Dispatcher
	clock  *clock.Fake
	recv   *receiver
	reg    *prometheus.Registry
	tenant string
}

// setup builds a service on db with a fake clock at the current second (so the official library's
// timestamp tolerance accepts what it signs), a receiver and a dispatcher allowed to reach it.
func setup(t *testing.T, db *sqldb.DB) *testBundle {
	t.Helper()
	c := clock.NewFake(time.Now().Truncate(time.Second))
	reg := prometheus.NewRegistry()
	svc := webhook.New(db, webhook.Options{Clock: c, Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	return &testBundle{db: db, svc: svc, clock: c, recv: newReceiver(t), reg: reg,
		disp:   svc.NewDispatcher(webhook.DispatcherOptions{AllowPrivateNetworks: true, Timeout: 5 * time.Second}),
		tenant: ids.New("mch", c.Now())}
}

func (b *testBundle) endpoint(t *testing.T, types ...string) webhook.NewEndpoint {
	t.Helper()
	ne, err := b.svc.CreateEndpoint(t.Context(), webhook.CreateEndpointParams{TenantID: b.tenant, URL: b.recv.srv.URL,
		Description: "test receiver", EventTypes: types})
	require.NoError(t, err)
	return ne
}

func (b *testBundle) event(eventType string) bus.Event {
	return bus.Event{ID: ids.New("evt", b.clock.Now()), Type: eventType, TenantID: b.tenant, UserID: "u-1",
		SourceKind: "grant", SourceID: "grt_1", Time: b.clock.Now(), Data: []byte(`{"amount":100}`)}
}

// fanout queues deliveries of events with one Fanout in one transaction and returns how many it
// queued.
func (b *testBundle) fanout(t *testing.T, events ...bus.Event) int {
	t.Helper()
	var queued int
	require.NoError(t, b.db.Tx(t.Context(), func(tx *sqldb.Tx) error {
		var err error
		queued, err = b.svc.Fanout(t.Context(), tx, events...)
		return err
	}))
	return queued
}

func (b *testBundle) dispatch(t *testing.T) int {
	t.Helper()
	n, err := b.disp.DispatchDue(t.Context())
	require.NoError(t, err)
	return n
}

func (b *testBundle) delivery(t *testing.T, id string) webhook.DeliveryDetail {
	t.Helper()
	d, err := b.svc.GetDelivery(t.Context(), b.tenant, id)
	require.NoError(t, err)
	return d
}

func (b *testBundle) deliveries(t *testing.T, endpointID string, states ...webhook.DeliveryState) []webhook.Delivery {
	t.Helper()
	page, err := b.svc.ListDeliveries(t.Context(), webhook.ListDeliveriesParams{TenantID: b.tenant,
		EndpointID: endpointID, States: states, Limit: 200})
	require.NoError(t, err)
	return page.Items
}

func count(t *testing.T, db *sqldb.DB, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.Reader().QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// requireProblem checks a domain error's kind, code and field paths.
func requireProblem(t *testing.T, err error, kind problem.Kind, code string, paths ...string) {
	t.Helper()
	e, ok := problem.As(err)
	require.True(t, ok, "want a problem, got %v", err)
	require.Equal(t, kind, e.Kind, e.Error())
	if code != "" {
		require.Equal(t, code, e.Slug())
	}
	var got []string
	for _, f := range e.Fields {
		got = append(got, f.Path)
	}
	require.ElementsMatch(t, paths, got, e.Error())
}
