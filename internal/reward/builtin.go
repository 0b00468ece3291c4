package reward

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// The built-in components.
const (
	ComponentGrantPoints  = "grant_points"
	ComponentGrantGrowth  = "grant_growth"
	ComponentIssueCoupon  = "issue_coupon"
	ComponentCallExternal = "call_external"
	ComponentEmitEvent    = "emit_event"
)

// SourceGrant is the source kind written on what a grant's steps post (ledger entries, coupons,
// events); the source id is the grant's id.
const SourceGrant = "grant"

// amountParams are the params of grant_points and grant_growth.
type amountParams struct {
	// Amount is what the step grants (> 0).
	Amount int64 `json:"amount"`
	// Expiry is the points' expiry policy (grant_points only; default never).
	Expiry *ledger.Expiry `json:"expiry,omitempty"`
	// Reason is written on the ledger entry (default "grant <id> step <name>").
	Reason string `json:"reason,omitempty"`
}

// grantComponent posts an asset to the ledger under the key "<grant_id>/<step>".
type grantComponent struct {
	name   string
	asset  string
	ledger Ledger
	zone   func(tenantID string) *time.Location
}

func (c grantComponent) Name() string { return c.name }

func (c grantComponent) Validate(params json.RawMessage) error {
	var fs problem.Fields
	var p amountParams
	if decodeParams(&fs, params, &p) {
		checkAmount(&fs, "amount", p.Amount)
		if c.asset != ledger.AssetPoints && p.Expiry != nil {
			fs.Add("expiry", "only points expire")
		}
		checkExpiry(&fs, "expiry", p.Expiry)
		if len(p.Reason) > 200 {
			fs.Add("reason", "must be at most 200 characters")
		}
	}
	return fs.Err("invalid " + c.name + " params")
}

func (c grantComponent) RunTx(ctx context.Context, sc StepContext) (json.RawMessage, error) {
	if c.ledger == nil {
		return nil, errors.New("reward: no ledger is configured")
	}
	gp, err := c.params(sc)
	if err != nil {
		return nil, err
	}
	entry, created, err := c.ledger.GrantTx(ctx, sc.Tx, gp)
	if err != nil {
		return nil, err
	}
	return c.output(entry, created), nil
}

// runTxBatch posts the step of many grants with one GrantManyTx.
func (c grantComponent) runTxBatch(ctx context.Context, tx *sqldb.Tx, scs []StepContext) ([]json.RawMessage, error) {
	gps := make([]ledger.GrantParams, len(scs))
	for i, sc := range scs {
		var err error
		if gps[i], err = c.params(sc); err != nil {
			return nil, err
		}
	}
	entries, created, err := c.ledger.GrantManyTx(ctx, tx, gps)
	if err != nil {
		return nil, err
	}
	outs := make([]json.RawMessage, len(scs))
	for i := range outs {
		outs[i] = c.output(entries[i], created[i])
	}
	return outs, nil
}

// params are the ledger grant of one step.
func (c grantComponent) params(sc StepContext) (ledger.GrantParams, error) {
	var p amountParams
	if err := json.Unmarshal(sc.Params, &p); err != nil {
		return ledger.GrantParams{}, err
	}
	gp := ledger.GrantParams{TenantID: sc.Grant.TenantID, UserID: sc.Grant.UserID, Asset: c.asset,
		Amount: p.Amount, BusinessKey: sc.Key, SourceKind: SourceGrant, SourceID: sc.Grant.ID, Reason: p.Reason}
	if gp.Reason == "" {
		gp.Reason = "grant " + sc.Grant.ID + " step " + sc.Step
	}
	if p.Expiry != nil {
		gp.Expiry = *p.Expiry
		if c.zone != nil {
			gp.Location = c.zone(sc.Grant.TenantID)
		}
	}
	return gp, nil
}

// grantOutput is a grant step's output; its fields are in name order, as a map's would be.
type grantOutput struct {
	Amount       int64      `json:"amount"`
	Asset        string     `json:"asset"`
	Created      bool       `json:"created"`
	EntryID      string     `json:"entry_id"`
	LotExpiresAt *time.Time `json:"lot_expires_at"`
}

func (c grantComponent) output(e ledger.Entry, created bool) json.RawMessage {
	return mustJSON(grantOutput{Amount: e.Amount, Asset: c.asset, Created: created, EntryID: e.ID,
		LotExpiresAt: e.LotExpiresAt})
}

// couponParams are the params of issue_coupon.
type couponParams struct {
	// Template is the coupon template's config key.
	Template string `json:"template"`
}

// couponComponent issues a coupon through the coupon module's CouponIssuer.
type couponComponent struct{ issuer CouponIssuer }

func (couponComponent) Name() string { return ComponentIssueCoupon }

func (c couponComponent) Validate(params json.RawMessage) error {
	if c.issuer == nil {
		return problem.Invalid("issue_coupon needs the coupon module, which is not installed on this node")
	}
	var fs problem.Fields
	var p couponParams
	if decodeParams(&fs, params, &p) && !flowKeyPattern.MatchString(p.Template) {
		fs.Add("template", "must be a coupon template key (a slug)")
	}
	return fs.Err("invalid issue_coupon params")
}

func (c couponComponent) RunTx(ctx context.Context, sc StepContext) (json.RawMessage, error) {
	if c.issuer == nil {
		return nil, errors.New("reward: no coupon issuer is configured")
	}
	var p couponParams
	if err := json.Unmarshal(sc.Params, &p); err != nil {
		return nil, err
	}
	id, err := c.issuer.IssueTx(ctx, sc.Tx, IssueCouponParams{TenantID: sc.Grant.TenantID, UserID: sc.Grant.UserID,
		Template: p.Template, BusinessKey: sc.Key, SourceKind: SourceGrant, SourceID: sc.Grant.ID})
	if err != nil {
		return nil, err
	}
	return mustJSON(map[string]string{"coupon_id": id, "template": p.Template}), nil
}

// eventParams are the params of emit_event.
type eventParams struct {
	// Type is the event's dotted lower-case type, e.g. "member.welcome".
	Type string `json:"type"`
	// Data is the event's payload (a JSON object).
	Data json.RawMessage `json:"data,omitempty"`
}

// eventComponent writes a custom domain event through the outbox, in the step's transaction.
type eventComponent struct{ events bus.EventsFunc }

func (eventComponent) Name() string { return ComponentEmitEvent }

func (c eventComponent) Validate(params json.RawMessage) error {
	var fs problem.Fields
	var p eventParams
	if decodeParams(&fs, params, &p) {
		if !eventTypePattern.MatchString(p.Type) {
			fs.Add("type", "must be a dotted lower-case event type, e.g. member.welcome")
		}
		if _, ok := compactObject(p.Data); !ok {
			fs.Add("data", "must be a JSON object")
		}
	}
	return fs.Err("invalid emit_event params")
}

func (c eventComponent) RunTx(ctx context.Context, sc StepContext) (json.RawMessage, error) {
	if c.events == nil {
		return nil, errors.New("reward: no event sink is configured")
	}
	var p eventParams
	if err := json.Unmarshal(sc.Params, &p); err != nil {
		return nil, err
	}
	data, _ := compactObject(p.Data)
	e := bus.Event{ID: ids.New("evt", sc.Now), Type: p.Type, TenantID: sc.Grant.TenantID, UserID: sc.Grant.UserID,
		SourceKind: SourceGrant, SourceID: sc.Grant.ID, Time: sc.Now, Data: data}
	if err := c.events(ctx, sc.Tx, e); err != nil {
		return nil, err
	}
	return mustJSON(map[string]string{"event_id": e.ID, "type": e.Type}), nil
}
