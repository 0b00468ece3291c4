package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/reward"
	"github.com/perkhq/perk/internal/tenant"
)

// setupRewards serves the reward routes (and the config center, for flows) on a fresh merchant.
func setupRewards(t *testing.T) (*testBundle, *reward.Service) {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldb.SQLite, []sqldb.Migrations{tenant.Migrations, bus.Migrations, ledger.Migrations,
		catalog.Migrations, reward.Migrations})
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

	led, err := ledger.New(db, ledger.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = led.Close() })
	reg := catalog.NewRegistry()
	cat := catalog.New(db, catalog.Options{Registry: reg})
	svc, err := reward.New(db, reward.Options{Ledger: led, Flows: reward.CatalogFlows{Catalog: cat},
		Events: func(ctx context.Context, tx *sqldb.Tx, events ...bus.Event) error { return nil },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	require.NoError(t, reward.RegisterKinds(reg, svc.Components()))

	s := New(Deps{Tenants: tenants, Catalog: cat, Registry: prometheus.NewRegistry(), MaxBodyBytes: 1 << 16,
		Version: "test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.registerRewardRoutes(svc)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &testBundle{srv: srv, platform: readKey(t, keyFile), admin: nm.AdminKey.Secret, viewer: viewer.Secret,
		token: tok.Token, merchant: nm.Merchant.ID}, svc
}

func TestRewardRoutes(t *testing.T) {
	t.Parallel()
	b, svc := setupRewards(t)
	var g reward.Grant
	doJSON(t, b, "POST", "/v1/grants", b.admin, `{"user_id":"u-1","source_id":"order-1",
		"rewards":[{"type":"points","amount":10,"expiry":{"policy":"days","days":30}},{"type":"growth","amount":5}],
		"params":{"channel":"app"}}`, 201, &g)
	require.Equal(t, reward.StateSucceeded, g.State)
	require.Equal(t, reward.SourceAPI, g.SourceKind)
	require.Len(t, g.Steps, 2)
	require.Equal(t, reward.StepSucceeded, g.Steps[0].State)

	var again reward.Grant
	doJSON(t, b, "POST", "/v1/grants", b.admin, `{"user_id":"u-1","source_id":"order-1","rewards":[{"type":"points","amount":10}]}`,
		200, &again)
	require.Equal(t, g.ID, again.ID)

	for _, sc := range []scenario{
		{name: "zero amount", method: "POST", path: "/v1/grants", bearer: asAdmin,
			body:       `{"user_id":"u-1","source_id":"o-2","rewards":[{"type":"points","amount":0}]}`,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body.rewards[0].amount"`, "must be positive"}},
		{name: "negative amount", method: "POST", path: "/v1/grants", bearer: asAdmin,
			body:       `{"user_id":"u-1","source_id":"o-2","rewards":[{"type":"growth","amount":-3}]}`,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body.rewards[0].amount"`}},
		{name: "unknown asset", method: "POST", path: "/v1/grants", bearer: asAdmin,
			body:       `{"user_id":"u-1","source_id":"o-2","rewards":[{"type":"gold","amount":3}]}`,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body.rewards[0].type"`, `unknown reward type \"gold\"`}},
		{name: "unknown flow", method: "POST", path: "/v1/grants", bearer: asAdmin,
			body:       `{"user_id":"u-1","source_id":"o-2","flow":"nope"}`,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body.flow"`, `unknown flow \"nope\"`}},
		{name: "bad user", method: "POST", path: "/v1/grants", bearer: asAdmin,
			body:       `{"user_id":"","source_id":"o-2","rewards":[{"type":"points","amount":1}]}`,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body.user_id"`}},
		{name: "bad CEL at publish", method: "POST", path: "/v1/config/flow", bearer: asAdmin,
			body:       `{"key":"bad","spec":{"steps":[{"name":"a","component":"grant_points","params":{"amount":1},"when":"params.x >"}]}}`,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body.spec.steps[0].when"`, "1:"}},
		{name: "viewer cannot grant", method: "POST", path: "/v1/grants", bearer: asViewer,
			body: `{"user_id":"u-1","source_id":"o-3","rewards":[{"type":"points","amount":1}]}`, wantStatus: 403, wantType: "forbidden"},
		{name: "user token cannot grant", method: "POST", path: "/v1/grants", bearer: asUser,
			body: `{"user_id":"u-1","source_id":"o-3","rewards":[{"type":"points","amount":1}]}`, wantStatus: 403, wantType: "forbidden"},
		{name: "viewer lists", method: "GET", path: "/v1/grants?state=succeeded&user_id=u-1", bearer: asViewer, wantStatus: 200,
			wantBody: []string{`"id":"` + g.ID + `"`}},
		{name: "bad state", method: "GET", path: "/v1/grants?state=lost", bearer: asViewer, wantStatus: 422, wantType: "invalid",
			wantBody: []string{"query.state"}},
		{name: "bad cursor", method: "GET", path: "/v1/grants?cursor=zzz", bearer: asViewer, wantStatus: 422, wantType: "invalid",
			wantBody: []string{"query.cursor"}},
		{name: "get", method: "GET", path: "/v1/grants/" + g.ID, bearer: asViewer, wantStatus: 200,
			wantBody: []string{`"state":"succeeded"`, `"steps":[`, `"entry_id":"led_`}},
		{name: "get unknown", method: "GET", path: "/v1/grants/grt_nope", bearer: asViewer, wantStatus: 404, wantType: "grant-not-found"},
		{name: "retry a succeeded grant", method: "POST", path: "/v1/grants/" + g.ID + "/retry", bearer: asAdmin,
			wantStatus: 409, wantType: "grant-not-retryable"},
		{name: "viewer cannot retry", method: "POST", path: "/v1/grants/" + g.ID + "/retry", bearer: asViewer,
			wantStatus: 403, wantType: "forbidden"},
		{name: "nothing owed", method: "GET", path: "/v1/users/me/owed-rewards", bearer: asUser, wantStatus: 200,
			wantBody: []string{`{"items":[]}`}},
		{name: "owed of another user", method: "GET", path: "/v1/users/u-2/owed-rewards", bearer: asUser, wantStatus: 403, wantType: "forbidden"},
		{name: "openapi", method: "GET", path: "/openapi.json", wantStatus: 200,
			wantBody: []string{"/v1/grants/{grant_id}/steps/{step}/callback", "/v1/users/{user_id}/owed-rewards"}},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, b) })
	}
	page, err := svc.List(context.Background(), reward.ListParams{TenantID: b.merchant})
	require.NoError(t, err)
	require.Len(t, page.Items, 1, "refused requests wrote nothing")
}

func TestRewardCallbackRoute(t *testing.T) {
	t.Parallel()
	b, _ := setupRewards(t)
	merchant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"status":"pending"}`))
	}))
	t.Cleanup(merchant.Close)
	const secret = "0123456789abcdef-secret"
	doJSON(t, b, "POST", "/v1/config/flow", b.admin, `{"key":"ship","spec":{"steps":[
		{"name":"ship","component":"call_external","params":{"url":"`+merchant.URL+`","secret":"`+secret+`"}},
		{"name":"points","component":"grant_points","params":{"amount":4}}]}}`, 201, nil)
	doJSON(t, b, "POST", "/v1/config/flow/ship/publish", b.admin, ``, 200, nil)
	var g reward.Grant
	doJSON(t, b, "POST", "/v1/grants", b.admin, `{"user_id":"u-1","source_id":"order-9","flow":"ship"}`, 201, &g)
	require.Equal(t, reward.StatePending, g.State)
	require.Equal(t, reward.StepWaiting, g.Steps[0].State)

	var owed struct{ Items []reward.Grant }
	doJSON(t, b, "GET", "/v1/users/me/owed-rewards", b.token, "", 200, &owed)
	require.Len(t, owed.Items, 1)
	require.Equal(t, g.ID, owed.Items[0].ID)

	body := `{"status":"done","output":{"tracking":"T1"}}`
	path := "/v1/grants/" + g.ID + "/steps/ship/callback"
	scenario{method: "POST", path: path, body: body, wantStatus: 401, wantType: "callback-signature-invalid"}.run(t, b)
	scenario{method: "POST", path: path, body: body, headers: map[string]string{"Perk-Signature": "v1=00"},
		wantStatus: 401, wantType: "callback-signature-invalid"}.run(t, b)
	sig := reward.Sign(secret, g.ID, "ship", []byte(body))
	scenario{method: "POST", path: "/v1/grants/" + g.ID + "/steps/points/callback", body: body,
		headers: map[string]string{"Perk-Signature": sig}, wantStatus: 409, wantType: "callback-not-expected"}.run(t, b)
	scenario{method: "POST", path: path, body: `{"status":"maybe"}`,
		headers:    map[string]string{"Perk-Signature": reward.Sign(secret, g.ID, "ship", []byte(`{"status":"maybe"}`))},
		wantStatus: 422, wantType: "invalid", wantBody: []string{"body.status"}}.run(t, b)
	for range 2 {
		scenario{method: "POST", path: path, body: body, headers: map[string]string{"Perk-Signature": sig},
			wantStatus: 200, wantBody: []string{`"state":"succeeded"`, `"tracking":"T1"`}}.run(t, b)
	}
	doJSON(t, b, "GET", "/v1/users/me/owed-rewards", b.token, "", 200, &owed)
	require.Empty(t, owed.Items)
}
