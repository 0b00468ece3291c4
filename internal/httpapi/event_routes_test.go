package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ingest"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/idem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/tenant"
)

// eventsAPI is a server with the events route on an embedded bus, idempotent writes on SQL, the
// usual merchant keys, an integration key, and a server-wide body limit of 4 KiB.
type eventsAPI struct {
	*testBundle
	integration string
	bus         *bus.Bus
}

// The ingest limits of the HTTP tests: 50 events of at most 1 KiB, so a 50 KiB body.
const (
	eventsMaxBatch = 50
	eventsMaxEvent = 1024
)

func setupEventsAPI(t *testing.T) *eventsAPI {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldb.SQLite, []sqldb.Migrations{tenant.Migrations, idem.Migrations})
	tenants := tenant.New(db, tenant.Options{})
	keyFile := filepath.Join(t.TempDir(), "platform-key")
	_, err := tenants.EnsurePlatformKey(ctx, keyFile)
	require.NoError(t, err)
	nm, err := tenants.CreateMerchant(ctx, tenant.CreateMerchantParams{Name: "Shop", Actor: "test"})
	require.NoError(t, err)
	viewer, err := tenants.CreateKey(ctx, tenant.CreateKeyParams{TenantID: nm.Merchant.ID, Name: "v", Role: tenant.RoleViewer})
	require.NoError(t, err)
	integ, err := tenants.CreateKey(ctx, tenant.CreateKeyParams{TenantID: nm.Merchant.ID, Name: "i", Role: tenant.RoleIntegration})
	require.NoError(t, err)
	tok, err := tenants.IssueUserToken(ctx, tenant.IssueUserTokenParams{TenantID: nm.Merchant.ID, UserID: "u-1"})
	require.NoError(t, err)
	idemSvc, err := idem.NewService(idem.ServiceOptions{Storages: map[string]idem.Storage{idem.StorageSQL: idem.NewSQLStorage(db, nil)}})
	require.NoError(t, err)
	b := bustest.NewEnv(t, bustest.Embedded).Open(t, bus.Options{})
	events := ingest.New(b, ingest.Options{MaxBatch: eventsMaxBatch, MaxEventBytes: eventsMaxEvent, Logger: slog.New(slog.DiscardHandler)})
	s := New(Deps{Tenants: tenants, Ingest: events, Idem: idemSvc, Registry: prometheus.NewRegistry(), MaxBodyBytes: 4096,
		Version: "test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &eventsAPI{testBundle: &testBundle{srv: srv, platform: readKey(t, keyFile), admin: nm.AdminKey.Secret,
		viewer: viewer.Secret, token: tok.Token, merchant: nm.Merchant.ID}, integration: integ.Secret, bus: b}
}

// cloudEvent is a valid event as JSON; extra is spliced in as more members (e.g. `"time":"…"`).
func cloudEvent(id string, extra ...string) string {
	e := `{"specversion":"1.0","id":"` + id + `","source":"/shop/orders","type":"order.paid","subject":"u-1","data":{"amount":1299}`
	for _, x := range extra {
		e += "," + x
	}
	return e + "}"
}

// cloudBatch is n valid events with ids prefix0 … prefix(n-1), as a JSON array.
func cloudBatch(prefix string, n int) string {
	events := make([]string, n)
	for i := range events {
		events[i] = cloudEvent(prefix + strconv.Itoa(i))
	}
	return "[" + strings.Join(events, ",") + "]"
}

func (a *eventsAPI) stored(t *testing.T) uint64 {
	t.Helper()
	st, err := a.bus.Stats(context.Background(), bus.Events)
	require.NoError(t, err)
	return st.Messages
}

func TestEventRoutes(t *testing.T) {
	t.Parallel()
	a := setupEventsAPI(t)
	asIntegration := func(*testBundle) string { return a.integration }
	const (
		single = ingest.ContentTypeEvent
		batch  = ingest.ContentTypeBatch
	)
	big := cloudBatch("big-", 40) // about 4.5 KiB: over the server-wide limit, within the route's
	require.Greater(t, len(big), 4096)
	for _, sc := range []scenario{
		{name: "no credentials", method: "POST", path: "/v1/events", contentType: single, body: cloudEvent("e0"),
			wantStatus: 401, wantType: "unauthenticated"},
		{name: "viewer key cannot send", method: "POST", path: "/v1/events", bearer: asViewer, contentType: single,
			body: cloudEvent("e0"), wantStatus: 403, wantType: "forbidden"},
		{name: "user token cannot send", method: "POST", path: "/v1/events", bearer: asUser, contentType: single,
			body: cloudEvent("e0"), wantStatus: 403, wantType: "forbidden"},
		{name: "platform key cannot send", method: "POST", path: "/v1/events", bearer: asPlatform, contentType: single,
			body: cloudEvent("e0"), wantStatus: 403, wantType: "forbidden"},
		{name: "single cloudevent", method: "POST", path: "/v1/events", bearer: asIntegration, contentType: single,
			body: cloudEvent("e1"), wantStatus: 202,
			wantBody: []string{`"accepted":1`, `"results":[{"index":0,"id":"e1","status":"accepted"}]`}},
		{name: "admin key sends too", method: "POST", path: "/v1/events", bearer: asAdmin, contentType: single + "; charset=utf-8",
			body: cloudEvent("e2"), wantStatus: 202, wantBody: []string{`"accepted":1`}},
		{name: "batch", method: "POST", path: "/v1/events", bearer: asIntegration, contentType: batch,
			body: cloudBatch("b-", 3), wantStatus: 202, wantBody: []string{`"accepted":3`, `"id":"b-2","status":"accepted"`}},
		{name: "plain json array", method: "POST", path: "/v1/events", bearer: asIntegration,
			body: cloudBatch("j-", 2), wantStatus: 202, wantBody: []string{`"accepted":2`}},
		{name: "plain json object", method: "POST", path: "/v1/events", bearer: asIntegration,
			body: cloudEvent("j-obj"), wantStatus: 202, wantBody: []string{`"accepted":1`}},
		{name: "body over the server-wide limit", method: "POST", path: "/v1/events", bearer: asIntegration, contentType: batch,
			body: big, wantStatus: 202, wantBody: []string{`"accepted":40`}},
		{name: "partial batch", method: "POST", path: "/v1/events", bearer: asIntegration, contentType: batch,
			body: "[" + cloudEvent("p-1") + "," + cloudEvent("p-2", `"time":"2001-01-01T00:00:00Z"`) + "," +
				`{"specversion":"1.0","id":"p-3"}` + "," + cloudEvent("p-1") + "]",
			wantStatus: 202, wantBody: []string{`"accepted":1,"duplicates":1,"rejected":2,"failed":0`,
				`{"index":1,"id":"p-2","status":"rejected","reason":"too_late"`,
				`{"index":2,"id":"p-3","status":"rejected","reason":"missing_attribute"`,
				`{"index":3,"id":"p-1","status":"duplicate"`}},
		{name: "resend is a duplicate", method: "POST", path: "/v1/events", bearer: asIntegration, contentType: single,
			body: cloudEvent("e1"), wantStatus: 202, wantBody: []string{`"accepted":0,"duplicates":1`, `"status":"duplicate"`}},
		{name: "invalid single event", method: "POST", path: "/v1/events", bearer: asIntegration, contentType: single,
			body: cloudEvent("bad", `"subject":"not a user"`), wantStatus: 422, wantType: "invalid",
			wantBody: []string{`"reason":"invalid_attribute"`, `"location":"body.subject"`}},
		{name: "single event too late", method: "POST", path: "/v1/events", bearer: asIntegration, contentType: single,
			body: cloudEvent("old", `"time":"2001-01-01T00:00:00Z"`), wantStatus: 422, wantType: "invalid",
			wantBody: []string{`"reason":"too_late"`, `"location":"body.time"`}},
		{name: "unsupported content type", method: "POST", path: "/v1/events", bearer: asIntegration, contentType: "text/plain",
			body: cloudEvent("t"), wantStatus: 415, wantType: "unsupported-media", wantBody: []string{ingest.ContentTypeBatch}},
		{name: "not json", method: "POST", path: "/v1/events", bearer: asIntegration, contentType: batch,
			body: `[{"id":`, wantStatus: 400, wantType: "bad-request"},
		{name: "no body", method: "POST", path: "/v1/events", bearer: asIntegration, wantStatus: 400, wantType: "bad-request"},
		{name: "empty batch", method: "POST", path: "/v1/events", bearer: asIntegration, contentType: batch,
			body: `[]`, wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body"`}},
		{name: "batch over the event limit", method: "POST", path: "/v1/events", bearer: asIntegration, contentType: batch,
			body: cloudBatch("over-", eventsMaxBatch+1), wantStatus: 413, wantType: "too-large",
			wantBody: []string{"the limit is 50"}},
		{name: "body over the route limit", method: "POST", path: "/v1/events", bearer: asIntegration, contentType: batch,
			body: "[" + strings.Repeat(" ", eventsMaxBatch*eventsMaxEvent) + "]", wantStatus: 413, wantType: "too-large"},
		{name: "other routes keep the server-wide limit", method: "POST", path: "/v1/merchants", bearer: asPlatform,
			body: `{"name":"` + strings.Repeat("x", 5000) + `"}`, wantStatus: 413, wantType: "too-large"},
		{name: "GET is not allowed", method: "GET", path: "/v1/events", bearer: asIntegration, wantStatus: 405,
			wantType: "method-not-allowed"},
		{name: "in the OpenAPI document", method: "GET", path: "/openapi.json", wantStatus: 200,
			wantBody: []string{`"/v1/events"`, `"send-events"`, `"application/cloudevents+json"`,
				`"application/cloudevents-batch+json"`, `"#/components/schemas/CloudEvent"`, `"IngestResult"`, `"maxItems":50`, "At most 50 events of at most 1 KiB each"}},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, a.testBundle) })
	}
	// e1, e2, b-0…2, j-0…1, j-obj, big-0…39, p-1
	require.EqualValues(t, 49, a.stored(t), "refused requests and duplicates stored nothing")
}

// postEvents sends body with an optional Idempotency-Key and returns the status, body and headers.
func (a *eventsAPI) postEvents(t *testing.T, key, contentType string, body io.Reader) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("POST", a.srv.URL+"/v1/events", body)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+a.integration)
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set(idem.KeyHeader, `"`+key+`"`)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(raw), resp.Header
}

func TestEventsIdempotencyKey(t *testing.T) {
	t.Parallel()
	a := setupEventsAPI(t)
	body := cloudBatch("k-", 40) // over the server-wide 4 KiB: the idempotency layer buffers it whole
	status, first, h := a.postEvents(t, "batch-1", ingest.ContentTypeBatch, strings.NewReader(body))
	require.Equal(t, 202, status, first)
	require.Empty(t, h.Get(idem.ReplayedHeader))
	require.Contains(t, first, `"accepted":40`)

	status, again, h := a.postEvents(t, "batch-1", ingest.ContentTypeBatch, strings.NewReader(body))
	require.Equal(t, 202, status, again)
	require.Equal(t, "true", h.Get(idem.ReplayedHeader))
	require.JSONEq(t, first, again, "the first answer is replayed, not re-run (which would say duplicate)")

	status, other, _ := a.postEvents(t, "batch-1", ingest.ContentTypeBatch, strings.NewReader(cloudBatch("k2-", 2)))
	require.Equal(t, 422, status, other)
	require.Contains(t, other, "idempotency-key-mismatch")

	status, dup, _ := a.postEvents(t, "batch-2", ingest.ContentTypeBatch, strings.NewReader(body))
	require.Equal(t, 202, status, dup)
	require.Contains(t, dup, `"accepted":0,"duplicates":40`, "a new key re-runs: the events are duplicates")
	require.EqualValues(t, 40, a.stored(t))
}

func TestEventsChunkedBodyOverTheLimit(t *testing.T) {
	t.Parallel()
	a := setupEventsAPI(t)
	// a reader of unknown length is sent chunked: no Content-Length to refuse early
	body := io.MultiReader(strings.NewReader("["), strings.NewReader(strings.Repeat(" ", eventsMaxBatch*eventsMaxEvent)),
		strings.NewReader(cloudEvent("c")+"]"))
	status, raw, _ := a.postEvents(t, "", ingest.ContentTypeBatch, body)
	require.Equal(t, 413, status, raw)
	require.Contains(t, raw, ProblemTypeBase+"too-large")

	status, raw, _ = a.postEvents(t, "", ingest.ContentTypeBatch, io.MultiReader(strings.NewReader(cloudBatch("c-", 3))))
	require.Equal(t, 202, status, raw)
	require.EqualValues(t, 3, a.stored(t))
}

func TestEventsBusDownIsUnavailable(t *testing.T) {
	t.Parallel()
	a := setupEventsAPI(t)
	require.NoError(t, a.bus.Close())
	for _, body := range []string{cloudEvent("d-1"), cloudBatch("d-", 5)} {
		status, raw, _ := a.postEvents(t, "down-"+strconv.Itoa(len(body)), ingest.ContentTypeJSON, strings.NewReader(body))
		require.Equal(t, 503, status, raw)
		require.Contains(t, raw, ProblemTypeBase+"unavailable")
		require.NotContains(t, raw, `"accepted"`)
	}
}

// BenchmarkEventsHTTP measures events per second through POST /v1/events (authentication, the
// middleware chain, huma, ingest and the embedded JetStream) from an httptest server, in batches
// of 100 and 1000 new events, with 1 and 4 concurrent clients. Every event must be accepted.
//
//	go test -run '^$' -bench BenchmarkEventsHTTP -benchtime 100x ./internal/httpapi/
func BenchmarkEventsHTTP(b *testing.B) {
	ctx := context.Background()
	db := sqldbtest.Open(b, sqldb.SQLite, []sqldb.Migrations{tenant.Migrations})
	tenants := tenant.New(db, tenant.Options{})
	nm, err := tenants.CreateMerchant(ctx, tenant.CreateMerchantParams{Name: "Bench", Actor: "bench"})
	require.NoError(b, err)
	bs := bustest.NewEnv(b, bustest.Embedded).Open(b, bus.Options{})
	s := New(Deps{Tenants: tenants, Ingest: ingest.New(bs, ingest.Options{Logger: slog.New(slog.DiscardHandler)}),
		Version: "bench", Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(s.Handler())
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	run := 0
	for _, size := range []int{100, 1000} {
		for _, clients := range []int{1, 4} {
			b.Run(fmt.Sprintf("batch-%d/clients-%d", size, clients), func(b *testing.B) {
				run++
				bodies := make([]string, b.N)
				for i := range bodies {
					bodies[i] = benchEvents(fmt.Sprintf("r%d-%d-", run, i), size)
				}
				var next, accepted atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				var wg sync.WaitGroup
				for range clients {
					wg.Go(func() {
						for {
							i := int(next.Add(1)) - 1
							if i >= len(bodies) {
								return
							}
							n, err := postBench(client, srv.URL, nm.AdminKey.Secret, bodies[i])
							if err != nil {
								b.Error(err)
								return
							}
							accepted.Add(int64(n))
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				require.EqualValues(b, b.N*size, accepted.Load())
				b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

func postBench(client *http.Client, url, key, body string) (int, error) {
	req, err := http.NewRequest("POST", url+"/v1/events", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", ingest.ContentTypeBatch)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var res ingest.Result
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("status %d, decode: %v", resp.StatusCode, err)
	}
	return res.Accepted, nil
}

// benchEvents is a batch of n realistic events (about 230 bytes each, 10,000 users), without time.
func benchEvents(prefix string, n int) string {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		id := prefix + strconv.Itoa(i)
		fmt.Fprintf(&sb, `{"specversion":"1.0","id":%q,"source":"/shop/orders","type":"order.paid","subject":"user-%d",`+
			`"data":{"amount":%d,"order_id":%q,"channel":"app"}}`, id, i*7919%10_000, 100+i%5000, id)
	}
	sb.WriteByte(']')
	return sb.String()
}
