package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Event is a CloudEvent as perk takes it: Subject is the user, Data the event's fields.
type Event struct {
	SpecVersion string         `json:"specversion"`
	ID          string         `json:"id"`
	Source      string         `json:"source"`
	Type        string         `json:"type"`
	Subject     string         `json:"subject"`
	Time        *time.Time     `json:"time,omitempty"`
	Data        map[string]any `json:"data,omitempty"`
}

// EventResult is one event's answer: accepted, duplicate, rejected (Reason) or failed.
type EventResult struct {
	Index  int    `json:"index"`
	ID     string `json:"id"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// EventsResult is the answer to SendEvents.
type EventsResult struct {
	Accepted   int           `json:"accepted"`
	Duplicates int           `json:"duplicates"`
	Rejected   int           `json:"rejected"`
	Failed     int           `json:"failed"`
	Results    []EventResult `json:"results"`
}

// SendEvents sends a batch of behaviour events (POST /v1/events); SpecVersion defaults to 1.0.
func (c *Client) SendEvents(ctx context.Context, events []Event, opts ...Option) (EventsResult, error) {
	for i := range events {
		if events[i].SpecVersion == "" {
			events[i].SpecVersion = "1.0"
		}
	}
	var out EventsResult
	_, err := c.Do(ctx, http.MethodPost, "/v1/events", events, &out, opts...)
	return out, err
}

// Account is one of a user's balances.
type Account struct {
	Asset   string `json:"asset"`
	Balance int64  `json:"balance"`
}

// Accounts reads a user's balances by asset.
func (c *Client) Accounts(ctx context.Context, userID string) ([]Account, error) {
	var out struct {
		Accounts []Account `json:"accounts"`
	}
	_, err := c.Do(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(userID)+"/accounts", nil, &out)
	return out.Accounts, err
}

// Balance is a user's balance of one asset (0 without an account).
func (c *Client) Balance(ctx context.Context, userID, asset string) (int64, error) {
	accts, err := c.Accounts(ctx, userID)
	for _, a := range accts {
		if a.Asset == asset {
			return a.Balance, err
		}
	}
	return 0, err
}

// TaskView is a task as a user sees it now (the answer keeps more fields; see the API docs).
type TaskView struct {
	Task       string `json:"task"`
	Title      string `json:"title"`
	Status     string `json:"status"`
	UserTaskID string `json:"user_task_id,omitempty"`
	Period     string `json:"period"`
	Progress   int64  `json:"progress"`
	Target     int64  `json:"target"`
	Stage      int    `json:"stage"`
}

// UserTasks lists a user's tasks now; filter is "", available, claimed or done.
func (c *Client) UserTasks(ctx context.Context, userID, filter string) ([]TaskView, error) {
	var out struct {
		Items []TaskView `json:"items"`
	}
	path := "/v1/users/" + url.PathEscape(userID) + "/tasks"
	if filter != "" {
		path += "?filter=" + url.QueryEscape(filter)
	}
	_, err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out.Items, err
}

// UserTask is a user's task for one period.
type UserTask struct {
	ID     string `json:"id"`
	Task   string `json:"task"`
	Period string `json:"period"`
	State  string `json:"state"`
}

// Completion is the answer to CompleteTask; Grants keep perk's grant objects as JSON.
type Completion struct {
	UserTask UserTask          `json:"user_task"`
	Grants   []json.RawMessage `json:"grants"`
	Replayed bool              `json:"replayed"`
}

// CompleteTask sends a completion receipt, idempotent on businessID.
func (c *Client) CompleteTask(ctx context.Context, userID, task, businessID string, payload any) (Completion, error) {
	var out Completion
	_, err := c.Do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(userID)+"/tasks/"+url.PathEscape(task)+"/complete",
		map[string]any{"business_id": businessID, "payload": payload}, &out)
	return out, err
}

// IssuedCoupon is one user's answer to IssueCoupons.
type IssuedCoupon struct {
	UserID   string `json:"user_id"`
	CouponID string `json:"coupon_id,omitempty"`
	Created  bool   `json:"created"`
	Error    *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// IssueCoupons issues one coupon of a template to each user, idempotent on businessKey.
func (c *Client) IssueCoupons(ctx context.Context, template, businessKey string, userIDs []string) ([]IssuedCoupon, error) {
	var out struct {
		Results []IssuedCoupon `json:"results"`
	}
	_, err := c.Do(ctx, http.MethodPost, "/v1/coupon-templates/"+url.PathEscape(template)+"/issue",
		map[string]any{"user_ids": userIDs, "business_key": businessKey}, &out)
	return out.Results, err
}

// CartItem is one line of a cart; UnitPrice is in minor units.
type CartItem struct {
	SKU       string `json:"sku"`
	Category  string `json:"category,omitempty"`
	Brand     string `json:"brand,omitempty"`
	Model     string `json:"model,omitempty"`
	UnitPrice int64  `json:"unit_price"`
	Quantity  int64  `json:"quantity"`
}

// Cart is what a user is about to buy.
type Cart struct {
	BusinessLine string     `json:"business_line,omitempty"`
	Channel      string     `json:"channel,omitempty"`
	Currency     string     `json:"currency,omitempty"`
	Items        []CartItem `json:"items"`
}

// Pick is coupons used together and their total discount.
type Pick struct {
	CouponIDs []string `json:"coupon_ids"`
	Discount  int64    `json:"discount"`
}

// Qualification is the answer to Qualify (each coupon's outcome kept as JSON).
type Qualification struct {
	Amount  int64             `json:"amount"`
	Coupons []json.RawMessage `json:"coupons"`
	Best    struct {
		Single *Pick `json:"single"`
		Stack  *Pick `json:"stack"`
	} `json:"best"`
}

// Qualify asks which of a user's coupons apply to a cart.
func (c *Client) Qualify(ctx context.Context, userID string, cart Cart) (Qualification, error) {
	var out Qualification
	_, err := c.Do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(userID)+"/coupons/qualify",
		map[string]any{"cart": cart}, &out)
	return out, err
}

// Redemption is coupons locked (then confirmed, released or rolled back) for an order.
type Redemption struct {
	ID        string   `json:"id"`
	UserID    string   `json:"user_id"`
	OrderID   string   `json:"order_id"`
	CouponIDs []string `json:"coupon_ids"`
	Discount  int64    `json:"discount"`
	State     string   `json:"state"`
}

// LockCoupons locks coupons for an order, all or none; ttl 0 takes the default.
func (c *Client) LockCoupons(ctx context.Context, userID, orderID string, couponIDs []string, cart Cart, ttl time.Duration) (Redemption, error) {
	var out Redemption
	_, err := c.Do(ctx, http.MethodPost, "/v1/redemptions", map[string]any{"user_id": userID, "order_id": orderID,
		"coupon_ids": couponIDs, "cart": cart, "ttl_seconds": int64(ttl / time.Second)}, &out)
	return out, err
}

// SettleRedemption confirms, releases or rolls back a redemption (action "confirm", "release" or
// "rollback").
func (c *Client) SettleRedemption(ctx context.Context, id, action string) (Redemption, error) {
	var out Redemption
	_, err := c.Do(ctx, http.MethodPost, "/v1/redemptions/"+url.PathEscape(id)+"/"+url.PathEscape(action), nil, &out)
	return out, err
}
