package idem_test

import (
	"encoding/json"
	"fmt"
	"github.com/perkhq/perk/internal/platform/problem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/idem"
)

// app is the handler behind the middleware: every path answers 201 with a counter, except
// /flaky (500 while fail is set) and /slow (blocks until released).
type app struct {
	calls   atomic.Int64
	fail    atomic.Bool
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

// unblock releases /slow requests, once.
func (a *app) unblock() { a.once.Do(func() { close(a.release) }) }

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	n := a.calls.Add(1)
	switch r.URL.Path {
	case "/flaky":
		if a.fail.Load() {
			http.Error(w, "downstream broke", http.StatusInternalServerError)
			return
		}
	case "/slow":
		a.entered <- struct{}{}
		<-a.release
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", fmt.Sprintf("/v1/orders/%d", n))
	w.Header().Set("X-Run", fmt.Sprint(n))
	if r.Method == http.MethodGet {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusCreated)
	}
	_, _ = fmt.Fprintf(w, `{"order":%d,"echo":%q}`, n, body)
}

type mwBundle struct {
	app  *app
	srv  *httptest.Server
	fake *clock.Fake
}

// operations configures the test routes: most require a key; some switch policy or key source.
var operations = idem.StaticSource{
	Default: idem.OperationConfig{Required: true},
	Operations: map[string]idem.OperationConfig{
		"/optional": {},
		"/dup":      {Required: true, Policy: idem.PolicyDuplicate},
		"/fail":     {Required: true, Policy: idem.PolicyFail},
		"/cel":      {Required: true, KeyExpr: `request.body.order_id`},
		"/cel-hdr":  {KeyExpr: `request.headers["x-order"] + ":" + request.query.shop`},
		"/cel-bad":  {KeyExpr: `request.`},
	},
}

func setupMiddleware(t *testing.T, newStorage storageFactory) *mwBundle {
	t.Helper()
	st, fake := newStorage(t)
	svc, err := idem.NewService(idem.ServiceOptions{
		Storages: map[string]idem.Storage{"main": st},
		Source:   operations,
	})
	require.NoError(t, err)
	a := &app{entered: make(chan struct{}, 8), release: make(chan struct{})}
	h := idem.Middleware(svc, idem.MiddlewareOptions{
		Operation: func(r *http.Request) string {
			if r.Method == http.MethodGet {
				return ""
			}
			return r.URL.Path
		},
		Identity: func(r *http.Request) (string, string, bool) {
			tenant := r.Header.Get("X-Tenant")
			return tenant, r.Header.Get("X-Scope"), tenant != ""
		},
		MaxBody:    4096,
		WriteError: writeTestProblem,
	})(a)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(a.unblock) // runs first: a failed test must not leave a handler blocked
	return &mwBundle{app: a, srv: srv, fake: fake}
}

type reply struct {
	status int
	header http.Header
	body   string
}

// problemDoc decodes a problem reply.
func (r reply) problemDoc(t *testing.T) map[string]any {
	t.Helper()
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.body), &doc))
	require.EqualValues(t, r.status, doc["status"])
	return doc
}

func (r reply) requireProblem(t *testing.T, status int, code string) map[string]any {
	t.Helper()
	require.Equal(t, status, r.status, r.body)
	doc := r.problemDoc(t)
	require.Equal(t, "https://perk.dev/problems/"+code, doc["type"])
	require.NotEmpty(t, doc["title"])
	require.NotEmpty(t, doc["detail"])
	return doc
}

// req describes one request; zero fields take the defaults (POST, tenant mch_1, scope key_1).
type req struct {
	method, path, key, body, tenant, scope string
	header                                 map[string]string
}

func (b *mwBundle) do(t *testing.T, q req) reply {
	t.Helper()
	if q.method == "" {
		q.method = http.MethodPost
	}
	if q.tenant == "" {
		q.tenant = "mch_1"
	}
	if q.scope == "" {
		q.scope = "key_1"
	}
	r, err := http.NewRequest(q.method, b.srv.URL+q.path, strings.NewReader(q.body))
	require.NoError(t, err)
	if q.tenant != "-" {
		r.Header.Set("X-Tenant", q.tenant)
		r.Header.Set("X-Scope", q.scope)
	}
	if q.key != "" {
		r.Header.Set(idem.KeyHeader, q.key)
	}
	for k, v := range q.header {
		r.Header.Set(k, v)
	}
	resp, err := b.srv.Client().Do(r)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func requireFresh(t *testing.T, r reply) {
	t.Helper()
	require.Equal(t, http.StatusCreated, r.status, r.body)
	require.Empty(t, r.header.Get(idem.ReplayedHeader))
}

func requireReplayOf(t *testing.T, r, first reply) {
	t.Helper()
	require.Equal(t, first.status, r.status)
	require.Equal(t, first.body, r.body)
	require.Equal(t, "true", r.header.Get(idem.ReplayedHeader))
	require.Equal(t, first.header.Get("Location"), r.header.Get("Location"))
	require.Equal(t, first.header.Get("Content-Type"), r.header.Get("Content-Type"))
	require.Empty(t, r.header.Get("X-Run"), "headers outside the kept list are not replayed")
}

const uuidKey = `"8e03978e-40d5-43e8-bc93-6894a57f9324"`

func TestMiddleware(t *testing.T) {
	t.Parallel()
	scenarios := []struct {
		name string
		run  func(t *testing.T, b *mwBundle)
	}{
		{"FirstCallStoredRetryReplayed", func(t *testing.T, b *mwBundle) {
			first := b.do(t, req{path: "/orders", key: uuidKey, body: `{"sku":"a"}`})
			requireFresh(t, first)
			require.Equal(t, "1", first.header.Get("X-Run"))
			again := b.do(t, req{path: "/orders", key: uuidKey, body: `{"sku":"a"}`})
			requireReplayOf(t, again, first)
			unquoted := b.do(t, req{path: "/orders", key: strings.Trim(uuidKey, `"`), body: `{"sku":"a"}`})
			requireReplayOf(t, unquoted, first)
			require.EqualValues(t, 1, b.app.calls.Load())
		}},
		{"SameKeyOtherBodyIs422", func(t *testing.T, b *mwBundle) {
			requireFresh(t, b.do(t, req{path: "/orders", key: `"k1"`, body: `{"sku":"a"}`}))
			b.do(t, req{path: "/orders", key: `"k1"`, body: `{"sku":"b"}`}).
				requireProblem(t, http.StatusUnprocessableEntity, idem.CodeKeyMismatch)
			b.do(t, req{path: "/orders/other", key: `"k1"`, body: `{"sku":"a"}`}).
				requireProblem(t, http.StatusUnprocessableEntity, idem.CodeKeyMismatch)
			require.EqualValues(t, 1, b.app.calls.Load())
		}},
		{"SameKeyInFlightIs409", func(t *testing.T, b *mwBundle) {
			firstDone := make(chan reply)
			go func() { firstDone <- b.do(t, req{path: "/slow", key: `"k1"`, body: "x"}) }()
			await(t, b.app.entered, "the first request to reach the handler")
			b.do(t, req{path: "/slow", key: `"k1"`, body: "x"}).
				requireProblem(t, http.StatusConflict, idem.CodeInFlight)
			b.app.unblock()
			first := await(t, firstDone, "the first request to finish")
			requireFresh(t, first)
			requireReplayOf(t, b.do(t, req{path: "/slow", key: `"k1"`, body: "x"}), first)
			require.EqualValues(t, 1, b.app.calls.Load())
		}},
		{"MissingKeyWhereRequiredIs400", func(t *testing.T, b *mwBundle) {
			b.do(t, req{path: "/orders", body: "x"}).requireProblem(t, http.StatusBadRequest, idem.CodeKeyMissing)
			require.Zero(t, b.app.calls.Load())
		}},
		{"MalformedKeyIs400", func(t *testing.T, b *mwBundle) {
			for _, key := range []string{`""`, `"` + strings.Repeat("k", 256) + `"`, `a b`, `"unterminated`} {
				b.do(t, req{path: "/orders", key: key, body: "x"}).requireProblem(t, http.StatusBadRequest, idem.CodeKeyInvalid)
			}
			require.Zero(t, b.app.calls.Load())
		}},
		{"OptionalKeyAbsentPassesThrough", func(t *testing.T, b *mwBundle) {
			for range 2 {
				requireFresh(t, b.do(t, req{path: "/optional", body: "x"}))
			}
			require.EqualValues(t, 2, b.app.calls.Load())
		}},
		{"UnmanagedRequestsPassThrough", func(t *testing.T, b *mwBundle) {
			require.Equal(t, http.StatusOK, b.do(t, req{method: http.MethodGet, path: "/orders", key: `"k1"`}).status)
			require.Equal(t, http.StatusOK, b.do(t, req{method: http.MethodGet, path: "/orders", key: `"k1"`}).status)
			requireFresh(t, b.do(t, req{path: "/orders", tenant: "-", body: "x"}))
			require.EqualValues(t, 3, b.app.calls.Load(), "GET and anonymous requests are not idempotency-managed")
		}},
		{"PolicyDuplicate", func(t *testing.T, b *mwBundle) {
			requireFresh(t, b.do(t, req{path: "/dup", key: `"k1"`, body: "x"}))
			doc := b.do(t, req{path: "/dup", key: `"k1"`, body: "x"}).requireProblem(t, http.StatusConflict, idem.CodeDuplicate)
			require.EqualValues(t, 201, doc["original_status"])
			require.EqualValues(t, 1, b.app.calls.Load())
		}},
		{"PolicyFail", func(t *testing.T, b *mwBundle) {
			requireFresh(t, b.do(t, req{path: "/fail", key: `"k1"`, body: "x"}))
			b.do(t, req{path: "/fail", key: `"k1"`, body: "x"}).requireProblem(t, http.StatusConflict, idem.CodeKeyUsed)
			require.EqualValues(t, 1, b.app.calls.Load())
		}},
		{"ServerErrorIsNotStored", func(t *testing.T, b *mwBundle) {
			b.app.fail.Store(true)
			require.Equal(t, http.StatusInternalServerError, b.do(t, req{path: "/flaky", key: `"k1"`, body: "x"}).status)
			b.app.fail.Store(false)
			first := b.do(t, req{path: "/flaky", key: `"k1"`, body: "x"})
			requireFresh(t, first)
			requireReplayOf(t, b.do(t, req{path: "/flaky", key: `"k1"`, body: "x"}), first)
			require.EqualValues(t, 2, b.app.calls.Load())
		}},
		{"TenantsAndScopesAreIndependent", func(t *testing.T, b *mwBundle) {
			a := b.do(t, req{path: "/orders", key: `"same"`, body: "x", tenant: "mch_a"})
			requireFresh(t, a)
			requireFresh(t, b.do(t, req{path: "/orders", key: `"same"`, body: "x", tenant: "mch_b"}))
			requireFresh(t, b.do(t, req{path: "/orders", key: `"same"`, body: "x", tenant: "mch_a", scope: "key_2"}))
			requireReplayOf(t, b.do(t, req{path: "/orders", key: `"same"`, body: "x", tenant: "mch_a"}), a)
			require.EqualValues(t, 3, b.app.calls.Load())
		}},
		{"KeyFromCELExpression", func(t *testing.T, b *mwBundle) {
			first := b.do(t, req{path: "/cel", body: `{"order_id": 9007199254740993, "note": "a"}`})
			requireFresh(t, first)
			requireReplayOf(t, b.do(t, req{path: "/cel", body: `{"order_id": 9007199254740993, "note": "a"}`}), first)
			b.do(t, req{path: "/cel", body: `{"order_id": 9007199254740993, "note": "b"}`}).
				requireProblem(t, http.StatusUnprocessableEntity, idem.CodeKeyMismatch)
			requireFresh(t, b.do(t, req{path: "/cel", body: `{"order_id": 9007199254740992, "note": "a"}`}))
			b.do(t, req{path: "/cel", body: `{"note": "a"}`}).requireProblem(t, http.StatusBadRequest, idem.CodeKeyMissing)
			b.do(t, req{path: "/cel", body: `not json`}).requireProblem(t, http.StatusBadRequest, idem.CodeKeyMissing)

			hdr := req{path: "/cel-hdr?shop=s1", body: "x", header: map[string]string{"X-Order": "o-7"}}
			first = b.do(t, hdr)
			requireFresh(t, first)
			requireReplayOf(t, b.do(t, hdr), first)
			requireFresh(t, b.do(t, req{path: "/cel-hdr?shop=s1", body: "x"})) // no header: no key, optional
			require.EqualValues(t, 4, b.app.calls.Load())
		}},
		{"BrokenKeyExpressionIs500", func(t *testing.T, b *mwBundle) {
			doc := b.do(t, req{path: "/cel-bad", key: `"k1"`, body: "x"}).requireProblem(t, http.StatusInternalServerError, "internal")
			require.NotContains(t, doc["detail"], "request.", "internal errors do not leak")
			require.Zero(t, b.app.calls.Load())
		}},
		{"CompletedKeyExpiresAfterTTL", func(t *testing.T, b *mwBundle) {
			if b.fake == nil {
				t.Log("Redis expiry follows Redis's clock: covered by TestStorage/redis/CompletedRecordExpires")
				return
			}
			first := b.do(t, req{path: "/orders", key: `"k1"`, body: "x"})
			requireFresh(t, first)
			b.fake.Advance(23 * time.Hour)
			requireReplayOf(t, b.do(t, req{path: "/orders", key: `"k1"`, body: "x"}), first)
			b.fake.Advance(time.Hour)
			again := b.do(t, req{path: "/orders", key: `"k1"`, body: "x"})
			requireFresh(t, again)
			require.NotEqual(t, first.body, again.body)
			require.EqualValues(t, 2, b.app.calls.Load())
		}},
		{"BodyOverTheLimitIs413", func(t *testing.T, b *mwBundle) {
			b.do(t, req{path: "/orders", key: `"k1"`, body: strings.Repeat("x", 4097)}).
				requireProblem(t, http.StatusRequestEntityTooLarge, idem.CodeBodyTooBig)
			requireFresh(t, b.do(t, req{path: "/orders", key: `"k1"`, body: strings.Repeat("x", 4096)}))
			require.EqualValues(t, 1, b.app.calls.Load())
		}},
	}
	forEachBackend(t, func(t *testing.T, newStorage storageFactory) {
		for _, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				sc.run(t, setupMiddleware(t, newStorage))
			})
		}
	})
}

// testStatus is how the tests' problem writer maps kinds; the real mapping is the HTTP layer's.
var testStatus = map[problem.Kind]int{
	problem.KindInvalid: http.StatusUnprocessableEntity, problem.KindBadRequest: http.StatusBadRequest,
	problem.KindConflict: http.StatusConflict, problem.KindTooLarge: http.StatusRequestEntityTooLarge,
	problem.KindUnavailable: http.StatusServiceUnavailable,
}

// writeTestProblem is a minimal RFC 9457 writer standing in for the HTTP layer's.
func writeTestProblem(w http.ResponseWriter, _ *http.Request, err error) {
	status := http.StatusInternalServerError
	doc := map[string]any{"type": "https://perk.dev/problems/internal"}
	if p, ok := problem.As(err); ok {
		if s, known := testStatus[p.Kind]; known {
			status = s
		}
		for k, v := range p.Extensions {
			doc[k] = v
		}
		doc["type"] = "https://perk.dev/problems/" + p.Slug()
		doc["detail"] = p.Detail
	}
	doc["status"] = status
	doc["title"] = http.StatusText(status)
	if doc["detail"] == nil {
		doc["detail"] = "an internal error occurred"
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(doc)
}
