package task_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/task"
)

// base is a valid spec that each case of the table breaks in one place.
const base = `{'kind':'daily','trigger':{'event_types':['checkin']},'metric':{'type':'count'},
	'stages':[{'target':1,'rewards':[{'type':'points','amount':10}]}],'title':{'en':'Check in'}}`

// edit returns base with its top-level members replaced (or removed, with null).
func edit(t *testing.T, changes string) string {
	t.Helper()
	var m, c map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(spec(base)), &m))
	require.NoError(t, json.Unmarshal([]byte(spec(changes)), &c))
	for k, v := range c {
		if string(v) == "null" {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	out, err := json.Marshal(m)
	require.NoError(t, err)
	return string(out)
}

// TestSpecValidation: every rule refuses a bad spec at publish with the field's path (and, for
// CEL, the position of the problem); nothing is published.
func TestSpecValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, changes, path, message string
	}{
		{"kind missing", `{'kind':null}`, "spec.kind", "is required"},
		{"kind unknown", `{'kind':'hourly'}`, "spec.kind", "unknown kind"},
		{"unknown member", `{'reward':10}`, "spec.reward", "unknown field"},
		{"unknown nested member", `{'trigger':{'event_types':['checkin'],'when':'x'}}`, "spec.trigger.when", "unknown field"},
		{"wrong type", `{'stages':[{'target':'one','rewards':[{'type':'points','amount':10}]}]}`, "spec.stages[0].target", "must be an integer"},
		{"no event types", `{'trigger':{'event_types':[]}}`, "spec.trigger.event_types", "at least one"},
		{"bad event type", `{'trigger':{'event_types':['check in']}}`, "spec.trigger.event_types[0]", "must be an event type"},
		{"duplicate event type", `{'trigger':{'event_types':['a','a']}}`, "spec.trigger.event_types[1]", "duplicate"},
		{"filter syntax", `{'trigger':{'event_types':['a'],'filter':'event.data.amount >= '}}`, "spec.trigger.filter", "1:"},
		{"filter unknown variable", `{'trigger':{'event_types':['a'],'filter':'order.amount > 1'}}`, "spec.trigger.filter", "1:1: undeclared reference to 'order'"},
		{"filter not bool", `{'trigger':{'event_types':['a'],'filter':'size(event) + 1'}}`, "spec.trigger.filter", "want bool"},
		{"metric missing", `{'metric':{}}`, "spec.metric.type", "is required"},
		{"metric unknown", `{'metric':{'type':'avg'}}`, "spec.metric.type", "unknown metric"},
		{"sum without field", `{'metric':{'type':'sum'}}`, "spec.metric.field", "is required"},
		{"bad field", `{'metric':{'type':'sum','field':'data[0]'}}`, "spec.metric.field", "data path"},
		{"count with field", `{'metric':{'type':'count','field':'amount'}}`, "spec.metric.field", "no field"},
		{"two stages on daily", `{'stages':[{'target':1,'rewards':[{'type':'points','amount':1}]},{'target':2,'rewards':[{'type':'points','amount':1}]}]}`, "spec.stages", "exactly one stage"},
		{"staged with one stage", `{'kind':'staged','stages':[{'target':1,'rewards':[{'type':'points','amount':1}]}]}`, "spec.stages", "at least 2"},
		{"target zero", `{'stages':[{'target':0,'rewards':[{'type':'points','amount':1}]}]}`, "spec.stages[0].target", "positive"},
		{"distinct target", `{'metric':{'type':'distinct','field':'sku'},'stages':[{'target':5000,'rewards':[{'type':'points','amount':1}]}]}`, "spec.stages[0].target", "at most 1000"},
		{"after forward", `{'kind':'staged','stages':[{'target':1,'rewards':[{'type':'points','amount':1}]},{'target':2,'after':1,'rewards':[{'type':'points','amount':1}]}]}`, "spec.stages[1].after", "earlier stage"},
		{"rewards and flow", `{'stages':[{'target':1,'flow':'welcome','rewards':[{'type':'points','amount':1}]}]}`, "spec.stages[0]", "not both"},
		{"no rewards", `{'stages':[{'target':1}]}`, "spec.stages[0].rewards", "list rewards or name a flow"},
		{"bad reward amount", `{'stages':[{'target':1,'rewards':[{'type':'points','amount':-3}]}]}`, "spec.stages[0].rewards[0].amount", "positive"},
		{"bad reward type", `{'stages':[{'target':1,'rewards':[{'type':'cash','amount':3}]}]}`, "spec.stages[0].rewards[0].type", "unknown reward type"},
		{"coupon without the module", `{'stages':[{'target':1,'rewards':[{'type':'coupon','template':'save30'}]}]}`, "spec.stages[0].rewards[0].type", "coupon module"},
		{"dangling flow", `{'stages':[{'target':1,'flow':'nowhere'}]}`, "spec.stages[0].flow", "unknown flow \"nowhere\""},
		{"period on daily", `{'period':'weekly'}`, "spec.period", "only staged"},
		{"bad period", `{'kind':'staged','period':'yearly','stages':[{'target':1,'rewards':[{'type':'points','amount':1}]},{'target':2,'rewards':[{'type':'points','amount':1}]}]}`, "spec.period", "none, daily"},
		{"claim mode", `{'claim':{'mode':'invite'}}`, "spec.claim.mode", "auto, manual or audience"},
		{"audience missing", `{'claim':{'mode':'audience'}}`, "spec.claim.audience", "is required"},
		{"audience bad", `{'claim':{'mode':'audience','audience':'user.level >'}}`, "spec.claim.audience", "1:"},
		{"audience sees no event", `{'claim':{'mode':'audience','audience':'has(event.x)'}}`, "spec.claim.audience", "undeclared reference to 'event'"},
		{"per period", `{'limits':{'per_period':21}}`, "spec.limits.per_period", "between 1 and 20"},
		{"empty budget", `{'limits':{'budget':{}}}`, "spec.limits.budget", "set completions"},
		{"negative budget", `{'limits':{'budget':{'completions':-1}}}`, "spec.limits.budget.completions", "positive"},
		{"active backwards", `{'active':{'from':'2026-12-01T00:00:00Z','until':'2026-11-01T00:00:00Z'}}`, "spec.active.until", "after from"},
		{"bad time", `{'visible':{'from':'tomorrow'}}`, "spec.visible.from", "RFC 3339"},
		{"window without active", `{'kind':'window'}`, "spec.active", "active window"},
		{"streak on weekly", `{'kind':'weekly','streak':{'rewards':[{'day':7,'rewards':[{'type':'points','amount':1}]}]}}`, "spec.streak", "daily task"},
		{"streak days", `{'streak':{'rewards':[{'day':7,'rewards':[{'type':'points','amount':1}]},{'day':3,'rewards':[{'type':'points','amount':1}]}]}}`, "spec.streak.rewards[1].day", "increase"},
		{"streak reward", `{'streak':{'rewards':[{'day':7,'rewards':[{'type':'points'}]}]}}`, "spec.streak.rewards[0].rewards[0].amount", "positive"},
		{"makeup cards", `{'streak':{'makeup_cards_per_month':40}}`, "spec.streak.makeup_cards_per_month", "between 0 and 31"},
		{"cycle without rewards", `{'streak':{'cycle':true}}`, "spec.streak.cycle", "needs streak rewards"},
		{"title missing", `{'title':null}`, "spec.title", "is required"},
		{"title language", `{'title':{'fr':'Pointer'}}`, "spec.title.fr", "unknown language"},
		{"title too long", `{'title':{'en':'` + strings.Repeat("x", 101) + `'}}`, "spec.title.en", "at most 100"},
		{"icon", `{'icon':'ftp://x/y.png'}`, "spec.icon", "http(s) URL"},
	}
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		for _, c := range cases {
			_, err := b.tryPublish(shop, task.KindTask, "case", edit(t, c.changes))
			require.Error(t, err, c.name)
			p := requireProblem(t, err, problem.KindInvalid, c.path)
			found := false
			for _, f := range p.Fields {
				if f.Path == c.path {
					found = found || strings.Contains(f.Message, c.message)
				}
			}
			require.True(t, found, "%s: want %q in %s, got %v", c.name, c.message, c.path, p.Fields)
		}
		_, live := b.snap.Get(shop, task.KindTask, "case")
		require.False(t, live, "no case may have been published")
	})
}

// TestSpecNormalisedAndDrafts: the stored spec has its defaults filled; a draft may be incomplete;
// a flow published later makes a stage naming it publishable; the demo specs publish.
func TestSpecNormalisedAndDrafts(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.publish(t, task.KindTask, "checkin", spec(base))
		p, ok := b.snap.Get(shop, task.KindTask, "checkin")
		require.True(t, ok)
		var stored task.Spec
		require.NoError(t, json.Unmarshal(p.Spec, &stored))
		require.Equal(t, task.ClaimAuto, stored.Claim.Mode)
		require.Equal(t, 1, stored.Limits.PerPeriod)

		// A draft is checked for what it holds, not for what it lacks.
		r, err := b.catalog.Create(ctx, catalog.CreateParams{TenantID: shop, Kind: task.KindTask, Key: "draft",
			Spec: json.RawMessage(spec(`{'kind':'daily','stages':[{'target':1,'flow':'later'}]}`)), Actor: actor})
		require.NoError(t, err)
		_, err = b.catalog.Create(ctx, catalog.CreateParams{TenantID: shop, Kind: task.KindTask, Key: "bad-draft",
			Spec: json.RawMessage(spec(`{'kind':'hourly'}`)), Actor: actor})
		requireProblem(t, err, problem.KindInvalid, "spec.kind")
		_, err = b.catalog.Publish(ctx, catalog.PublishParams{TenantID: shop, ID: r.ID, Actor: actor})
		requireProblem(t, err, problem.KindInvalid, "spec.trigger.event_types", "spec.metric.type", "spec.stages[0].flow", "spec.title")

		b.publish(t, "flow", "later", `{"steps":[{"name":"p","component":"grant_points","params":{"amount":1}}]}`)
		b.publish(t, task.KindTask, "draft", edit(t, `{'stages':[{'target':1,'flow':'later'}]}`))

		for key, s := range task.DemoSpecs() {
			b.publish(t, task.KindTask, key, string(s))
		}
		require.Len(t, b.snap.List(shop, task.KindTask), 5)
	})
}
