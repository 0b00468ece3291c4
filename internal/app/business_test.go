package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/client"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// demoBundle is a node serving the demo merchant, and a client with its key.
type demoBundle struct {
	node *node
	shop *client.Client
	ctx  context.Context
}

func setupDemo(t *testing.T, dialect sqldb.Dialect) *demoBundle {
	t.Helper()
	o := nodeOptions{dialect: dialect, demo: true}
	if dialect == sqldb.Postgres {
		o.busPrefix = externalPrefix(t)
	}
	n := startNode(t, o)
	var demo Demo
	require.Eventually(t, func() bool {
		raw, err := os.ReadFile(n.app.DemoPath())
		return err == nil && json.Unmarshal(raw, &demo) == nil && demo.APIKey != ""
	}, 30*time.Second, 10*time.Millisecond)
	return &demoBundle{node: n, shop: client.New(n.url, demo.APIKey), ctx: context.Background()}
}

// event is a CloudEvent for the demo merchant.
func event(id, typ, user string, data map[string]any) map[string]any {
	return map[string]any{"specversion": "1.0", "id": id, "source": "/test", "type": typ, "subject": user, "data": data}
}

type eventsResult struct {
	Accepted, Duplicates int
	Results              []struct{ Status string }
}

func (b *demoBundle) send(t *testing.T, events ...map[string]any) eventsResult {
	t.Helper()
	var out eventsResult
	resp, err := b.shop.Do(b.ctx, http.MethodPost, "/v1/events", events, &out)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, resp.Status)
	return out
}

func (b *demoBundle) balance(t require.TestingT, user, asset string) int64 {
	var out struct {
		Accounts []struct {
			Asset   string
			Balance int64
		}
	}
	_, err := b.shop.Do(b.ctx, http.MethodGet, "/v1/users/"+user+"/accounts", nil, &out)
	require.NoError(t, err)
	for _, a := range out.Accounts {
		if a.Asset == asset {
			return a.Balance
		}
	}
	return 0
}

// taskState is the user's current count (or sum) on a task, as the task list shows it.
func (b *demoBundle) taskState(t require.TestingT, user, task string) (state string, progress int64) {
	var out struct {
		Status   string `json:"status"`
		Progress int64  `json:"progress"`
	}
	_, err := b.shop.Do(b.ctx, http.MethodGet, "/v1/users/"+user+"/tasks/"+task, nil, &out)
	require.NoError(t, err)
	return out.Status, out.Progress
}

func TestDemoCheckinEarnsTenPointsOnce(t *testing.T) {
	t.Parallel()
	for _, d := range []sqldb.Dialect{sqldb.SQLite, sqldb.Postgres} {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			b := setupDemo(t, d)
			start := time.Now()
			res := b.send(t, event("c-1", "checkin", "new-user", nil))
			require.Equal(t, 1, res.Accepted)
			require.Eventually(t, func() bool { return b.balance(t, "new-user", "points") == 10 }, 30*time.Second, 5*time.Millisecond)
			t.Logf("first check-in to 10 points: %s", time.Since(start).Round(time.Millisecond))

			res = b.send(t, event("c-1", "checkin", "new-user", nil), event("c-2", "checkin", "new-user", nil))
			require.Equal(t, "duplicate", res.Results[0].Status)
			require.Equal(t, "accepted", res.Results[1].Status)
			// An order after them: once weekly-orders counts it, the check-in before it was applied too.
			b.send(t, event("o-1", "order.paid", "new-user", map[string]any{"amount": 6000}))
			require.Eventually(t, func() bool {
				_, n := b.taskState(t, "new-user", "weekly-orders")
				return n == 1
			}, 30*time.Second, 5*time.Millisecond)
			require.Equal(t, int64(10), b.balance(t, "new-user", "points"), "a second check-in the same day earns nothing")
		})
	}
}

func TestDemoWeeklyOrdersGrowthAndCoupon(t *testing.T) {
	t.Parallel()
	b := setupDemo(t, sqldb.SQLite)
	for i, amount := range []int{6000, 4000, 5000, 7000} {
		b.send(t, event(fmt.Sprint("wo-", i), "order.paid", "buyer", map[string]any{"amount": amount}))
	}
	require.Eventually(t, func() bool { return b.balance(t, "buyer", "growth") == 100 }, 30*time.Second, 5*time.Millisecond)
	var wallet struct {
		Items []struct {
			ID       string `json:"id"`
			Template string `json:"template"`
			State    string `json:"state"`
		} `json:"items"`
	}
	require.Eventually(t, func() bool {
		_, err := b.shop.Do(b.ctx, http.MethodGet, "/v1/users/buyer/coupons", nil, &wallet)
		return err == nil && len(wallet.Items) == 1
	}, 30*time.Second, 5*time.Millisecond)
	require.Equal(t, "save30", wallet.Items[0].Template)
	var state string
	require.Eventually(t, func() bool { state, _ = b.taskState(t, "buyer", "weekly-orders"); return state == "rewarded" },
		30*time.Second, 5*time.Millisecond)
	require.Equal(t, "rewarded", state, "the grant's success reached the user task")
	// monthly-spend: 22,000 so far, below its first stage
	require.Zero(t, b.balance(t, "buyer", "points"))
}

func TestCouponJourneyOverHTTP(t *testing.T) {
	t.Parallel()
	b := setupDemo(t, sqldb.SQLite)
	var issued struct {
		Created int `json:"created"`
		Results []struct {
			UserID   string `json:"user_id"`
			CouponID string `json:"coupon_id"`
		} `json:"results"`
	}
	_, err := b.shop.Do(b.ctx, http.MethodPost, "/v1/coupon-templates/save30/issue",
		map[string]any{"user_ids": []string{"alice", "bob"}, "business_key": "spring"}, &issued)
	require.NoError(t, err)
	require.Equal(t, 2, issued.Created)
	coupon := issued.Results[0].CouponID
	_, err = b.shop.Do(b.ctx, http.MethodPost, "/v1/coupon-templates/save30/issue",
		map[string]any{"user_ids": []string{"alice", "bob"}, "business_key": "spring"}, &issued)
	require.NoError(t, err)
	require.Zero(t, issued.Created, "the same business key issues nothing new")
	require.Equal(t, coupon, issued.Results[0].CouponID)

	cart := func(price int) map[string]any {
		return map[string]any{"items": []any{map[string]any{"sku": "tee", "category": "apparel", "unit_price": price, "quantity": 1}}}
	}
	var q struct {
		Coupons []struct {
			Applicable bool  `json:"applicable"`
			Discount   int64 `json:"discount"`
			Reasons    []struct {
				Code      string `json:"code"`
				Message   string `json:"message"`
				Shortfall int64  `json:"shortfall"`
			} `json:"reasons"`
		} `json:"coupons"`
		Best struct {
			Single *struct {
				CouponIDs []string `json:"coupon_ids"`
				Discount  int64    `json:"discount"`
			} `json:"single"`
		} `json:"best"`
	}
	_, err = b.shop.Do(b.ctx, http.MethodPost, "/v1/users/alice/coupons/qualify", map[string]any{"cart": cart(18700)}, &q)
	require.NoError(t, err)
	require.Len(t, q.Coupons, 1)
	require.False(t, q.Coupons[0].Applicable)
	require.Equal(t, "below_threshold", q.Coupons[0].Reasons[0].Code)
	require.Equal(t, int64(1200), q.Coupons[0].Reasons[0].Shortfall)
	require.Equal(t, "¥12.00 more for ¥30.00 off", q.Coupons[0].Reasons[0].Message)
	require.Nil(t, q.Best.Single)

	_, err = b.shop.Do(b.ctx, http.MethodPost, "/v1/users/alice/coupons/qualify", map[string]any{"cart": cart(19900)}, &q)
	require.NoError(t, err)
	require.True(t, q.Coupons[0].Applicable)
	require.Equal(t, []string{coupon}, q.Best.Single.CouponIDs)
	require.Equal(t, int64(3000), q.Best.Single.Discount)

	// Bad qualification bodies get huma's answers, as on every route, though this one reads its
	// bodies itself.
	item := func(k string, v any) map[string]any {
		it := map[string]any{"sku": "p1", "unit_price": 19900, "quantity": 1}
		if v == nil {
			delete(it, k)
		} else {
			it[k] = v
		}
		return map[string]any{"cart": map[string]any{"items": []any{it}}}
	}
	for _, tc := range []struct {
		name     string
		body     any
		opts     []client.Option
		status   int
		location string
		message  string
	}{
		{"price missing", item("unit_price", nil), nil, http.StatusUnprocessableEntity, "body.cart.items[0]", "unit_price"},
		{"unknown member", item("colour", "red"), nil, http.StatusUnprocessableEntity, "body.cart.items[0].colour", "unexpected property"},
		{"price a string", item("unit_price", "12"), nil, http.StatusUnprocessableEntity, "body.cart.items[0].unit_price", "expected integer"},
		{"no items", map[string]any{"cart": map[string]any{"items": []any{}}}, nil, http.StatusUnprocessableEntity, "body.cart.items", "at least one item"},
		{"quantity zero", item("quantity", 0), nil, http.StatusUnprocessableEntity, "body.cart.items[0].quantity", "between 1 and"},
		{"not JSON by its type", item("", nil), []client.Option{client.Header("Content-Type", "text/plain")},
			http.StatusUnsupportedMediaType, "body", "unknown content type"},
	} {
		_, err := b.shop.Do(b.ctx, http.MethodPost, "/v1/users/alice/coupons/qualify", tc.body, nil, tc.opts...)
		var p *client.Problem
		require.ErrorAs(t, err, &p, tc.name)
		require.Equal(t, tc.status, p.Status, tc.name)
		require.Equal(t, "/v1/users/alice/coupons/qualify", p.Instance, tc.name)
		require.NotEmpty(t, p.RequestID, tc.name)
		require.NotEmpty(t, p.Errors, tc.name)
		require.Equal(t, tc.location, p.Errors[0].Location, tc.name)
		require.Contains(t, p.Errors[0].Message, tc.message, tc.name)
	}

	// A bad cart is refused and locks nothing.
	resp, err := b.shop.Do(b.ctx, http.MethodPost, "/v1/redemptions", map[string]any{"user_id": "alice", "order_id": "o-1",
		"coupon_ids": []string{coupon}, "cart": cart(-1)}, nil)
	require.Error(t, err)
	require.Equal(t, http.StatusUnprocessableEntity, resp.Status)

	var r struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		Discount int64  `json:"discount"`
	}
	resp, err = b.shop.Do(b.ctx, http.MethodPost, "/v1/redemptions", map[string]any{"user_id": "alice", "order_id": "o-1",
		"coupon_ids": []string{coupon}, "cart": cart(19900), "ttl_seconds": 600}, &r)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.Status)
	require.Equal(t, "locked", r.State)
	require.Equal(t, int64(3000), r.Discount)
	resp, err = b.shop.Do(b.ctx, http.MethodPost, "/v1/redemptions", map[string]any{"user_id": "alice", "order_id": "o-2",
		"coupon_ids": []string{coupon}, "cart": cart(19900)}, nil)
	require.Error(t, err)
	require.Equal(t, http.StatusConflict, resp.Status, "a locked coupon cannot be locked for another order")

	_, err = b.shop.Do(b.ctx, http.MethodPost, "/v1/redemptions/"+r.ID+"/confirm", nil, &r)
	require.NoError(t, err)
	require.Equal(t, "confirmed", r.State)
	var stats struct {
		Issued       int64 `json:"issued"`
		Redeemed     int64 `json:"redeemed"`
		DiscountCost int64 `json:"discount_cost"`
	}
	_, err = b.shop.Do(b.ctx, http.MethodGet, "/v1/coupon-templates/save30/stats", nil, &stats)
	require.NoError(t, err)
	require.Equal(t, int64(2), stats.Issued)
	require.Equal(t, int64(1), stats.Redeemed)
	require.Equal(t, int64(3000), stats.DiscountCost)

	_, err = b.shop.Do(b.ctx, http.MethodPost, "/v1/redemptions/"+r.ID+"/rollback", nil, &r)
	require.NoError(t, err)
	require.Equal(t, "rolled_back", r.State)
	var c struct {
		State string `json:"state"`
	}
	_, err = b.shop.Do(b.ctx, http.MethodGet, "/v1/coupons/"+coupon, nil, &c)
	require.NoError(t, err)
	require.Equal(t, "issued", c.State, "a refund restores a coupon that is still valid")
}

func TestCompletionReceiptOverHTTP(t *testing.T) {
	t.Parallel()
	b := setupDemo(t, sqldb.SQLite)
	var done struct {
		UserTask struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"user_task"`
		Grants []struct {
			State string `json:"state"`
		} `json:"grants"`
		Replayed bool `json:"replayed"`
	}
	body := map[string]any{"business_id": "kiosk-1", "payload": map[string]any{"where": "store 7"}}
	_, err := b.shop.Do(b.ctx, http.MethodPost, "/v1/users/walk-in/tasks/daily-checkin/complete", body, &done)
	require.NoError(t, err)
	require.Len(t, done.Grants, 1)
	require.Equal(t, "succeeded", done.Grants[0].State, "the grant completes within the request")
	require.Equal(t, int64(10), b.balance(t, "walk-in", "points"))

	_, err = b.shop.Do(b.ctx, http.MethodPost, "/v1/users/walk-in/tasks/daily-checkin/complete", body, &done)
	require.NoError(t, err)
	require.True(t, done.Replayed)
	body["payload"] = map[string]any{"where": "store 8"}
	resp, err := b.shop.Do(b.ctx, http.MethodPost, "/v1/users/walk-in/tasks/daily-checkin/complete", body, nil)
	require.Error(t, err)
	require.Equal(t, http.StatusConflict, resp.Status)
	require.Contains(t, err.Error(), "idempotency-mismatch")
	resp, err = b.shop.Do(b.ctx, http.MethodPost, "/v1/users/walk-in/tasks/no-such-task/complete",
		map[string]any{"business_id": "x"}, nil)
	require.Error(t, err)
	require.Equal(t, http.StatusNotFound, resp.Status)
	require.Equal(t, int64(10), b.balance(t, "walk-in", "points"))
}

// TestClientDrivesEventsTasksAndCoupons runs a journey through the Go client's typed methods.
func TestClientDrivesEventsTasksAndCoupons(t *testing.T) {
	t.Parallel()
	b := setupDemo(t, sqldb.SQLite)
	ctx := b.ctx
	res, err := b.shop.SendEvents(ctx, []client.Event{
		{ID: "k-1", Source: "/app", Type: "checkin", Subject: "carol"},
		{ID: "k-1", Source: "/app", Type: "checkin", Subject: "carol"},
		{ID: "k-2", Source: "/app", Type: "no such type!", Subject: "carol"},
	})
	require.NoError(t, err)
	require.Equal(t, []string{"accepted", "duplicate", "rejected"},
		[]string{res.Results[0].Status, res.Results[1].Status, res.Results[2].Status})
	require.Eventually(t, func() bool {
		points, err := b.shop.Balance(ctx, "carol", "points")
		return err == nil && points == 10
	}, 30*time.Second, 5*time.Millisecond)
	tasks, err := b.shop.UserTasks(ctx, "carol", "")
	require.NoError(t, err)
	require.Len(t, tasks, 3)

	done, err := b.shop.CompleteTask(ctx, "dave", "daily-checkin", "visit-1", map[string]any{"store": 7})
	require.NoError(t, err)
	require.Equal(t, "rewarded", done.UserTask.State)

	issued, err := b.shop.IssueCoupons(ctx, "phone10", "promo", []string{"carol"})
	require.NoError(t, err)
	require.True(t, issued[0].Created)
	cart := client.Cart{Items: []client.CartItem{{SKU: "p1", Category: "phone", UnitPrice: 399900, Quantity: 1}}}
	q, err := b.shop.Qualify(ctx, "carol", cart)
	require.NoError(t, err)
	require.Equal(t, int64(5000), q.Best.Single.Discount, "10 % off, capped at ¥50")
	r, err := b.shop.LockCoupons(ctx, "carol", "order-9", q.Best.Single.CouponIDs, cart, time.Minute)
	require.NoError(t, err)
	require.Equal(t, "locked", r.State)
	r, err = b.shop.SettleRedemption(ctx, r.ID, "release")
	require.NoError(t, err)
	require.Equal(t, "released", r.State)
}

// TestAudienceReadsProfiles: a task for an audience counts only the users whose profile matches.
func TestAudienceReadsProfiles(t *testing.T) {
	t.Parallel()
	b := setupDemo(t, sqldb.SQLite)
	ctx := b.ctx
	spec := map[string]any{"kind": "one_off", "trigger": map[string]any{"event_types": []string{"app.opened"}},
		"metric": map[string]any{"type": "count"},
		"claim":  map[string]any{"mode": "audience", "audience": `"vip" in user.tags && user.attributes.city == "Hangzhou"`},
		"stages": []any{map[string]any{"target": 1, "rewards": []any{map[string]any{"type": "points", "amount": 7}}}},
		"title":  map[string]any{"en": "VIP welcome"}}
	_, err := b.shop.Do(ctx, http.MethodPost, "/v1/config/task", map[string]any{"key": "vip-welcome", "spec": spec}, nil)
	require.NoError(t, err)
	_, err = b.shop.Do(ctx, http.MethodPost, "/v1/config/task/vip-welcome/publish", nil, nil)
	require.NoError(t, err)
	for user, profile := range map[string]map[string]any{
		"vip-hz":  {"attributes": map[string]any{"city": "Hangzhou"}, "tags": []string{"vip"}},
		"vip-sh":  {"attributes": map[string]any{"city": "Shanghai"}, "tags": []string{"vip"}},
		"regular": {"attributes": map[string]any{"city": "Hangzhou"}},
	} {
		_, err := b.shop.Do(ctx, http.MethodPut, "/v1/users/"+user+"/profile", profile, nil)
		require.NoError(t, err)
	}
	var prof struct {
		Tags []string `json:"tags"`
	}
	_, err = b.shop.Do(ctx, http.MethodGet, "/v1/users/vip-hz/profile", nil, &prof)
	require.NoError(t, err)
	require.Equal(t, []string{"vip"}, prof.Tags)

	for i, user := range []string{"vip-hz", "vip-sh", "regular"} {
		b.send(t, event(fmt.Sprint("open-", i), "app.opened", user, nil))
	}
	require.Eventually(t, func() bool { return b.balance(t, "vip-hz", "points") == 7 }, 30*time.Second, 5*time.Millisecond)
	// A later event for vip-hz on another task shows the consumer went past the other two users.
	b.send(t, event("after", "order.paid", "vip-hz", map[string]any{"amount": 6000}))
	require.Eventually(t, func() bool {
		_, n := b.taskState(t, "vip-hz", "weekly-orders")
		return n == 1
	}, 30*time.Second, 5*time.Millisecond)
	require.Zero(t, b.balance(t, "vip-sh", "points"), "outside the audience: another city")
	require.Zero(t, b.balance(t, "regular", "points"), "outside the audience: no vip tag")
}
