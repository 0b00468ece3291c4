package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/tenant"
)

type testBundle struct {
	srv      *httptest.Server
	platform string // platform key
	admin    string // merchant admin key
	viewer   string // merchant viewer key
	token    string // user token for user "u-1"
	merchant string
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldb.SQLite, []sqldb.Migrations{tenant.Migrations})
	tenants := tenant.New(db, tenant.Options{})
	keyFile := filepath.Join(t.TempDir(), "platform-key")
	_, err := tenants.EnsurePlatformKey(ctx, keyFile)
	require.NoError(t, err)
	nm, err := tenants.CreateMerchant(ctx, tenant.CreateMerchantParams{Name: "Shop", Actor: "test"})
	require.NoError(t, err)
	viewer, err := tenants.CreateKey(ctx, tenant.CreateKeyParams{TenantID: nm.Merchant.ID, Name: "v", Role: tenant.RoleViewer})
	require.NoError(t, err)
	tok, err := tenants.IssueUserToken(ctx, tenant.IssueUserTokenParams{TenantID: nm.Merchant.ID, UserID: "u-1"})
	require.NoError(t, err)
	s := New(Deps{Tenants: tenants, Registry: prometheus.NewRegistry(), MaxBodyBytes: 4096, Version: "test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:  map[string]func(context.Context) error{"database": func(ctx context.Context) error { return db.Writer().PingContext(ctx) }}})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &testBundle{srv: srv, platform: readKey(t, keyFile), admin: nm.AdminKey.Secret, viewer: viewer.Secret,
		token: tok.Token, merchant: nm.Merchant.ID}
}

func readKey(t *testing.T, path string) string {
	t.Helper()
	b, err := readFile(path)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

type scenario struct {
	name        string
	method      string
	path        string
	bearer      func(b *testBundle) string
	contentType string
	body        string
	headers     map[string]string
	wantStatus  int
	wantType    string   // problem slug, for error answers
	wantBody    []string // substrings of the body
	wantHeaders map[string]string
}

func asPlatform(b *testBundle) string { return b.platform }
func asAdmin(b *testBundle) string    { return b.admin }
func asViewer(b *testBundle) string   { return b.viewer }
func asUser(b *testBundle) string     { return b.token }

func (sc scenario) run(t *testing.T, b *testBundle) {
	t.Helper()
	path := strings.ReplaceAll(sc.path, "{merchant}", b.merchant)
	var body io.Reader
	if sc.body != "" {
		body = strings.NewReader(sc.body)
	}
	req, err := http.NewRequest(sc.method, b.srv.URL+path, body)
	require.NoError(t, err)
	if sc.body != "" {
		ct := sc.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if sc.bearer != nil {
		req.Header.Set("Authorization", "Bearer "+sc.bearer(b))
	}
	for k, v := range sc.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, sc.wantStatus, resp.StatusCode, string(raw))
	if sc.wantType != "" {
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), string(raw))
		var p map[string]any
		require.NoError(t, json.Unmarshal(raw, &p))
		require.Equal(t, ProblemTypeBase+sc.wantType, p["type"], string(raw))
		require.EqualValues(t, sc.wantStatus, p["status"])
		require.NotEmpty(t, p["request_id"])
	}
	for _, want := range sc.wantBody {
		require.Contains(t, string(raw), want)
	}
	for k, v := range sc.wantHeaders {
		require.Equal(t, v, resp.Header.Get(k), k)
	}
}

func TestConventions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, sc := range []scenario{
		{name: "unknown route", method: "GET", path: "/v1/nothing-here", wantStatus: 404, wantType: "not-found"},
		{name: "wrong method", method: "DELETE", path: "/healthz", wantStatus: 405, wantType: "method-not-allowed",
			wantHeaders: map[string]string{"Allow": "GET, HEAD"}},
		{name: "no credentials", method: "GET", path: "/v1/merchants", wantStatus: 401, wantType: "unauthenticated"},
		{name: "garbage credentials", method: "GET", path: "/v1/merchants", bearer: func(*testBundle) string { return "perk_nope" },
			wantStatus: 401, wantType: "bad-credentials", wantHeaders: map[string]string{"WWW-Authenticate": `Bearer realm="perk", error="invalid_token"`}},
		{name: "not a bearer", method: "GET", path: "/v1/me", headers: map[string]string{"Authorization": "Basic Zm9vOmJhcg=="},
			wantStatus: 401, wantType: "bad-credentials"},
		{name: "merchant key on platform route", method: "POST", path: "/v1/merchants", bearer: asAdmin,
			body: `{"name":"x"}`, wantStatus: 403, wantType: "forbidden"},
		{name: "malformed json", method: "POST", path: "/v1/merchants", bearer: asPlatform, body: `{"name":`,
			wantStatus: 400, wantType: "bad-request"},
		{name: "wrong content type", method: "POST", path: "/v1/merchants", bearer: asPlatform, body: `name=x`,
			contentType: "application/x-www-form-urlencoded", wantStatus: 415, wantType: "unsupported-media"},
		{name: "body over the limit", method: "POST", path: "/v1/merchants", bearer: asPlatform,
			body: `{"name":"` + strings.Repeat("x", 5000) + `"}`, wantStatus: 413, wantType: "too-large"},
		{name: "schema violation names the field", method: "POST", path: "/v1/merchants", bearer: asPlatform,
			body: `{"name":""}`, wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body.name"`}},
		{name: "domain validation names the field", method: "POST", path: "/v1/merchants", bearer: asPlatform,
			body: `{"name":"ok","time_zone":"Mars/Base"}`, wantStatus: 422, wantType: "invalid",
			wantBody: []string{`"location":"body.time_zone"`, "unknown IANA time zone"}},
		{name: "create merchant", method: "POST", path: "/v1/merchants", bearer: asPlatform,
			body: `{"name":"Second","time_zone":"Europe/Paris"}`, wantStatus: 201,
			wantBody: []string{`"time_zone":"Europe/Paris"`, `"secret":"perk_`, `"user_token_secret"`}},
		{name: "request id echoed", method: "GET", path: "/healthz", headers: map[string]string{"X-Request-Id": "abc-123"},
			wantStatus: 200, wantHeaders: map[string]string{"X-Request-Id": "abc-123"}},
		{name: "viewer reads own merchant", method: "GET", path: "/v1/merchants/{merchant}", bearer: asViewer, wantStatus: 200},
		{name: "viewer cannot make keys", method: "POST", path: "/v1/merchants/{merchant}/keys", bearer: asViewer,
			body: `{"name":"k","role":"viewer"}`, wantStatus: 403, wantType: "forbidden"},
		{name: "admin cannot see another merchant", method: "GET", path: "/v1/merchants/mch_01jbcdefghjkmnpqrstvwxyz00", bearer: asAdmin,
			wantStatus: 404, wantType: "not-found"},
		{name: "bad cursor", method: "GET", path: "/v1/merchants?cursor=zzz", bearer: asPlatform, wantStatus: 422, wantType: "invalid",
			wantBody: []string{"query.cursor"}},
		{name: "user token resolves me", method: "GET", path: "/v1/users/me", bearer: asUser, wantStatus: 200,
			wantBody: []string{`"user_id":"u-1"`}},
		{name: "user token cannot act for others", method: "GET", path: "/v1/users/u-2", bearer: asUser,
			wantStatus: 403, wantType: "forbidden"},
		{name: "me needs a user token", method: "GET", path: "/v1/users/me", bearer: asAdmin, wantStatus: 422, wantType: "invalid"},
		{name: "user token cannot use merchant routes", method: "GET", path: "/v1/merchants/{merchant}", bearer: asUser,
			wantStatus: 403, wantType: "forbidden"},
		{name: "readiness", method: "GET", path: "/readyz", wantStatus: 200, wantBody: []string{`"database":"ok"`}},
		{name: "openapi 3.1", method: "GET", path: "/openapi.json", wantStatus: 200, wantBody: []string{`"openapi":"3.1.0"`, "/v1/merchants"}},
		{name: "landing page", method: "GET", path: "/", wantStatus: 200, wantBody: []string{"API reference"}},
		{name: "docs page", method: "GET", path: "/docs", wantStatus: 200, wantBody: []string{"<!doctype html>", "/v1/merchants/{merchant_id}/keys"}},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, b) })
	}
	// after the requests above, metrics count them by route pattern
	scenario{method: "GET", path: "/metrics", wantStatus: 200,
		wantBody: []string{`perk_http_requests_total{method="POST",route="/v1/merchants",status="201"} 1`}}.run(t, b)
}

func TestKeyLifecycleOverHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var created struct {
		Key    tenant.Key `json:"key"`
		Secret string     `json:"secret"`
	}
	doJSON(t, b, "POST", "/v1/merchants/"+b.merchant+"/keys", b.admin, `{"name":"ops","role":"operator"}`, 201, &created)
	require.Equal(t, tenant.RoleOperator, created.Key.Role)
	var me struct {
		Principal tenant.Principal `json:"principal"`
	}
	doJSON(t, b, "GET", "/v1/me", created.Secret, "", 200, &me)
	require.Equal(t, b.merchant, me.Principal.TenantID)
	doJSON(t, b, "DELETE", "/v1/merchants/"+b.merchant+"/keys/"+created.Key.ID, b.admin, "", 200, nil)
	var p Problem
	doJSON(t, b, "GET", "/v1/me", created.Secret, "", 401, &p)
	require.Equal(t, ProblemTypeBase+"key-revoked", p.Type)
}

func doJSON(t *testing.T, b *testBundle, method, path, bearer, body string, want int, out any) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, b.srv.URL+path, r)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+bearer)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, want, resp.StatusCode, string(raw))
	if out != nil {
		require.NoError(t, json.Unmarshal(raw, out))
	}
}
