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

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/tenant"
)

// ledgerAPI is a server with the ledger routes, a merchant with keys and a user token for "u-1".
type ledgerAPI struct {
	*testBundle
	db  *sqldb.DB
	svc *ledger.Service
}

func setupLedgerAPI(t *testing.T) *ledgerAPI {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldb.SQLite, []sqldb.Migrations{tenant.Migrations, ledger.Migrations})
	tenants := tenant.New(db, tenant.Options{})
	keyFile := filepath.Join(t.TempDir(), "platform-key")
	_, err := tenants.EnsurePlatformKey(ctx, keyFile)
	require.NoError(t, err)
	nm, err := tenants.CreateMerchant(ctx, tenant.CreateMerchantParams{Name: "Shop", TimeZone: "Asia/Shanghai", Actor: "test"})
	require.NoError(t, err)
	viewer, err := tenants.CreateKey(ctx, tenant.CreateKeyParams{TenantID: nm.Merchant.ID, Name: "v", Role: tenant.RoleViewer})
	require.NoError(t, err)
	tok, err := tenants.IssueUserToken(ctx, tenant.IssueUserTokenParams{TenantID: nm.Merchant.ID, UserID: "u-1"})
	require.NoError(t, err)
	svc, err := ledger.New(db, ledger.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Close() })
	s := New(Deps{Tenants: tenants, Registry: prometheus.NewRegistry(), MaxBodyBytes: 4096, Version: "test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.registerLedgerRoutes(svc)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	a := &ledgerAPI{testBundle: &testBundle{srv: srv, platform: readKey(t, keyFile), admin: nm.AdminKey.Secret,
		viewer: viewer.Secret, token: tok.Token, merchant: nm.Merchant.ID}, db: db, svc: svc}
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		r, err := svc.Verify(context.Background())
		require.NoError(t, err)
		require.True(t, r.OK(), "%v", r.Mismatches)
	})
	return a
}

func (a *ledgerAPI) grant(t *testing.T, user string, amount int64, key string, exp ledger.Expiry) {
	t.Helper()
	_, _, err := a.svc.Grant(context.Background(), ledger.GrantParams{TenantID: a.merchant, UserID: user,
		Asset: ledger.AssetPoints, Amount: amount, BusinessKey: key, Expiry: exp, SourceKind: "task", SourceID: key})
	require.NoError(t, err)
}

// call sends a request and decodes the JSON answer into out (when not nil), requiring status.
func (a *ledgerAPI) call(t *testing.T, bearer, method, path, body string, status int, out any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+bearer)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, status, resp.StatusCode, string(raw))
	if out != nil {
		require.NoError(t, json.Unmarshal(raw, out), string(raw))
	}
}

func (a *ledgerAPI) entryCount(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, a.db.Reader().QueryRow(context.Background(), `SELECT COUNT(*) FROM ledger_entries`).Scan(&n))
	return n
}

func TestLedgerRoutesAccounts(t *testing.T) {
	t.Parallel()
	a := setupLedgerAPI(t)
	a.grant(t, "u-1", 100, "g-1", ledger.Expiry{Policy: ledger.ExpireAfterDays, Days: 3})
	a.grant(t, "u-1", 50, "g-2", ledger.Expiry{})
	a.grant(t, "u-2", 7, "g-3", ledger.Expiry{})

	var got struct {
		Accounts []ledger.Account `json:"accounts"`
	}
	a.call(t, a.admin, "GET", "/v1/users/u-1/accounts", "", 200, &got)
	require.Len(t, got.Accounts, 1)
	acct := got.Accounts[0]
	require.Equal(t, "points", acct.Asset)
	require.EqualValues(t, 150, acct.Balance)
	require.EqualValues(t, 150, acct.Available)
	require.EqualValues(t, 100, acct.ExpiringSoon)

	// A user token reads its own accounts as "me", not another user's.
	a.call(t, a.token, "GET", "/v1/users/me/accounts", "", 200, &got)
	require.EqualValues(t, 150, got.Accounts[0].Balance)
	for _, sc := range []scenario{
		{name: "other user", method: "GET", path: "/v1/users/u-2/accounts", bearer: asUser, wantStatus: 403, wantType: "forbidden"},
		{name: "no credentials", method: "GET", path: "/v1/users/u-1/accounts", wantStatus: 401, wantType: "unauthenticated"},
		{name: "viewer reads", method: "GET", path: "/v1/users/u-2/accounts", bearer: asViewer, wantStatus: 200,
			wantBody: []string{`"balance":7`}},
		{name: "reserved user id", method: "GET", path: "/v1/users/sys:issuance/accounts", bearer: asAdmin,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"path.user_id"`}},
		{name: "nobody", method: "GET", path: "/v1/users/u-9/accounts", bearer: asAdmin, wantStatus: 200,
			wantBody: []string{`{"accounts":[]}`}},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, a.testBundle) })
	}
}

func TestLedgerRoutesEntries(t *testing.T) {
	t.Parallel()
	a := setupLedgerAPI(t)
	for i, key := range []string{"g-1", "g-2", "g-3", "g-4", "g-5"} {
		a.grant(t, "u-1", int64(i+1), key, ledger.Expiry{})
	}
	var keys []string
	path := "/v1/users/u-1/ledger?limit=2"
	for path != "" {
		var page struct {
			Items []ledger.Entry `json:"items"`
			Next  string         `json:"next_cursor"`
		}
		a.call(t, a.token, "GET", path, "", 200, &page)
		for _, e := range page.Items {
			keys = append(keys, e.BusinessKey)
		}
		path = ""
		if page.Next != "" {
			path = "/v1/users/me/ledger?limit=2&cursor=" + page.Next
		}
	}
	require.Equal(t, []string{"g-5", "g-4", "g-3", "g-2", "g-1"}, keys)
	for _, sc := range []scenario{
		{name: "by source", method: "GET", path: "/v1/users/u-1/ledger?source_kind=task&source_id=g-2", bearer: asViewer,
			wantStatus: 200, wantBody: []string{`"business_key":"g-2"`, `"delta":2`, `"debit_account":"sys:issuance"`}},
		{name: "by asset", method: "GET", path: "/v1/users/u-1/ledger?asset=growth", bearer: asViewer,
			wantStatus: 200, wantBody: []string{`{"items":[]}`}},
		{name: "bad cursor", method: "GET", path: "/v1/users/u-1/ledger?cursor=nope", bearer: asViewer,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"query.cursor"`}},
		{name: "bad time", method: "GET", path: "/v1/users/u-1/ledger?from=yesterday", bearer: asViewer,
			wantStatus: 422, wantBody: []string{`query.from`}},
		{name: "empty window", method: "GET", path: "/v1/users/u-1/ledger?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
			bearer: asViewer, wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"query.to"`}},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, a.testBundle) })
	}
}

func TestLedgerRoutesAdjustments(t *testing.T) {
	t.Parallel()
	a := setupLedgerAPI(t)
	a.grant(t, "u-1", 100, "g-1", ledger.Expiry{})
	body := `{"asset":"points","amount":-30,"reason":"refund of order 7","business_key":"adj-1"}`
	var e ledger.Entry
	a.call(t, a.admin, "POST", "/v1/users/u-1/adjustments", body, 201, &e)
	require.Equal(t, ledger.KindAdjust, e.Kind)
	require.EqualValues(t, -30, e.Delta)
	require.Equal(t, "refund of order 7", e.Reason)
	var again ledger.Entry
	a.call(t, a.admin, "POST", "/v1/users/u-1/adjustments", body, 200, &again) // the same business key
	require.Equal(t, e.ID, again.ID)

	before := a.entryCount(t)
	for _, sc := range []scenario{
		{name: "viewer may not", method: "POST", path: "/v1/users/u-1/adjustments", bearer: asViewer, body: body,
			wantStatus: 403, wantType: "forbidden"},
		{name: "user token may not", method: "POST", path: "/v1/users/me/adjustments", bearer: asUser, body: body,
			wantStatus: 403, wantType: "forbidden"},
		{name: "no reason", method: "POST", path: "/v1/users/u-1/adjustments", bearer: asAdmin,
			body:       `{"asset":"points","amount":5,"reason":"","business_key":"adj-2"}`,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body.reason"`}},
		{name: "zero amount", method: "POST", path: "/v1/users/u-1/adjustments", bearer: asAdmin,
			body:       `{"asset":"points","amount":0,"reason":"x","business_key":"adj-2"}`,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body.amount"`}},
		{name: "unknown asset", method: "POST", path: "/v1/users/u-1/adjustments", bearer: asAdmin,
			body:       `{"asset":"gold","amount":5,"reason":"x","business_key":"adj-2"}`,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body.asset"`}},
		{name: "all at once", method: "POST", path: "/v1/users/u-1/adjustments", bearer: asAdmin,
			body: `{"asset":"gold","amount":0,"reason":"","business_key":""}`, wantStatus: 422, wantType: "invalid",
			wantBody: []string{`body.asset`, `body.amount`, `body.reason`, `body.business_key`}},
		{name: "below zero", method: "POST", path: "/v1/users/u-1/adjustments", bearer: asAdmin,
			body:       `{"asset":"points","amount":-71,"reason":"x","business_key":"adj-3"}`,
			wantStatus: 409, wantType: "insufficient-balance", wantBody: []string{`"available":70`}},
		{name: "key reused", method: "POST", path: "/v1/users/u-1/adjustments", bearer: asAdmin,
			body:       `{"asset":"points","amount":-31,"reason":"x","business_key":"adj-1"}`,
			wantStatus: 409, wantType: "ledger-key-reused", wantBody: []string{`"location":"body.business_key"`}},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, a.testBundle) })
	}
	require.Equal(t, before, a.entryCount(t), "refused adjustments wrote entries")

	a.call(t, a.admin, "POST", "/v1/users/u-1/adjustments",
		`{"asset":"points","amount":-80,"reason":"clawback","business_key":"adj-4","allow_negative":true}`, 201, nil)
	var got struct {
		Accounts []ledger.Account `json:"accounts"`
	}
	a.call(t, a.admin, "GET", "/v1/users/u-1/accounts", "", 200, &got)
	require.EqualValues(t, -10, got.Accounts[0].Balance)
}

func TestLedgerRoutesHolds(t *testing.T) {
	t.Parallel()
	a := setupLedgerAPI(t)
	a.grant(t, "u-1", 100, "g-1", ledger.Expiry{})
	var h ledger.Hold
	a.call(t, a.admin, "POST", "/v1/users/u-1/holds",
		`{"asset":"points","amount":60,"ttl_seconds":600,"business_key":"order-1","source_kind":"order","source_id":"o-1"}`, 201, &h)
	require.Equal(t, ledger.HoldActive, h.State)
	require.WithinDuration(t, h.CreatedAt.Add(10*time.Minute), h.ExpiresAt, time.Second)
	var got ledger.Hold
	a.call(t, a.admin, "GET", "/v1/holds/"+h.ID, "", 200, &got)
	require.Equal(t, h.ID, got.ID)

	var captured struct {
		Hold  ledger.Hold  `json:"hold"`
		Entry ledger.Entry `json:"entry"`
	}
	a.call(t, a.admin, "POST", "/v1/holds/"+h.ID+"/capture", `{"amount":45}`, 200, &captured)
	require.Equal(t, ledger.HoldCaptured, captured.Hold.State)
	require.EqualValues(t, 45, captured.Entry.Amount)
	require.Equal(t, ledger.KindCapture, captured.Entry.Kind)

	var h2 ledger.Hold
	a.call(t, a.admin, "POST", "/v1/users/u-1/holds", `{"asset":"points","amount":5,"business_key":"order-2"}`, 201, &h2)
	require.WithinDuration(t, h2.CreatedAt.Add(ledger.DefaultHoldTTL), h2.ExpiresAt, time.Second)
	a.call(t, a.admin, "POST", "/v1/holds/"+h2.ID+"/release", "", 200, &got)
	require.Equal(t, ledger.HoldReleased, got.State)

	for _, sc := range []scenario{
		{name: "capture without body", method: "POST", path: "/v1/holds/" + h.ID + "/capture", bearer: asAdmin,
			wantStatus: 200, wantBody: []string{`"state":"captured"`}},
		{name: "release captured", method: "POST", path: "/v1/holds/" + h.ID + "/release", bearer: asAdmin,
			wantStatus: 409, wantType: "hold-not-active", wantBody: []string{`"state":"captured"`}},
		{name: "capture released", method: "POST", path: "/v1/holds/" + h2.ID + "/capture", bearer: asAdmin,
			wantStatus: 409, wantType: "hold-not-active"},
		{name: "unknown hold", method: "POST", path: "/v1/holds/hld_nope/capture", bearer: asAdmin,
			wantStatus: 404, wantType: "hold-not-found"},
		{name: "viewer may not", method: "POST", path: "/v1/users/u-1/holds", bearer: asViewer,
			body: `{"asset":"points","amount":5,"business_key":"order-3"}`, wantStatus: 403, wantType: "forbidden"},
		{name: "more than available", method: "POST", path: "/v1/users/u-1/holds", bearer: asAdmin,
			body: `{"asset":"points","amount":56,"business_key":"order-3"}`, wantStatus: 409, wantType: "insufficient-balance",
			wantBody: []string{`"available":55`}},
		{name: "bad ttl", method: "POST", path: "/v1/users/u-1/holds", bearer: asAdmin,
			body:       `{"asset":"points","amount":5,"ttl_seconds":99999999,"business_key":"order-3"}`,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body.ttl_seconds"`}},
		{name: "negative amount", method: "POST", path: "/v1/users/u-1/holds", bearer: asAdmin,
			body:       `{"asset":"points","amount":-5,"business_key":"order-3"}`,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"body.amount"`}},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, a.testBundle) })
	}
}

func TestLedgerRoutesReports(t *testing.T) {
	t.Parallel()
	a := setupLedgerAPI(t)
	a.grant(t, "u-1", 100, "g-1", ledger.Expiry{Policy: ledger.ExpireAfterDays, Days: 2})
	a.grant(t, "u-1", 30, "g-2", ledger.Expiry{Policy: ledger.ExpireEndOfYear})
	a.grant(t, "u-2", 20, "g-3", ledger.Expiry{})

	var sum ledger.ExpiringSummary
	a.call(t, a.token, "GET", "/v1/users/me/expiring?days=7", "", 200, &sum)
	require.Equal(t, "points", sum.Asset)
	require.Equal(t, ledger.ByDay, sum.By)
	require.Len(t, sum.Items, 1)
	require.EqualValues(t, 100, sum.Items[0].Amount)
	// The grant expires at midnight UTC (it was made without a time zone); the summary names the
	// last valid day in the merchant's time zone, Shanghai, where that moment is already 08:00 on
	// the expiry date itself.
	at := sum.Items[0].ExpiresAt.UTC()
	require.Zero(t, at.Hour())
	require.Equal(t, at.Format("2006-01-02"), sum.Items[0].Period)

	var l ledger.Liability
	a.call(t, a.viewer, "GET", "/v1/ledger/liability", "", 200, &l)
	require.Equal(t, ledger.Liability{Asset: "points", Outstanding: 150, Issued: 150}, l)
	a.call(t, a.viewer, "GET", "/v1/ledger/liability?asset=growth", "", 200, &l)
	require.Zero(t, l.Outstanding)
	for _, sc := range []scenario{
		{name: "liability of an unknown asset", method: "GET", path: "/v1/ledger/liability?asset=gold", bearer: asViewer,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"query.asset"`}},
		{name: "liability needs a merchant key", method: "GET", path: "/v1/ledger/liability", bearer: asUser,
			wantStatus: 403, wantType: "forbidden"},
		{name: "expiring window", method: "GET", path: "/v1/users/u-1/expiring?days=0", bearer: asViewer,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"query.days"`}},
		{name: "expiring by month", method: "GET", path: "/v1/users/u-1/expiring?days=400&by=month", bearer: asViewer,
			wantStatus: 200, wantBody: []string{`"by":"month"`, `"amount":30`}},
		{name: "expiring unknown asset", method: "GET", path: "/v1/users/u-1/expiring?asset=gold", bearer: asViewer,
			wantStatus: 422, wantType: "invalid", wantBody: []string{`"location":"query.asset"`}},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, a.testBundle) })
	}
}
