package task_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/reward"
	"github.com/perkhq/perk/internal/task"
)

// TestManualClaim: a manual task counts only after the claim (events before it, even arriving
// later, do not); a claim is refused outside the active window; claiming twice returns the same
// user task.
func TestManualClaim(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.publish(t, task.KindTask, "share", spec(`{'kind':'weekly','trigger':{'event_types':['share']},
			'metric':{'type':'count'},'stages':[{'target':2,'rewards':[{'type':'points','amount':20}]}],
			'claim':{'mode':'manual'},'active':{'from':'2026-11-10T00:00:00Z','until':'2026-11-25T00:00:00Z'},
			'title':{'en':'Share twice'}}`))
		b.apply(t, event(alice, "share", "", start))
		require.Empty(t, b.rows(t, alice))

		b.clock.Set(start.Add(time.Hour))
		ut, err := b.svc.Claim(ctx, task.ClaimParams{TenantID: shop, UserID: alice, Task: "share"})
		require.NoError(t, err)
		require.Equal(t, task.StateClaimed, ut.State)
		require.Equal(t, "2026-W47", ut.PeriodKey)
		require.Equal(t, start.Add(time.Hour), ut.ClaimedAt)
		again, err := b.svc.Claim(ctx, task.ClaimParams{TenantID: shop, UserID: alice, Task: "share"})
		require.NoError(t, err)
		require.Equal(t, ut.ID, again.ID)
		require.Len(t, b.events(t, task.EventClaimed, ut.ID), 1)

		b.apply(t, event(alice, "share", "", start.Add(30*time.Minute)), // before the claim
			event(alice, "share", "", start.Add(2*time.Hour)))
		require.EqualValues(t, 1, b.row(t, alice, "share", "2026-W47").Progress)
		b.apply(t, event(alice, "share", "", start.Add(3*time.Hour)))
		require.EqualValues(t, 20, b.balance(t, alice, "points"))
		_, err = b.svc.Claim(ctx, task.ClaimParams{TenantID: shop, UserID: alice, Task: "share"})
		requireProblem(t, err, problem.KindConflict, "task-limit-reached")

		// Events after the active window do not count, and claims are refused.
		b.clock.Set(time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC))
		_, err = b.svc.Claim(ctx, task.ClaimParams{TenantID: shop, UserID: bob, Task: "share"})
		requireProblem(t, err, problem.KindConflict, "task-not-active")
		// Bad input: unknown task, bad user.
		_, err = b.svc.Claim(ctx, task.ClaimParams{TenantID: shop, UserID: bob, Task: "nope"})
		requireProblem(t, err, problem.KindNotFound, "task-not-found")
		_, err = b.svc.Claim(ctx, task.ClaimParams{TenantID: shop, UserID: "bad user", Task: "share"})
		requireProblem(t, err, problem.KindInvalid, "user_id")
		_, err = b.svc.Claim(ctx, task.ClaimParams{TenantID: other, UserID: bob, Task: "share"})
		requireProblem(t, err, problem.KindNotFound, "task-not-found")
		require.Empty(t, b.rows(t, bob))
	})
}

// TestAudience: an audience task is assigned to the users it matches at their first matching
// event; others get nothing, cannot claim it and do not see it. Filters see the user too.
func TestAudience(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.publish(t, task.KindTask, "vip-orders", `{"kind":"monthly","trigger":{"event_types":["order.paid"],
			"filter":"user.tier == \"gold\" || event.data.amount > 100000"},
			"metric":{"type":"count"},"stages":[{"target":1,"rewards":[{"type":"points","amount":5}]}],
			"claim":{"mode":"audience","audience":"user.level >= 3"},"title":{"en":"VIP orders"}}`)
		b.setUser(alice, map[string]any{"level": 3, "tier": "gold"})
		b.setUser(bob, map[string]any{"level": 1, "tier": "gold"})
		b.apply(t, event(alice, "order.paid", `{"amount":10}`, start), event(bob, "order.paid", `{"amount":10}`, start))
		require.Equal(t, task.StateRewarded, b.row(t, alice, "vip-orders", "2026-11").State)
		require.Empty(t, b.rows(t, bob))

		_, err := b.svc.Claim(ctx, task.ClaimParams{TenantID: shop, UserID: bob, Task: "vip-orders"})
		requireProblem(t, err, problem.KindForbidden, "task-audience-mismatch")
		views, err := b.svc.List(ctx, task.ListParams{TenantID: shop, UserID: bob})
		require.NoError(t, err)
		require.Empty(t, views)

		// carol matches the audience but neither the tier nor the amount of the filter, then the amount.
		b.setUser("u-carol", map[string]any{"level": 5, "tier": "silver"})
		views, err = b.svc.List(ctx, task.ListParams{TenantID: shop, UserID: "u-carol"})
		require.NoError(t, err)
		require.Len(t, views, 1)
		require.Equal(t, task.StatusAvailable, views[0].Status)
		b.apply(t, event("u-carol", "order.paid", `{"amount":10}`, start))
		require.Empty(t, b.rows(t, "u-carol"))
		b.apply(t, event("u-carol", "order.paid", `{"amount":200000}`, start))
		require.EqualValues(t, 5, b.balance(t, "u-carol", "points"))
	})
}

// TestLimitsAndBudget: per_period allows several completions a period (rounds); a budget of
// completions or of points refuses completions past it, leaving the user task claimed with the
// reason, announced once; the budget never oversells.
func TestLimitsAndBudget(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.publish(t, task.KindTask, "twice-a-day", spec(`{'kind':'daily','trigger':{'event_types':['share']},
			'metric':{'type':'count'},'stages':[{'target':1,'rewards':[{'type':'points','amount':3}]}],
			'limits':{'per_period':2},'title':{'en':'Share'}}`))
		b.apply(t, event(alice, "share", "", start), event(alice, "share", "", start), // the same event
			event(alice, "share", "", start), event(alice, "share", "", start), event(alice, "share", "", start))
		require.EqualValues(t, 6, b.balance(t, alice, "points"))
		second := b.row(t, alice, "twice-a-day", "2026-11-16#2")
		require.Equal(t, 2, second.Round)
		require.Equal(t, "2026-11-16", second.Period)

		b.publish(t, task.KindTask, "first-two", spec(`{'kind':'one_off','trigger':{'event_types':['signup']},
			'metric':{'type':'count'},'stages':[{'target':1,'rewards':[{'type':'points','amount':10}]}],
			'limits':{'budget':{'completions':2}},'title':{'en':'First two'}}`))
		b.publish(t, task.KindTask, "points-25", spec(`{'kind':'one_off','trigger':{'event_types':['signup']},
			'metric':{'type':'count'},'stages':[{'target':1,'rewards':[{'type':'growth','amount':1},{'type':'points','amount':10}]}],
			'limits':{'budget':{'cost_points':25}},'title':{'en':'25 points'}}`))
		users := []string{"u-1", "u-2", "u-3"}
		for _, u := range users {
			b.apply(t, event(u, "signup", "", start))
		}
		for i, u := range users {
			for _, key := range []string{"first-two", "points-25"} {
				ut := b.row(t, u, key, task.PeriodOnce)
				if i < 2 {
					require.Equal(t, task.StateRewarded, ut.State, "%s %s", u, key)
					continue
				}
				require.Equal(t, task.StateClaimed, ut.State, "%s %s", u, key)
				require.Equal(t, task.ReasonBudget, ut.Reason)
				require.EqualValues(t, 1, ut.Progress)
				require.Empty(t, ut.Grants)
			}
		}
		require.EqualValues(t, 0, b.balance(t, "u-3", "points"))
		// Another event changes nothing and announces nothing new.
		b.apply(t, event("u-3", "signup", "", start.Add(time.Minute)))
		refused := b.row(t, "u-3", "first-two", task.PeriodOnce)
		require.Len(t, b.events(t, task.EventRefused, refused.ID), 1)
		require.Empty(t, b.row(t, "u-3", "first-two", task.PeriodOnce).Grants)

		stats, err := b.svc.Stats(ctx, shop, "first-two")
		require.NoError(t, err)
		require.Equal(t, &task.BudgetUse{Completions: 2, CostPoints: 20}, stats.Budget)
		stats, err = b.svc.Stats(ctx, shop, "points-25")
		require.NoError(t, err)
		require.Equal(t, &task.BudgetUse{Completions: 2, CostPoints: 20}, stats.Budget)
		require.EqualValues(t, 3, stats.Claimed)
		require.EqualValues(t, 1, stats.InProgress)
	})
}

// TestKillSwitch: a kill switch on a task stops its progress and its claims at once.
func TestKillSwitch(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		b.publish(t, task.KindTask, "daily-checkin", checkinSpec)
		b.publish(t, catalog.KindSwitch, "stop-checkin", `{"target":"task:daily-checkin","off":true}`)
		b.apply(t, event(alice, "checkin", "", start))
		require.Empty(t, b.rows(t, alice))
		_, err := b.svc.Claim(context.Background(), task.ClaimParams{TenantID: shop, UserID: alice, Task: "daily-checkin"})
		requireProblem(t, err, problem.KindConflict, "task-disabled")
		b.publish(t, catalog.KindSwitch, "stop-checkin", `{"target":"task:daily-checkin","off":false}`)
		b.apply(t, event(alice, "checkin", "", start))
		require.EqualValues(t, 10, b.balance(t, alice, "points"))
	})
}

// TestCompletionReceipt: a receipt completes the task synchronously and answers with the grant it
// ran; the same business id and payload replays; another payload is a conflict; refusals change
// nothing.
func TestCompletionReceipt(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.publish(t, task.KindTask, "daily-checkin", checkinSpec)
		receipt := task.CompleteParams{TenantID: shop, UserID: alice, Task: "daily-checkin", BusinessID: "ck-1",
			Payload: json.RawMessage(`{"channel":"app","n":1}`)}
		c, err := b.svc.Complete(ctx, receipt)
		require.NoError(t, err)
		require.False(t, c.Replayed)
		require.Equal(t, task.StateRewarded, c.UserTask.State)
		require.Len(t, c.Grants, 1)
		require.Equal(t, reward.StateSucceeded, c.Grants[0].State)
		require.Equal(t, c.UserTask.ID, c.Grants[0].SourceID)
		require.Equal(t, "succeeded", c.UserTask.Grants[0].State)
		require.EqualValues(t, 10, b.balance(t, alice, "points"))

		// The same receipt (members in another order): a replay.
		receipt.Payload = json.RawMessage(`{ "n": 1, "channel": "app" }`)
		again, err := b.svc.Complete(ctx, receipt)
		require.NoError(t, err)
		require.True(t, again.Replayed)
		require.Equal(t, c.UserTask.ID, again.UserTask.ID)
		require.Empty(t, again.Grants)
		// The same business id with another payload.
		receipt.Payload = json.RawMessage(`{"channel":"web"}`)
		_, err = b.svc.Complete(ctx, receipt)
		requireProblem(t, err, problem.KindConflict, "idempotency-mismatch")
		// Another business id the same day: done already.
		_, err = b.svc.Complete(ctx, task.CompleteParams{TenantID: shop, UserID: alice, Task: "daily-checkin", BusinessID: "ck-2"})
		requireProblem(t, err, problem.KindConflict, "task-limit-reached")
		// ... and since it changed nothing, that id is still free: the next day it counts.
		b.clock.Advance(24 * time.Hour)
		c2, err := b.svc.Complete(ctx, task.CompleteParams{TenantID: shop, UserID: alice, Task: "daily-checkin", BusinessID: "ck-2"})
		require.NoError(t, err)
		require.Equal(t, "2026-11-17", c2.UserTask.PeriodKey)
		require.EqualValues(t, 20, b.balance(t, alice, "points"))

		// A receipt counts whatever the trigger's filter says; a sum metric reads the payload.
		b.publish(t, task.KindTask, "weekly-orders", ordersSpec)
		b.publish(t, task.KindTask, "monthly-spend", string(task.DemoSpecs()["monthly-spend"]))
		c3, err := b.svc.Complete(ctx, task.CompleteParams{TenantID: shop, UserID: bob, Task: "weekly-orders",
			BusinessID: "o-1", Payload: json.RawMessage(`{"amount":10}`)})
		require.NoError(t, err)
		require.EqualValues(t, 1, c3.UserTask.Progress)
		require.Empty(t, c3.Grants)
		c4, err := b.svc.Complete(ctx, task.CompleteParams{TenantID: shop, UserID: bob, Task: "monthly-spend",
			BusinessID: "o-1", Payload: json.RawMessage(`{"amount":60000}`)})
		require.NoError(t, err)
		require.Len(t, c4.Grants, 1)
		require.Equal(t, []int{0}, c4.UserTask.StagesDone)
		require.EqualValues(t, 50, b.balance(t, bob, "points"))

		// Bad input and refusals record nothing.
		for _, c := range []struct {
			p    task.CompleteParams
			kind problem.Kind
			code string
		}{
			{task.CompleteParams{TenantID: shop, UserID: bob, Task: "monthly-spend", BusinessID: "o-2", Payload: json.RawMessage(`{"total":1}`)}, problem.KindInvalid, "data.amount"},
			{task.CompleteParams{TenantID: shop, UserID: bob, Task: "monthly-spend", BusinessID: "o 3"}, problem.KindInvalid, "business_id"},
			{task.CompleteParams{TenantID: shop, UserID: bob, Task: "monthly-spend", BusinessID: "o-4", Payload: json.RawMessage(`[1]`)}, problem.KindInvalid, "payload"},
			{task.CompleteParams{TenantID: shop, UserID: bob, Task: "nope", BusinessID: "o-5"}, problem.KindNotFound, "task-not-found"},
		} {
			_, err := b.svc.Complete(ctx, c.p)
			requireProblem(t, err, c.kind, c.code)
		}
		require.EqualValues(t, 60000, b.row(t, bob, "monthly-spend", "2026-11").Progress)
		b.publish(t, task.KindTask, "share", spec(`{'kind':'weekly','trigger':{'event_types':['share']},
			'metric':{'type':'count'},'stages':[{'target':1,'rewards':[{'type':'points','amount':1}]}],
			'claim':{'mode':'manual'},'title':{'en':'Share'}}`))
		_, err = b.svc.Complete(ctx, task.CompleteParams{TenantID: shop, UserID: bob, Task: "share", BusinessID: "s-1"})
		requireProblem(t, err, problem.KindConflict, "task-not-claimed")
		_, err = b.svc.Claim(ctx, task.ClaimParams{TenantID: shop, UserID: bob, Task: "share"})
		require.NoError(t, err)
		c5, err := b.svc.Complete(ctx, task.CompleteParams{TenantID: shop, UserID: bob, Task: "share", BusinessID: "s-1"})
		require.NoError(t, err)
		require.Equal(t, task.StateRewarded, c5.UserTask.State)
		b.verifyLedger(t)
	})
}
