package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/client"
	"github.com/perkhq/perk/internal/httpapi"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// walkFixture is merchant A's world, which merchant B must not reach.
type walkFixture struct {
	merchantA, keyA, resourceA string
	endpointA, deliveryA       string // a webhook endpoint and one of its deliveries
	grantA, holdA              string // a grant of points to A's user and a hold on them
	couponA, redemptionA       string // a coupon issued to A's user and a redemption locking another
	userTaskA                  string // A's user's task, completed by a receipt
	secretA                    string // the endpoint's signing secret
	adminA, adminB, tokenB     string
	params                     map[string]string
}

// bodyOverrides are request bodies that get past validation, so the walk reaches the handlers.
var bodyOverrides = map[string]any{
	"create-config":        map[string]any{"key": "walk", "spec": map[string]any{"target": "module:walk", "off": true}},
	"update-config-draft":  map[string]any{"revision": 1, "spec": map[string]any{"target": "module:walk", "off": false}},
	"rollback-config":      map[string]any{"version": 1},
	"create-key":           map[string]any{"name": "walk", "role": "viewer"},
	"create-merchant":      map[string]any{"name": "walk"},
	"update-merchant":      map[string]any{"name": "walked"},
	"set-token-public-key": map[string]any{"public_key": ""},
	"create-grant":         map[string]any{"user_id": "u-a", "source_id": "walk", "rewards": []any{map[string]any{"type": "points", "amount": 1}}},
	"adjust-user-balance":  map[string]any{"asset": "points", "amount": 1, "reason": "walk", "business_key": "walk"},
	"hold-user-balance":    map[string]any{"asset": "points", "amount": 1, "ttl_seconds": 60, "business_key": "walk-hold"},
	"complete-task":        map[string]any{"business_id": "walk"},
	"make-up-streak-day":   map[string]any{"day": "2026-01-01"},
	"issue-coupons":        map[string]any{"user_ids": []string{"u-a"}, "business_key": "walk"},
	"qualify-user-coupons": map[string]any{"cart": walkCart},
	"lock-coupons": map[string]any{"user_id": "u-a", "order_id": "walk", "coupon_ids": []string{"cpn_01JWALKWALKWALKWALKWALKWAL"},
		"cart": walkCart},
}

// walkCart is a cart every coupon route accepts.
var walkCart = map[string]any{"items": []any{map[string]any{"sku": "walk", "unit_price": 50000, "quantity": 1}}}

func setupWalk(t *testing.T, n *node) walkFixture {
	t.Helper()
	ctx := context.Background()
	a, err := n.platform.CreateMerchant(ctx, "A", "")
	require.NoError(t, err)
	b, err := n.platform.CreateMerchant(ctx, "B", "")
	require.NoError(t, err)
	adminA := client.New(n.url, a.AdminKey.Secret)
	viewerA, err := adminA.CreateKey(ctx, a.Merchant.ID, "viewer", "viewer")
	require.NoError(t, err)
	_, err = adminA.Do(ctx, "POST", "/v1/config/switch", map[string]any{"key": "secret-of-a",
		"spec": map[string]any{"target": "module:secret-of-a", "off": true, "reason": "marker-of-a"}}, nil)
	require.NoError(t, err)
	var v struct {
		ResourceID string `json:"resource_id"`
	}
	_, err = adminA.Do(ctx, "POST", "/v1/config/switch/secret-of-a/publish", nil, &v)
	require.NoError(t, err)
	tokB, err := client.New(n.url, b.AdminKey.Secret).IssueUserToken(ctx, "u-b", time.Hour)
	require.NoError(t, err)
	var ep struct {
		Endpoint struct {
			ID string `json:"id"`
		} `json:"endpoint"`
		Secret string `json:"secret"`
	}
	// an IP literal: the dispatcher refuses it as private without any DNS look-up
	_, err = adminA.Do(ctx, "POST", "/v1/webhooks/endpoints", map[string]any{"url": "https://127.0.0.1:9/hook-of-a",
		"event_types": []string{"*"}}, &ep)
	require.NoError(t, err)
	var delivery struct {
		ID string `json:"id"`
	}
	_, err = adminA.Do(ctx, "POST", "/v1/webhooks/endpoints/"+ep.Endpoint.ID+"/test", map[string]any{}, &delivery)
	require.NoError(t, err)
	// disabling cancels the delivery, so A's own dispatcher leaves A's rows alone during the walk
	_, err = adminA.Do(ctx, "PATCH", "/v1/webhooks/endpoints/"+ep.Endpoint.ID, map[string]any{"enabled": false}, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var d struct {
			Delivery struct {
				State string `json:"state"`
			} `json:"delivery"`
			State string `json:"state"`
		}
		_, err := adminA.Do(ctx, "GET", "/v1/webhooks/deliveries/"+delivery.ID, nil, &d)
		return err == nil && (d.State == "canceled" || d.Delivery.State == "canceled")
	}, 10*time.Second, 10*time.Millisecond)
	var grant struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	_, err = adminA.Do(ctx, "POST", "/v1/grants", map[string]any{"user_id": "u-a", "source_id": "order-of-a",
		"rewards": []any{map[string]any{"type": "points", "amount": 100}}}, &grant)
	require.NoError(t, err)
	require.Equal(t, "succeeded", grant.State)
	var hold struct {
		ID string `json:"id"`
	}
	_, err = adminA.Do(ctx, "POST", "/v1/users/u-a/holds", map[string]any{"asset": "points", "amount": 10,
		"ttl_seconds": 3600, "business_key": "hold-of-a"}, &hold)
	require.NoError(t, err)
	couponA, redemptionA := couponFixtures(t, adminA)
	userTaskA := taskFixtures(t, adminA)
	return walkFixture{merchantA: a.Merchant.ID, keyA: viewerA.Key.ID, resourceA: v.ResourceID,
		grantA: grant.ID, holdA: hold.ID, couponA: couponA, redemptionA: redemptionA, userTaskA: userTaskA,
		endpointA: ep.Endpoint.ID, deliveryA: delivery.ID, secretA: ep.Secret,
		adminA: a.AdminKey.Secret, adminB: b.AdminKey.Secret, tokenB: tokB.Token,
		params: map[string]string{"merchant_id": a.Merchant.ID, "key_id": viewerA.Key.ID, "user_id": "u-a",
			"kind": "switch", "key": "secret-of-a", "version": "1", "endpoint_id": ep.Endpoint.ID,
			"delivery_id": delivery.ID, "grant_id": grant.ID, "hold_id": hold.ID, "step": "points",
			"template_id": "tpl-of-a", "coupon_id": couponA, "redemption_id": redemptionA,
			"task_id": "task-of-a", "user_task_id": userTaskA}}
}

// couponFixtures publishes A's coupon template tpl-of-a, issues one to u-a and locks another for
// order-of-a.
func couponFixtures(t *testing.T, adminA *client.Client) (couponID, redemptionID string) {
	t.Helper()
	ctx := context.Background()
	_, err := adminA.Do(ctx, "POST", "/v1/config/coupon_template", map[string]any{"key": "tpl-of-a",
		"spec": map[string]any{"type": "amount_off", "amount": 1000, "threshold": map[string]any{"amount": 1000},
			"validity": map[string]any{"days": 30}, "title": map[string]any{"en": "marker-of-a"}}}, nil)
	require.NoError(t, err)
	_, err = adminA.Do(ctx, "POST", "/v1/config/coupon_template/tpl-of-a/publish", nil, nil)
	require.NoError(t, err)
	var issued struct {
		Results []struct {
			CouponID string `json:"coupon_id"`
		} `json:"results"`
	}
	for _, key := range []string{"coupon-of-a", "locked-of-a"} {
		_, err = adminA.Do(ctx, "POST", "/v1/coupon-templates/tpl-of-a/issue", map[string]any{"user_ids": []string{"u-a"},
			"business_key": key}, &issued)
		require.NoError(t, err)
		require.NotEmpty(t, issued.Results[0].CouponID)
	}
	var r struct {
		ID string `json:"id"`
	}
	_, err = adminA.Do(ctx, "POST", "/v1/redemptions", map[string]any{"user_id": "u-a", "order_id": "order-of-a",
		"coupon_ids": []string{issued.Results[0].CouponID}, "cart": walkCart}, &r)
	require.NoError(t, err)
	return issued.Results[0].CouponID, r.ID
}

func TestNoRouteCrossesTenants(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOptions{dialect: sqldb.SQLite})
	f := setupWalk(t, n)
	settle(t, n.app.DB(), f.merchantA)
	before := tenantRows(t, n.app.DB(), f.merchantA)
	require.NotEmpty(t, before)
	markers := []string{f.merchantA, f.keyA, f.resourceA, "marker-of-a", "secret-of-a", f.endpointA, f.deliveryA,
		f.secretA, "hook-of-a", f.grantA, f.holdA, "order-of-a", f.couponA, f.redemptionA, "coupon-of-a", "locked-of-a",
		f.userTaskA, "receipt-of-a"}

	walked := 0
	for _, op := range n.app.http.Operations() {
		if op.Access == httpapi.AccessPublic {
			continue
		}
		walked++
		for who, bearer := range map[string]string{"key of B": f.adminB, "token of B": f.tokenB} {
			status, body := call(t, n.url, op, f.params, bearer)
			name := fmt.Sprintf("%s %s as %s", op.Method, op.Path, who)
			require.Less(t, status, 500, "%s: %s", name, body)
			for _, m := range markers {
				if strings.Contains(fillPath(op.Path, f.params), m) {
					continue // an id the caller sent may be echoed back in an error
				}
				require.NotContains(t, body, m, "%s leaked merchant A's data", name)
			}
		}
	}
	require.Equal(t, before, tenantRows(t, n.app.DB(), f.merchantA), "merchant A's rows changed")
	require.GreaterOrEqual(t, walked, 20, "the walk must cover the registered routes")

	// the fixtures are real: A itself reads its own objects through the same paths
	for _, id := range []string{"get-merchant", "get-config", "list-config-versions", "list-keys",
		"get-webhook-endpoint", "get-webhook-delivery", "get-grant", "get-hold", "get-coupon", "get-redemption",
		"get-coupon-template-stats", "get-task-stats", "get-user-task-record"} {
		op := findOp(t, n.app.http.Operations(), id)
		status, body := call(t, n.url, op, f.params, f.adminA)
		require.Equal(t, http.StatusOK, status, body)
	}
}

func findOp(t *testing.T, ops []httpapi.Op, id string) httpapi.Op {
	t.Helper()
	for _, op := range ops {
		if op.OperationID == id {
			return op
		}
	}
	t.Fatalf("no operation %s", id)
	return httpapi.Op{}
}

func call(t *testing.T, base string, op httpapi.Op, params map[string]string, bearer string) (int, string) {
	t.Helper()
	path := fillPath(op.Path, params)
	require.NotContains(t, path, "{", "no fixture for a parameter of %s", op.Path)
	var body io.Reader
	if op.Method != http.MethodGet && op.Method != http.MethodDelete {
		payload, ok := bodyOverrides[op.OperationID]
		if !ok {
			payload = sampleBody(op.Operation)
		}
		raw, err := json.Marshal(payload)
		require.NoError(t, err)
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(op.Method, base+path, body)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+bearer)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(raw)
}

// sampleBody makes a body with every required property of the operation's schema filled in.
func sampleBody(op huma.Operation) any {
	if op.RequestBody == nil {
		return map[string]any{}
	}
	for _, media := range op.RequestBody.Content {
		if media.Schema != nil {
			return sampleOf(media.Schema)
		}
	}
	return map[string]any{}
}

func sampleOf(s *huma.Schema) any {
	if len(s.Enum) > 0 {
		return s.Enum[0]
	}
	switch s.Type {
	case "string":
		return "walk"
	case "integer", "number":
		return 1
	case "boolean":
		return true
	case "array":
		return []any{}
	}
	out := map[string]any{}
	for _, name := range s.Required {
		if prop, ok := s.Properties[name]; ok {
			out[name] = sampleOf(prop)
		}
	}
	return out
}

// tenantRows dumps every row that belongs to the tenant, table by table, in a stable order.
func tenantRows(t *testing.T, db *sqldb.DB, tenantID string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	rows, err := db.Reader().Query(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
	require.NoError(t, err)
	var tables []string
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		tables = append(tables, name)
	}
	require.NoError(t, rows.Close())
	out := map[string][]string{}
	for _, table := range tables {
		where := tenantColumn(t, db, table)
		if where == "" {
			continue
		}
		out[table] = dumpRows(t, db, `SELECT * FROM `+table+` WHERE `+where+` = $1`, tenantID)
	}
	return out
}

func tenantColumn(t *testing.T, db *sqldb.DB, table string) string {
	t.Helper()
	if table == "tenant_merchants" {
		return "id"
	}
	cols := dumpRows(t, db, `SELECT name FROM pragma_table_info($1)`, table)
	for _, c := range cols {
		if c == "[tenant_id]" {
			return "tenant_id"
		}
	}
	return ""
}

func dumpRows(t *testing.T, db *sqldb.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.Reader().Query(context.Background(), query, args...)
	require.NoError(t, err)
	defer rows.Close()
	cols, err := rows.Columns()
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		out = append(out, fmt.Sprint(vals))
	}
	require.NoError(t, rows.Err())
	sort.Strings(out)
	return out
}

func fillPath(path string, params map[string]string) string {
	for name, value := range params {
		path = strings.ReplaceAll(path, "{"+name+"}", value)
	}
	return path
}

// settle waits until every domain event of the tenant has left the outbox and been written to the
// activity log, so that background consumers change none of its rows during the walk.
func settle(t testing.TB, db *sqldb.DB, tenantID string) {
	t.Helper()
	ctx := context.Background()
	require.Eventually(t, func() bool {
		var events, unsent, recorded int
		q := db.Reader()
		require.NoError(t, q.QueryRow(ctx, `SELECT COUNT(*) FROM bus_outbox WHERE header LIKE $1 AND subject LIKE '%domain.%'`,
			"%"+tenantID+"%").Scan(&events))
		require.NoError(t, q.QueryRow(ctx, `SELECT COUNT(*) FROM bus_outbox WHERE sent_at IS NULL`).Scan(&unsent))
		require.NoError(t, q.QueryRow(ctx, `SELECT COUNT(*) FROM activity_records WHERE tenant_id = $1`, tenantID).Scan(&recorded))
		return unsent == 0 && events > 0 && recorded == events
	}, 20*time.Second, 10*time.Millisecond)
}

// taskFixtures publishes A's task task-of-a and completes it for u-a with a receipt.
func taskFixtures(t *testing.T, adminA *client.Client) (userTaskID string) {
	t.Helper()
	ctx := context.Background()
	_, err := adminA.Do(ctx, "POST", "/v1/config/task", map[string]any{"key": "task-of-a",
		"spec": map[string]any{"kind": "one_off", "trigger": map[string]any{"event_types": []string{"walk.done"}},
			"metric": map[string]any{"type": "count"},
			"stages": []any{map[string]any{"target": 1, "rewards": []any{map[string]any{"type": "points", "amount": 1}}}},
			"title":  map[string]any{"en": "marker-of-a"}}}, nil)
	require.NoError(t, err)
	_, err = adminA.Do(ctx, "POST", "/v1/config/task/task-of-a/publish", nil, nil)
	require.NoError(t, err)
	var done struct {
		UserTask struct {
			ID string `json:"id"`
		} `json:"user_task"`
	}
	_, err = adminA.Do(ctx, "POST", "/v1/users/u-a/tasks/task-of-a/complete", map[string]any{"business_id": "receipt-of-a"}, &done)
	require.NoError(t, err)
	require.NotEmpty(t, done.UserTask.ID)
	return done.UserTask.ID
}
