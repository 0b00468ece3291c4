package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/activity"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/tenant"
)

var activityT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// setupActivity is setup with the activity routes, and a log holding records of the bundle's
// merchant (users u-1 and u-2, one merchant-level event) and of another merchant.
func setupActivity(t *testing.T) *testBundle {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldb.SQLite, []sqldb.Migrations{tenant.Migrations, activity.Migrations})
	tenants := tenant.New(db, tenant.Options{})
	keyFile := filepath.Join(t.TempDir(), "platform-key")
	_, err := tenants.EnsurePlatformKey(ctx, keyFile)
	require.NoError(t, err)
	nm, err := tenants.CreateMerchant(ctx, tenant.CreateMerchantParams{Name: "Shop", Actor: "test"})
	require.NoError(t, err)
	other, err := tenants.CreateMerchant(ctx, tenant.CreateMerchantParams{Name: "Other", Actor: "test"})
	require.NoError(t, err)
	viewer, err := tenants.CreateKey(ctx, tenant.CreateKeyParams{TenantID: nm.Merchant.ID, Name: "v", Role: tenant.RoleViewer})
	require.NoError(t, err)
	tok, err := tenants.IssueUserToken(ctx, tenant.IssueUserTokenParams{TenantID: nm.Merchant.ID, UserID: "u-1"})
	require.NoError(t, err)

	svc := activity.New(db, nil, activity.Options{})
	rec := func(id, tenantID, userID, eventType string, minute int) bus.Event {
		return bus.Event{ID: id, TenantID: tenantID, UserID: userID, Type: eventType, SourceKind: "grant",
			SourceID: "grt_" + id, Time: activityT0.Add(time.Duration(minute) * time.Minute),
			Data: json.RawMessage(`{"points":5}`)}
	}
	_, err = svc.Write(ctx,
		rec("evt_1", nm.Merchant.ID, "u-1", "grant.succeeded", 1),
		rec("evt_2", nm.Merchant.ID, "u-1", "ledger.entry_posted", 2),
		rec("evt_3", nm.Merchant.ID, "u-2", "grant.failed", 3),
		rec("evt_4", nm.Merchant.ID, "", "campaign.published", 4),
		rec("evt_5", nm.Merchant.ID, "u-1", "grant.succeeded", 5),
		rec("evt_x", other.Merchant.ID, "u-1", "grant.succeeded", 6),
	)
	require.NoError(t, err)

	s := New(Deps{Tenants: tenants, Registry: prometheus.NewRegistry(), Version: "test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.registerActivityRoutes(svc)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &testBundle{srv: srv, platform: readKey(t, keyFile), admin: nm.AdminKey.Secret, viewer: viewer.Secret,
		token: tok.Token, merchant: nm.Merchant.ID}
}

func TestActivityRoutes(t *testing.T) {
	t.Parallel()
	b := setupActivity(t)
	for _, sc := range []scenario{
		{name: "viewer reads the merchant's log", method: "GET", path: "/v1/activity", bearer: asViewer, wantStatus: 200,
			wantBody: []string{`"id":"evt_5"`, `"id":"evt_4"`, `"id":"evt_1"`, `"data":{"points":5}`}},
		{name: "by user", method: "GET", path: "/v1/activity?user_id=u-2", bearer: asViewer, wantStatus: 200,
			wantBody: []string{`"items":[{"id":"evt_3"`}},
		{name: "by type prefix and time", method: "GET", bearer: asViewer, wantStatus: 200,
			path:     "/v1/activity?type=grant.*&from=" + url.QueryEscape(activityT0.Add(2*time.Minute).Format(time.RFC3339)),
			wantBody: []string{`"items":[{"id":"evt_5"`, `"id":"evt_3"`}},
		{name: "by source", method: "GET", path: "/v1/activity?source_kind=grant&source_id=grt_evt_2", bearer: asViewer,
			wantStatus: 200, wantBody: []string{`"items":[{"id":"evt_2"`}},
		{name: "bad type", method: "GET", path: "/v1/activity?type=Grant", bearer: asViewer, wantStatus: 422,
			wantType: "invalid", wantBody: []string{`"location":"query.type"`}},
		{name: "bad cursor", method: "GET", path: "/v1/activity?cursor=zzz", bearer: asViewer, wantStatus: 422,
			wantType: "invalid", wantBody: []string{`"location":"query.cursor"`}},
		{name: "bad time range", method: "GET", bearer: asViewer, wantStatus: 422, wantType: "invalid",
			path:     "/v1/activity?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z",
			wantBody: []string{`"location":"query.to"`}},
		{name: "unparseable time", method: "GET", path: "/v1/activity?from=yesterday", bearer: asViewer, wantStatus: 422,
			wantType: "invalid"},
		{name: "no credentials", method: "GET", path: "/v1/activity", wantStatus: 401, wantType: "unauthenticated"},
		{name: "a user token cannot read the merchant's log", method: "GET", path: "/v1/activity", bearer: asUser,
			wantStatus: 403, wantType: "forbidden"},
		{name: "a user reads its own", method: "GET", path: "/v1/users/me/activity", bearer: asUser, wantStatus: 200,
			wantBody: []string{`"items":[{"id":"evt_5"`, `"id":"evt_2"`, `"id":"evt_1"`}},
		{name: "a user names itself", method: "GET", path: "/v1/users/u-1/activity?type=grant.succeeded", bearer: asUser,
			wantStatus: 200, wantBody: []string{`"id":"evt_5"`, `"id":"evt_1"`}},
		{name: "a user cannot read another's", method: "GET", path: "/v1/users/u-2/activity", bearer: asUser,
			wantStatus: 403, wantType: "forbidden"},
		{name: "a key reads any user's", method: "GET", path: "/v1/users/u-2/activity", bearer: asAdmin, wantStatus: 200,
			wantBody: []string{`"items":[{"id":"evt_3"`}},
		{name: "me needs a user token", method: "GET", path: "/v1/users/me/activity", bearer: asViewer,
			wantStatus: 422, wantType: "invalid"},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, b) })
	}
}

func TestActivityPagesAndTenancyOverHTTP(t *testing.T) {
	t.Parallel()
	b := setupActivity(t)
	var ids []string
	path := "/v1/activity?limit=2"
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		var page struct {
			Items []activity.Record `json:"items"`
			Next  string            `json:"next_cursor"`
		}
		doJSON(t, b, "GET", path, b.viewer, "", 200, &page)
		for _, r := range page.Items {
			require.Equal(t, b.merchant, r.TenantID, "another merchant's record leaked")
			ids = append(ids, r.ID)
		}
		if page.Next == "" {
			break
		}
		path = "/v1/activity?limit=2&cursor=" + url.QueryEscape(page.Next)
	}
	require.Equal(t, []string{"evt_5", "evt_4", "evt_3", "evt_2", "evt_1"}, ids)

	var mine struct {
		Items []activity.Record `json:"items"`
	}
	doJSON(t, b, "GET", "/v1/users/me/activity", b.token, "", 200, &mine)
	for _, r := range mine.Items {
		require.Equal(t, "u-1", r.UserID)
		require.Equal(t, b.merchant, r.TenantID)
	}
	require.Len(t, mine.Items, 3)
}
