package reward_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/reward"
)

func TestFlowsAreValidatedAtPublish(t *testing.T) {
	t.Parallel()
	db := sqldbtest.Open(t, sqldb.SQLite, sets)
	b := setup(t, db)
	for _, tc := range []struct {
		name  string
		spec  string
		field string
		msg   string
	}{
		{"no steps", `{"steps":[]}`, "spec.steps", "at least one step"},
		{"unknown top-level field", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1}}],"stepz":1}`,
			"spec.stepz", "unknown field"},
		{"unknown component", `{"steps":[{"name":"a","component":"grant_gold","params":{}}]}`,
			"spec.steps[0].component", `unknown component "grant_gold"`},
		{"missing component", `{"steps":[{"name":"a"}]}`, "spec.steps[0].component", "is required"},
		{"bad params", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1}},
			{"name":"b","component":"grant_growth","params":{"amount":-5}}]}`, "spec.steps[1].params.amount", "must be positive"},
		{"zero amount", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":0}}]}`,
			"spec.steps[0].params.amount", "must be positive"},
		{"param of the wrong type", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":"ten"}}]}`,
			"spec.steps[0].params.amount", "must be an integer"},
		{"unknown param", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1,"colour":"red"}}]}`,
			"spec.steps[0].params.colour", "unknown field"},
		{"bad expiry", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1,"expiry":{"policy":"days","days":0}}}]}`,
			"spec.steps[0].params.expiry.days", "between 1 and"},
		{"growth does not expire", `{"steps":[{"name":"a","component":"grant_growth","params":{"amount":1,"expiry":{"policy":"end_of_year"}}}]}`,
			"spec.steps[0].params.expiry", "only points expire"},
		{"bad CEL", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1},"when":"params.x >"}]}`,
			"spec.steps[0].when", "1:"},
		{"undeclared CEL variable", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1},"when":"event.x > 1"}]}`,
			"spec.steps[0].when", "undeclared reference"},
		{"CEL not bool", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1},"when":"1 + 2"}]}`,
			"spec.steps[0].when", "want bool"},
		{"duplicate step names", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1}},
			{"name":"a","component":"grant_growth","params":{"amount":1}}]}`, "spec.steps[1].name", `duplicate step name "a"`},
		{"bad step name", `{"steps":[{"name":"A b","component":"grant_points","params":{"amount":1}}]}`,
			"spec.steps[0].name", "slug"},
		{"unknown after", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1}},
			{"name":"b","component":"grant_growth","params":{"amount":1},"after":["c"]}]}`, "spec.steps[1].after[0]", `unknown step "c"`},
		{"cycle", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1},"after":["c"]},
			{"name":"b","component":"grant_growth","params":{"amount":1},"after":["a"]},
			{"name":"c","component":"grant_growth","params":{"amount":2},"after":["b"]}]}`, "spec.steps[0].after", "cycle: a → b → c → a"},
		{"self after", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1},"after":["a"]}]}`,
			"spec.steps[0].after[0]", "itself"},
		{"retry out of range", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1},"retry":{"max_attempts":1000}}]}`,
			"spec.steps[0].retry.max_attempts", "between 1 and 100"},
		{"max attempts out of range", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1}}],"max_attempts":-1}`,
			"spec.max_attempts", "between 1 and 100"},
		{"coupon without the coupon module", `{"steps":[{"name":"a","component":"issue_coupon","params":{"template":"save30"}}]}`,
			"spec.steps[0].params", "coupon module"},
		{"bad URL", `{"steps":[{"name":"a","component":"call_external","params":{"url":"ftp://x","secret":"0123456789abcdef"}}]}`,
			"spec.steps[0].params.url", "http or https"},
		{"short secret", `{"steps":[{"name":"a","component":"call_external","params":{"url":"https://shop.example/hook","secret":"x"}}]}`,
			"spec.steps[0].params.secret", "16 to 256"},
		{"bad event type", `{"steps":[{"name":"a","component":"emit_event","params":{"type":"Welcome"}}]}`,
			"spec.steps[0].params.type", "dotted lower-case"},
		{"compensation that calls out", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1},
			"compensate":{"component":"call_external","params":{"url":"https://shop.example/hook","secret":"0123456789abcdef"}}}]}`,
			"spec.steps[0].compensate.component", "must write to the database"},
		{"compensation with bad params", `{"steps":[{"name":"a","component":"grant_points","params":{"amount":1},
			"compensate":{"component":"emit_event","params":{"type":"x"}}}]}`, "spec.steps[0].compensate.params.type", "dotted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := b.publishErr(t, "f-"+strings.ReplaceAll(strings.ToLower(tc.name), " ", "-"), tc.spec)
			p := requireProblem(t, err, problem.KindInvalid, tc.field)
			for _, f := range p.Fields {
				if f.Path == tc.field {
					require.Contains(t, f.Message, tc.msg)
				}
			}
		})
	}

	t.Run("a valid DAG publishes, normalised", func(t *testing.T) {
		v := b.publishFlow(t, tenantA, "dag", `{"steps":[
			{"name":"b","component":"grant_growth","params":{"amount":1},"after":["a"]},
			{"name":"a","component":"grant_points","params":{ "amount": 5, "expiry": {"policy":"days","days":30} },
			 "when":"params.level >= 2 && grant.source_kind == 'task'","retry":{"max_attempts":3,"backoff_seconds":5}},
			{"name":"c","component":"emit_event","params":{"type":"member.welcome","data":{"x":1}},"after":["a","b"],
			 "compensate":null}],"max_attempts":4}`)
		require.Equal(t, 1, v)
		ctx := context.Background()
		r, err := b.catalog.Get(ctx, catalog.GetParams{TenantID: tenantA, Kind: reward.KindFlow, Key: "dag"})
		require.NoError(t, err)
		ver, err := b.catalog.Version(ctx, catalog.VersionParams{TenantID: tenantA, ID: r.ID, Version: v})
		require.NoError(t, err)
		require.Contains(t, string(ver.Spec), `"params":{"amount":5,"expiry":{"policy":"days","days":30}}`)
	})
}

func TestInlineRewardsAreValidated(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		for _, tc := range []struct {
			name    string
			rewards []reward.Reward
			field   string
		}{
			{"negative amount", []reward.Reward{{Type: "points", Amount: -1}}, "rewards[0].amount"},
			{"zero amount", []reward.Reward{{Type: "growth"}}, "rewards[0].amount"},
			{"unknown asset", []reward.Reward{{Type: "points", Amount: 1}, {Type: "diamonds", Amount: 1}}, "rewards[1].type"},
			{"no type", []reward.Reward{{Amount: 1}}, "rewards[0].type"},
			{"coupon without the coupon module", []reward.Reward{{Type: "coupon", Template: "save30"}}, "rewards[0].type"},
			{"bad expiry", []reward.Reward{{Type: "points", Amount: 1, Expiry: expiry(`{"policy":"weekly"}`)}}, "rewards[0].expiry.policy"},
			{"none", nil, "rewards"},
		} {
			p := pointsParams("u1", "t-"+tc.name, 1)
			p.Rewards = tc.rewards
			_, _, err := b.svc.Create(ctx, p)
			requireProblem(t, err, problem.KindInvalid, tc.field)
		}
		for _, tc := range []struct {
			name  string
			p     func(*reward.CreateParams)
			field string
		}{
			{"unknown flow", func(p *reward.CreateParams) { p.Rewards, p.Flow = nil, "nope" }, "flow"},
			{"flow and rewards", func(p *reward.CreateParams) { p.Flow = "x" }, "flow"},
			{"bad user", func(p *reward.CreateParams) { p.UserID = "" }, "user_id"},
			{"bad source kind", func(p *reward.CreateParams) { p.SourceKind = "Task!" }, "source_kind"},
			{"bad source id", func(p *reward.CreateParams) { p.SourceID = "a b" }, "source_id"},
			{"negative seq", func(p *reward.CreateParams) { p.Seq = -1 }, "seq"},
			{"params not an object", func(p *reward.CreateParams) { p.Params = json.RawMessage(`[1]`) }, "params"},
		} {
			p := pointsParams("u1", "s-1", 1)
			tc.p(&p)
			_, _, err := b.svc.Create(ctx, p)
			requireProblem(t, err, problem.KindInvalid, tc.field)
		}
		// Nothing was written by any of them.
		var n int
		require.NoError(t, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM reward_grants`).Scan(&n))
		require.Zero(t, n)
		require.Zero(t, eventCount(t, db, reward.EventCreated, ""))
		require.NoError(t, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM ledger_entries`).Scan(&n))
		require.Zero(t, n)
	})
}

func TestPublishedChangeDoesNotAffectPinnedGrant(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		require.Equal(t, 1, b.publishFlow(t, tenantA, "welcome", `{"steps":[{"name":"pts","component":"grant_points","params":{"amount":10}}]}`))
		p := reward.CreateParams{TenantID: tenantA, UserID: "u1", SourceKind: "signup", SourceID: "u1", Flow: "welcome"}
		old := b.create(t, p)
		require.Equal(t, "welcome", old.FlowKey)
		require.Equal(t, 1, old.FlowVersion)

		require.Equal(t, 2, b.publishFlow(t, tenantA, "welcome", `{"steps":[{"name":"pts","component":"grant_points","params":{"amount":99}}]}`))
		g, err := b.svc.Execute(ctx, old.ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, g.State)
		require.EqualValues(t, 10, b.balance(t, tenantA, "u1", "points"), "the grant runs the version it was pinned to")

		p.SourceID = "u1-again"
		g, created, err := b.svc.Create(ctx, p)
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, 2, g.FlowVersion)
		require.EqualValues(t, 109, b.balance(t, tenantA, "u1", "points"))

		// Another tenant does not see tenant A's flow; a platform flow is visible to every tenant.
		_, _, err = b.svc.Create(ctx, reward.CreateParams{TenantID: tenantB, UserID: "u1", SourceKind: "signup",
			SourceID: "u1", Flow: "welcome"})
		requireProblem(t, err, problem.KindInvalid, "flow")
		b.publishFlow(t, "platform", "welcome", `{"steps":[{"name":"pts","component":"grant_points","params":{"amount":7}}]}`)
		g, _, err = b.svc.Create(ctx, reward.CreateParams{TenantID: tenantB, UserID: "u1", SourceKind: "signup",
			SourceID: "u1", Flow: "welcome"})
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, g.State)
		require.EqualValues(t, 7, b.balance(t, tenantB, "u1", "points"))
		b.verifyLedger(t)
	})
}

func expiry(raw string) *ledger.Expiry {
	var e ledger.Expiry
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		panic(err)
	}
	return &e
}
