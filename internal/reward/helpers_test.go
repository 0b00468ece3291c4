package reward_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/reward"
)

var sets = []sqldb.Migrations{bus.Migrations, ledger.Migrations, catalog.Migrations, reward.Migrations}

const (
	tenantA = "mch_a"
	tenantB = "mch_b"
	actor   = "usr_ops"
)

type testBundle struct {
	db      *sqldb.DB
	clock   *clock.Fake
	ledger  *ledger.Service
	catalog *catalog.Service
	catReg  *catalog.Registry
	svc     *reward.Service
	opts    reward.Options
}

// setup builds a reward service on db with a real ledger and config center; tweak adjusts the
// options before the service is built.
func setup(t *testing.T, db *sqldb.DB, tweak ...func(*reward.Options)) *testBundle {
	t.Helper()
	b := &testBundle{db: db, clock: clock.NewFake(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))}
	var err error
	b.ledger, err = ledger.New(db, ledger.Options{Clock: b.clock})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.ledger.Close() })
	b.catReg = catalog.NewRegistry()
	b.catalog = catalog.New(db, catalog.Options{Registry: b.catReg, Clock: b.clock})
	b.opts = reward.Options{Clock: b.clock, Ledger: b.ledger, Events: outboxEvents,
		Flows: reward.CatalogFlows{Catalog: b.catalog}, Node: "test", Lease: time.Minute,
		RetryBase: 10 * time.Second, MaxBackoff: 10 * time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, fn := range tweak {
		fn(&b.opts)
	}
	b.svc = b.newService(t)
	require.NoError(t, reward.RegisterKinds(b.catReg, b.svc.Components()))
	return b
}

// newService builds another executor on the same database (a "restarted" node), with the
// bundle's options changed by tweak.
func (b *testBundle) newService(t *testing.T, tweak ...func(*reward.Options)) *reward.Service {
	t.Helper()
	opts := b.opts
	opts.Components = reward.NewRegistry()
	if b.opts.Components != nil {
		for _, name := range b.opts.Components.Names() {
			c, _ := b.opts.Components.Get(name)
			if _, builtIn := builtIns[name]; !builtIn {
				require.NoError(t, opts.Components.Register(c))
			}
		}
	}
	for _, fn := range tweak {
		fn(&opts)
	}
	svc, err := reward.New(b.db, opts)
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	return svc
}

var builtIns = map[string]bool{reward.ComponentGrantPoints: true, reward.ComponentGrantGrowth: true,
	reward.ComponentIssueCoupon: true, reward.ComponentCallExternal: true, reward.ComponentEmitEvent: true}

// withComponents registers extra components on every service the bundle builds.
func withComponents(cs ...reward.Component) func(*reward.Options) {
	return func(o *reward.Options) {
		o.Components = reward.NewRegistry()
		for _, c := range cs {
			if err := o.Components.Register(c); err != nil {
				panic(err)
			}
		}
	}
}

// flaky is a database component that fails while failing is set.
type flaky struct {
	mu      sync.Mutex
	failing bool
	calls   int
}

func (f *flaky) Name() string                   { return "flaky" }
func (f *flaky) Validate(json.RawMessage) error { return nil }

func (f *flaky) RunTx(_ context.Context, _ reward.StepContext) (json.RawMessage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.failing {
		return nil, errors.New("flaky is down")
	}
	return json.RawMessage(`{"ok":true}`), nil
}

func (f *flaky) set(failing bool) {
	f.mu.Lock()
	f.failing = failing
	f.mu.Unlock()
}

// coupons is a CouponIssuer that remembers what it issued, by business key.
type coupons struct {
	mu     sync.Mutex
	issued map[string]reward.IssueCouponParams
}

func (c *coupons) IssueTx(_ context.Context, _ *sqldb.Tx, p reward.IssueCouponParams) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.issued == nil {
		c.issued = map[string]reward.IssueCouponParams{}
	}
	c.issued[p.BusinessKey] = p
	return "cpn_" + p.Template, nil
}

// outboxEvents writes events to the outbox under "test.<type>", so tests can count them.
func outboxEvents(ctx context.Context, tx *sqldb.Tx, events ...bus.Event) error {
	for _, e := range events {
		data, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := bus.Enqueue(ctx, tx, bus.Message{Subject: "test." + e.Type, ID: e.ID, Data: data}); err != nil {
			return err
		}
	}
	return nil
}

// eventCount counts the outbox events of a type about a grant ("" for any grant).
func eventCount(t *testing.T, db *sqldb.DB, typ, grantID string) int {
	t.Helper()
	rows, err := db.Reader().Query(context.Background(), `SELECT payload FROM bus_outbox WHERE subject = $1`, "test."+typ)
	require.NoError(t, err)
	defer rows.Close()
	n := 0
	for rows.Next() {
		var payload []byte
		require.NoError(t, rows.Scan(&payload))
		var e bus.Event
		require.NoError(t, json.Unmarshal(payload, &e))
		if grantID == "" || e.SourceID == grantID {
			n++
		}
	}
	require.NoError(t, rows.Err())
	return n
}

// publishFlow creates (or updates) and publishes flow key with spec, returning the version.
func (b *testBundle) publishFlow(t *testing.T, tenant, key, spec string) int {
	t.Helper()
	ctx := context.Background()
	r, err := b.catalog.Get(ctx, catalog.GetParams{TenantID: tenant, Kind: reward.KindFlow, Key: key})
	if problem.Is(err, problem.KindNotFound) {
		r, err = b.catalog.Create(ctx, catalog.CreateParams{TenantID: tenant, Kind: reward.KindFlow, Key: key,
			Spec: json.RawMessage(spec), Actor: actor})
	} else if err == nil {
		r, err = b.catalog.UpdateDraft(ctx, catalog.UpdateDraftParams{TenantID: tenant, ID: r.ID,
			Revision: r.DraftRevision, Spec: json.RawMessage(spec), Actor: actor})
	}
	require.NoError(t, err)
	v, err := b.catalog.Publish(ctx, catalog.PublishParams{TenantID: tenant, ID: r.ID, Actor: actor})
	require.NoError(t, err)
	return v.Version
}

// publishErr publishes spec as a new flow and returns the publish error.
func (b *testBundle) publishErr(t *testing.T, key, spec string) error {
	t.Helper()
	ctx := context.Background()
	r, err := b.catalog.Create(ctx, catalog.CreateParams{TenantID: tenantA, Kind: reward.KindFlow, Key: key,
		Spec: json.RawMessage(spec), Actor: actor})
	if err != nil {
		return err
	}
	_, err = b.catalog.Publish(ctx, catalog.PublishParams{TenantID: tenantA, ID: r.ID, Actor: actor})
	return err
}

// create makes a grant with inline rewards (or a flow) in its own transaction, without running it.
func (b *testBundle) create(t *testing.T, p reward.CreateParams) reward.Grant {
	t.Helper()
	var g reward.Grant
	err := b.db.Tx(context.Background(), func(tx *sqldb.Tx) error {
		var err error
		g, _, err = b.svc.CreateTx(context.Background(), tx, p)
		return err
	})
	require.NoError(t, err)
	return g
}

func pointsParams(user, source string, amount int64) reward.CreateParams {
	return reward.CreateParams{TenantID: tenantA, UserID: user, SourceKind: "task", SourceID: source,
		Rewards: []reward.Reward{{Type: reward.RewardPoints, Amount: amount}}}
}

// balance is the user's balance in an asset.
func (b *testBundle) balance(t *testing.T, tenant, user, asset string) int64 {
	t.Helper()
	accounts, err := b.ledger.Accounts(context.Background(), tenant, user)
	require.NoError(t, err)
	for _, a := range accounts {
		if a.Asset == asset {
			return a.Balance
		}
	}
	return 0
}

// entries counts ledger entries by business key prefix (a grant id).
func (b *testBundle) entries(t *testing.T, tenant, grantID string) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Reader().QueryRow(context.Background(), `SELECT COUNT(*) FROM ledger_entries
		WHERE tenant_id = $1 AND source_kind = 'grant' AND source_id = $2`, tenant, grantID).Scan(&n))
	return n
}

func (b *testBundle) verifyLedger(t *testing.T) {
	t.Helper()
	r, err := b.ledger.Verify(context.Background())
	require.NoError(t, err)
	require.True(t, r.OK(), "ledger verify: %v", r.Mismatches)
}

func requireProblem(t *testing.T, err error, kind problem.Kind, fields ...string) *problem.Error {
	t.Helper()
	require.Error(t, err)
	p, ok := problem.As(err)
	require.True(t, ok, "want a problem error, got %v", err)
	require.Equal(t, kind, p.Kind, "%v", err)
	paths := make([]string, len(p.Fields))
	for i, f := range p.Fields {
		paths[i] = f.Path
	}
	for _, f := range fields {
		require.Contains(t, paths, f, "%v", err)
	}
	return p
}

// merchant is a merchant system that call_external talks to: it applies each idempotency key once
// and answers with the configured status.
type merchant struct {
	srv    *httptest.Server
	secret string

	mu     sync.Mutex
	status string // done, pending, failed, or "500"
	// failFirst, when set, answers 500 to the first call with a key it picks.
	failFirst func(key string) bool
	failed    map[string]bool
	calls     int
	applied   map[string]int // idempotency key → times the effect was applied
	bodies    map[string][]byte
	badSigs   int
}

func newMerchant(t *testing.T, status string) *merchant {
	t.Helper()
	m := &merchant{secret: "merchant-secret-0123456789", status: status, applied: map[string]int{},
		bodies: map[string][]byte{}, failed: map[string]bool{}}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *merchant) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key, err := strconv.Unquote(r.Header.Get("Idempotency-Key"))
	var req struct {
		GrantID string `json:"grant_id"`
		Step    string `json:"step"`
	}
	_ = json.Unmarshal(body, &req)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if err != nil || !reward.Verify(m.secret, req.GrantID, req.Step, body, r.Header.Get(reward.SignatureHeader)) {
		m.badSigs++
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if prev, seen := m.bodies[key]; seen && string(prev) != string(body) {
		http.Error(w, "idempotency key reused with another body", http.StatusUnprocessableEntity)
		return
	}
	m.bodies[key] = body
	if m.failFirst != nil && m.failFirst(key) && !m.failed[key] {
		m.failed[key] = true
		http.Error(w, "first call fails", http.StatusInternalServerError)
		return
	}
	switch m.status {
	case "500":
		http.Error(w, "down", http.StatusInternalServerError)
		return
	case "done":
		if m.applied[key] == 0 {
			m.applied[key]++
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"` + m.status + `","output":{"order":"o-1"},"error":"out of stock"}`))
}

func (m *merchant) set(status string) {
	m.mu.Lock()
	m.status = status
	m.mu.Unlock()
}

func (m *merchant) stats() (calls int, applied map[string]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for k, v := range m.applied {
		out[k] = v
	}
	return m.calls, out
}

// externalFlow is a flow spec: points, then a call to the merchant, then growth.
func (m *merchant) externalFlow(extra string) string {
	return `{"steps":[
		{"name":"points","component":"grant_points","params":{"amount":10}},
		{"name":"notify","component":"call_external","params":{"url":"` + m.srv.URL + `","secret":"` + m.secret + `"` + extra + `}},
		{"name":"growth","component":"grant_growth","params":{"amount":3}}
	],"max_attempts":5}`
}
