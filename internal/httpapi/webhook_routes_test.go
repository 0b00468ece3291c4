package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/tenant"
	"github.com/perkhq/perk/internal/webhook"
)

type webhookBundle struct {
	*testBundle
	other    string // another merchant's admin key
	disp     *webhook.Dispatcher
	receiver string

	mu  sync.Mutex
	got []http.Header
	raw [][]byte
}

func setupWebhooks(t *testing.T) *webhookBundle {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldb.SQLite, []sqldb.Migrations{tenant.Migrations, webhook.Migrations})
	tenants := tenant.New(db, tenant.Options{})
	nm, err := tenants.CreateMerchant(ctx, tenant.CreateMerchantParams{Name: "Shop", Actor: "test"})
	require.NoError(t, err)
	viewer, err := tenants.CreateKey(ctx, tenant.CreateKeyParams{TenantID: nm.Merchant.ID, Name: "v", Role: tenant.RoleViewer})
	require.NoError(t, err)
	other, err := tenants.CreateMerchant(ctx, tenant.CreateMerchantParams{Name: "Rival", Actor: "test"})
	require.NoError(t, err)
	svc := webhook.New(db, webhook.Options{Logger: slog.New(slog.DiscardHandler)})
	s := New(Deps{Tenants: tenants, Registry: prometheus.NewRegistry(), Version: "test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.registerWebhookRoutes(svc)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	b := &webhookBundle{testBundle: &testBundle{srv: srv, admin: nm.AdminKey.Secret, viewer: viewer.Secret,
		merchant: nm.Merchant.ID}, other: other.AdminKey.Secret,
		disp: svc.NewDispatcher(webhook.DispatcherOptions{AllowPrivateNetworks: true})}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.got, b.raw = append(b.got, r.Header.Clone()), append(b.raw, body)
		b.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(recv.Close)
	b.receiver = recv.URL
	return b
}

func TestWebhookRoutes(t *testing.T) {
	t.Parallel()
	b := setupWebhooks(t)
	asOther := func(*testBundle) string { return b.other }
	for _, sc := range []scenario{
		{name: "no credentials", method: "GET", path: "/v1/webhooks/endpoints", wantStatus: 401, wantType: "unauthenticated"},
		{name: "viewer cannot create", method: "POST", path: "/v1/webhooks/endpoints", bearer: asViewer,
			body: `{"url":"https://example.com","event_types":["*"]}`, wantStatus: 403, wantType: "forbidden"},
		{name: "bad url and empty filters", method: "POST", path: "/v1/webhooks/endpoints", bearer: asAdmin,
			body: `{"url":"ftp://example.com/x","event_types":[]}`, wantStatus: 422, wantType: "invalid",
			wantBody: []string{`"location":"body.url"`, `"location":"body.event_types"`}},
		{name: "bad filter names its index", method: "POST", path: "/v1/webhooks/endpoints", bearer: asAdmin,
			body: `{"url":"https://example.com","event_types":["grant.*","Nope"]}`, wantStatus: 422, wantType: "invalid",
			wantBody: []string{`"location":"body.event_types[1]"`}},
		{name: "missing filters", method: "POST", path: "/v1/webhooks/endpoints", bearer: asAdmin,
			body: `{"url":"https://example.com"}`, wantStatus: 422, wantType: "invalid", wantBody: []string{"event_types"}},
		{name: "nothing was written", method: "GET", path: "/v1/webhooks/endpoints", bearer: asViewer, wantStatus: 200,
			wantBody: []string{`"items":[]`}},
		{name: "unknown endpoint", method: "GET", path: "/v1/webhooks/endpoints/whe_nope", bearer: asViewer,
			wantStatus: 404, wantType: "webhook-endpoint-not-found"},
		{name: "unknown delivery", method: "GET", path: "/v1/webhooks/deliveries/whd_nope", bearer: asViewer,
			wantStatus: 404, wantType: "webhook-delivery-not-found"},
		{name: "in the OpenAPI document", method: "GET", path: "/openapi.json", wantStatus: 200,
			wantBody: []string{"/v1/webhooks/endpoints/{endpoint_id}/rotate-secret", "/v1/webhooks/deliveries/{delivery_id}/resend",
				`"WebhookDeliveryAttempt"`}},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, b.testBundle) })
	}

	var created webhook.NewEndpoint
	doJSON(t, b.testBundle, "POST", "/v1/webhooks/endpoints", b.admin,
		`{"url":"`+b.receiver+`","description":"orders","event_types":["grant.*"]}`, 201, &created)
	require.Regexp(t, `^whsec_[A-Za-z0-9+/]{43}=$`, created.Secret)
	ep := "/v1/webhooks/endpoints/" + created.Endpoint.ID

	for _, sc := range []scenario{
		{name: "viewer reads it without its secret", method: "GET", path: ep, bearer: asViewer, wantStatus: 200,
			wantBody: []string{`"description":"orders"`, `"enabled":true`}},
		{name: "viewer lists it", method: "GET", path: "/v1/webhooks/endpoints?limit=10", bearer: asViewer, wantStatus: 200,
			wantBody: []string{created.Endpoint.ID}},
		{name: "other merchant cannot see it", method: "GET", path: ep, bearer: asOther, wantStatus: 404,
			wantType: "webhook-endpoint-not-found"},
		{name: "other merchant cannot change it", method: "PATCH", path: ep, bearer: asOther, body: `{"enabled":false}`,
			wantStatus: 404, wantType: "webhook-endpoint-not-found"},
		{name: "other merchant cannot test it", method: "POST", path: ep + "/test", bearer: asOther, wantStatus: 404,
			wantType: "webhook-endpoint-not-found"},
		{name: "other merchant cannot rotate it", method: "POST", path: ep + "/rotate-secret", bearer: asOther,
			wantStatus: 404, wantType: "webhook-endpoint-not-found"},
		{name: "other merchant cannot list its deliveries", method: "GET", path: ep + "/deliveries", bearer: asOther,
			wantStatus: 404, wantType: "webhook-endpoint-not-found"},
		{name: "other merchant cannot delete it", method: "DELETE", path: ep, bearer: asOther, wantStatus: 404,
			wantType: "webhook-endpoint-not-found"},
		{name: "other merchant lists nothing", method: "GET", path: "/v1/webhooks/endpoints", bearer: asOther,
			wantStatus: 200, wantBody: []string{`"items":[]`}},
		{name: "update", method: "PATCH", path: ep, bearer: asAdmin, body: `{"description":"all orders","event_types":["grant.*","ledger.*"]}`,
			wantStatus: 200, wantBody: []string{`"description":"all orders"`, `"event_types":["grant.*","ledger.*"]`}},
		{name: "bad update", method: "PATCH", path: ep, bearer: asAdmin, body: `{"url":"file:///etc/passwd"}`,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body.url"`}},
		{name: "grace out of range", method: "POST", path: ep + "/rotate-secret", bearer: asAdmin,
			body: `{"grace_seconds":99999999999}`, wantStatus: 422, wantType: "invalid",
			wantBody: []string{`"location":"body.grace_seconds"`}},
		{name: "test data must be an object", method: "POST", path: ep + "/test", bearer: asAdmin, body: `{"data":[1]}`,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body.data"`}},
		{name: "bad state filter", method: "GET", path: ep + "/deliveries?state=lost", bearer: asViewer,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"query.state"`}},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, b.testBundle) })
	}

	// Rotate with a grace period, send a test event, check the receiver got it signed with both.
	var rotated webhook.NewSecret
	doJSON(t, b.testBundle, "POST", ep+"/rotate-secret", b.admin, `{"grace_seconds":3600}`, 200, &rotated)
	require.NotEqual(t, created.Secret, rotated.Secret)
	require.NotNil(t, rotated.Endpoint.PreviousSecretUntil)
	var test webhook.Delivery
	doJSON(t, b.testBundle, "POST", ep+"/test", b.admin, "", 202, &test)
	require.Equal(t, webhook.StatePending, test.State)
	require.Equal(t, "webhook.test", test.EventType)
	n, err := b.disp.DispatchDue(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	b.mu.Lock()
	require.Len(t, b.got, 1)
	for _, secret := range []string{created.Secret, rotated.Secret} {
		wh, err := standardwebhooks.NewWebhook(secret)
		require.NoError(t, err)
		require.NoError(t, wh.Verify(b.raw[0], b.got[0]))
	}
	require.Equal(t, test.EventID, b.got[0].Get("webhook-id"))
	b.mu.Unlock()

	var page struct {
		Items []webhook.Delivery `json:"items"`
	}
	doJSON(t, b.testBundle, "GET", ep+"/deliveries?state=delivered,dead", b.viewer, "", 200, &page)
	require.Len(t, page.Items, 1)
	require.Equal(t, test.ID, page.Items[0].ID)
	doJSON(t, b.testBundle, "GET", ep+"/deliveries?state=pending", b.viewer, "", 200, &page)
	require.Empty(t, page.Items)

	dl := "/v1/webhooks/deliveries/" + test.ID
	var detail webhook.DeliveryDetail
	doJSON(t, b.testBundle, "GET", dl, b.viewer, "", 200, &detail)
	require.Equal(t, webhook.StateDelivered, detail.State)
	require.Len(t, detail.Attempts, 1)
	require.Equal(t, http.StatusNoContent, detail.Attempts[0].StatusCode)
	var payload struct{ Type string }
	require.NoError(t, json.Unmarshal(detail.Payload, &payload))
	require.Equal(t, "webhook.test", payload.Type)

	for _, sc := range []scenario{
		{name: "other merchant cannot read the delivery", method: "GET", path: dl, bearer: asOther, wantStatus: 404,
			wantType: "webhook-delivery-not-found"},
		{name: "other merchant cannot resend it", method: "POST", path: dl + "/resend", bearer: asOther, wantStatus: 404,
			wantType: "webhook-delivery-not-found"},
		{name: "viewer cannot resend", method: "POST", path: dl + "/resend", bearer: asViewer, wantStatus: 403,
			wantType: "forbidden"},
		{name: "resend", method: "POST", path: dl + "/resend", bearer: asAdmin, wantStatus: 202,
			wantBody: []string{`"state":"pending"`, test.EventID}},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, b.testBundle) })
	}
	n, err = b.disp.DispatchDue(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	b.mu.Lock()
	require.Len(t, b.got, 2)
	require.Equal(t, test.EventID, b.got[1].Get("webhook-id"), "a resend keeps the webhook-id")
	b.mu.Unlock()

	for _, sc := range []scenario{
		{name: "disable", method: "PATCH", path: ep, bearer: asAdmin, body: `{"enabled":false,"disabled_reason":"migrating"}`,
			wantStatus: 200, wantBody: []string{`"enabled":false`, `"disabled_reason":"migrating"`}},
		{name: "no test to a disabled endpoint", method: "POST", path: ep + "/test", bearer: asAdmin, wantStatus: 409,
			wantType: "webhook-endpoint-disabled"},
		{name: "no resend to a disabled endpoint", method: "POST", path: dl + "/resend", bearer: asAdmin, wantStatus: 409,
			wantType: "webhook-endpoint-disabled"},
		{name: "delete", method: "DELETE", path: ep, bearer: asAdmin, wantStatus: 204},
		{name: "gone after delete", method: "GET", path: ep, bearer: asViewer, wantStatus: 404, wantType: "webhook-endpoint-not-found"},
		{name: "its deliveries too", method: "GET", path: dl, bearer: asViewer, wantStatus: 404, wantType: "webhook-delivery-not-found"},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, b.testBundle) })
	}
}
