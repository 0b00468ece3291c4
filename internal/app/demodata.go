package app

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/task"
)

// demoResource is one config resource the demo merchant starts with.
type demoResource struct {
	kind, key string
	spec      json.RawMessage
}

// demoCouponTemplates are the demo merchant's coupon templates (amounts in fen).
var demoCouponTemplates = []demoResource{
	{coupon.KindTemplate, "save30", json.RawMessage(`{"type": "amount_off", "amount": 3000,
		"threshold": {"amount": 19900}, "validity": {"days": 30}, "per_user": 5,
		"title": {"zh-CN": "满199减30", "en": "¥30 off orders of ¥199"}}`)},
	{coupon.KindTemplate, "phone10", json.RawMessage(`{"type": "percent_off", "percent_bp": 1000, "cap": 5000,
		"applicability": {"category": {"include": ["phone"]}}, "validity": {"days": 30},
		"stacking": {"mode": "group", "group": "category", "max_per_order": 1},
		"title": {"zh-CN": "手机9折，最高减50", "en": "10% off phones, up to ¥50"}}`)},
	{coupon.KindTemplate, "recycle-bonus", json.RawMessage(`{"type": "seller_bonus", "percent_bp": 500, "cap": 2000,
		"threshold": {"amount": 10000}, "applicability": {"business_line": {"include": ["recycle"]}},
		"validity": {"days": 30}, "title": {"zh-CN": "回收加价5%，最高20元", "en": "+5% on trade-ins from ¥100, up to ¥20"}}`)},
}

// demoResources lists the demo merchant's coupon templates, then its tasks; weekly-orders also
// rewards a save30 coupon.
func demoResources() ([]demoResource, error) {
	out := append([]demoResource(nil), demoCouponTemplates...)
	specs := task.DemoSpecs()
	for _, key := range []string{"daily-checkin", "weekly-orders", "monthly-spend"} {
		spec := specs[key]
		if key == "weekly-orders" {
			var err error
			if spec, err = withCouponReward(spec, "save30"); err != nil {
				return nil, err
			}
		}
		out = append(out, demoResource{task.KindTask, key, spec})
	}
	return out, nil
}

// withCouponReward adds a coupon of template to the first stage's rewards of a task spec.
func withCouponReward(spec json.RawMessage, template string) (json.RawMessage, error) {
	var m map[string]any
	if err := json.Unmarshal(spec, &m); err != nil {
		return nil, err
	}
	stages, _ := m["stages"].([]any)
	if len(stages) == 0 {
		return nil, fmt.Errorf("demo task has no stages")
	}
	first := stages[0].(map[string]any)
	rewards, _ := first["rewards"].([]any)
	first["rewards"] = append(rewards, map[string]any{"type": "coupon", "template": template})
	return json.Marshal(m)
}

// seedDemoResources creates and publishes what the demo merchant is missing; resources already
// there (perhaps edited in the console) are left as they are.
func (a *App) seedDemoResources(ctx context.Context, tenantID string) error {
	resources, err := demoResources()
	if err != nil {
		return err
	}
	for _, r := range resources {
		res, err := a.catalog.Get(ctx, catalog.GetParams{TenantID: tenantID, Kind: r.kind, Key: r.key})
		if problem.Is(err, problem.KindNotFound) {
			res, err = a.catalog.Create(ctx, catalog.CreateParams{TenantID: tenantID, Kind: r.kind, Key: r.key,
				Spec: r.spec, Actor: "perk-demo"})
		}
		if err != nil {
			return fmt.Errorf("demo %s %s: %w", r.kind, r.key, err)
		}
		if res.PublishedVersion > 0 {
			continue
		}
		if _, err := a.catalog.Publish(ctx, catalog.PublishParams{TenantID: tenantID, ID: res.ID,
			Revision: res.DraftRevision, Actor: "perk-demo"}); err != nil {
			return fmt.Errorf("publish demo %s %s: %w", r.kind, r.key, err)
		}
	}
	return a.snapshot.Apply(ctx)
}
