package task_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/reward"
	"github.com/perkhq/perk/internal/task"
)

// TestDailyCheckin: the first check-in of a day claims and completes the user task, and its grant
// (inline points: a flow that only writes to the database) puts 10 points in the ledger in
// ApplyBatch's transaction, which makes the user task rewarded in the same commit; the grant's
// events change nothing after. The same event again, or a second check-in that day, changes
// nothing; the next day is a new period.
func TestDailyCheckin(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		reg := prometheus.NewRegistry()
		b := setup(t, db, func(o *task.Options) { o.Registerer = reg })
		b.publish(t, task.KindTask, "daily-checkin", checkinSpec)
		first := event(alice, "checkin", "", start)
		b.apply(t, first)
		require.EqualValues(t, 10, b.balance(t, alice, "points"))

		ut := b.row(t, alice, "daily-checkin", "2026-11-16")
		require.Equal(t, task.StateRewarded, ut.State)
		require.NotNil(t, ut.CompletedAt)
		require.NotNil(t, ut.RewardedAt)
		require.EqualValues(t, 1, ut.Progress)
		require.Equal(t, 1, ut.Stage)
		require.Equal(t, []int{0}, ut.StagesDone)
		require.Equal(t, 1, ut.TaskVersion)
		require.NotNil(t, ut.ExpiresAt)
		require.Equal(t, time.Date(2026, 11, 17, 0, 0, 0, 0, shanghai).UTC(), *ut.ExpiresAt)
		require.Len(t, ut.Grants, 1)
		require.Equal(t, "succeeded", ut.Grants[0].State)
		require.EqualValues(t, 10, ut.Grants[0].Cost.Points)
		g, err := b.rewards.Get(context.Background(), shop, ut.Grants[0].GrantID)
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, g.State)

		b.drain(t) // grant.succeeded: nothing left to do
		ut = b.row(t, alice, "daily-checkin", "2026-11-16")
		require.Equal(t, task.StateRewarded, ut.State)
		require.NotNil(t, ut.RewardedAt)
		require.Equal(t, "succeeded", ut.Grants[0].State)
		for _, typ := range []string{task.EventClaimed, task.EventCompleted, task.EventRewarded} {
			es := b.events(t, typ, ut.ID)
			require.Len(t, es, 1, typ)
			require.Equal(t, alice, es[0].UserID)
			require.Equal(t, task.EventSourceKind, es[0].SourceKind)
		}

		// The same event again (a redelivery without a processed record), and another check-in the
		// same day: nothing.
		b.apply(t, first, event(alice, "checkin", "", start.Add(5*time.Hour)))
		b.drain(t)
		require.EqualValues(t, 10, b.balance(t, alice, "points"))
		require.Len(t, b.rows(t, alice), 1)

		// 16:00 UTC is already the 17th in Shanghai: a new period.
		b.apply(t, event(alice, "checkin", "", time.Date(2026, 11, 16, 16, 30, 0, 0, time.UTC)))
		require.EqualValues(t, 20, b.balance(t, alice, "points"))
		require.Equal(t, task.StateRewarded, b.row(t, alice, "daily-checkin", "2026-11-17").State)
		// Other users and other event types are untouched.
		require.Zero(t, b.balance(t, bob, "points"))
		b.apply(t, event(bob, "login", "", start))
		require.Empty(t, b.rows(t, bob))
		b.verifyLedger(t)

		require.Equal(t, 2.0, metricValue(t, reg, "perk_task_stage_completions_total", ""))
		require.Equal(t, 2.0, metricValue(t, reg, "perk_task_events_total", "applied"))
		require.Equal(t, 3.0, metricValue(t, reg, "perk_task_events_total", "ignored"))
		require.Equal(t, 2.0, metricValue(t, reg, "perk_task_transitions_total", "claimed"))
		require.Equal(t, 2.0, metricValue(t, reg, "perk_task_transitions_total", "completed"))
		require.Equal(t, 2.0, metricValue(t, reg, "perk_task_transitions_total", "rewarded"))
	})
}

// TestWeeklyOrdersWithFilter: only paid orders with data.amount >= 5000 count; the third one in the
// ISO week completes the task (100 growth); orders of the next week count afresh.
func TestWeeklyOrdersWithFilter(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		b.publish(t, task.KindTask, "weekly-orders", ordersSpec)
		b.apply(t,
			event(alice, "order.paid", `{"amount":6000}`, start),
			event(alice, "order.paid", `{"amount":4999}`, start.Add(time.Hour)),    // too small
			event(alice, "order.paid", `{"currency":"CNY"}`, start.Add(time.Hour)), // no amount
			event(alice, "order.paid", `not json`, start.Add(time.Hour)),
			event(alice, "order.paid", `{"amount":5000}`, start.Add(48*time.Hour)))
		ut := b.row(t, alice, "weekly-orders", "2026-W47")
		require.Equal(t, task.StateClaimed, ut.State)
		require.EqualValues(t, 2, ut.Progress)
		require.Zero(t, b.balance(t, alice, "growth"))

		// Sunday 23:30 in Shanghai is still week 47; Monday 00:30 is week 48.
		sunday := time.Date(2026, 11, 22, 23, 30, 0, 0, shanghai)
		b.apply(t, event(alice, "order.paid", `{"amount":9000}`, sunday),
			event(alice, "order.paid", `{"amount":9000}`, sunday.Add(time.Hour)))
		require.EqualValues(t, 100, b.balance(t, alice, "growth"))
		require.Equal(t, task.StateRewarded, b.row(t, alice, "weekly-orders", "2026-W47").State)
		next := b.row(t, alice, "weekly-orders", "2026-W48")
		require.Equal(t, task.StateClaimed, next.State)
		require.EqualValues(t, 1, next.Progress)
		b.drain(t)
		require.Equal(t, task.StateRewarded, b.row(t, alice, "weekly-orders", "2026-W47").State)
	})
}

// TestMonthlyStagedSum: a staged task on the month's sum of data.amount with two stages: each stage
// reached grants its points once, in one batch or across batches.
func TestMonthlyStagedSum(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		b.publish(t, task.KindTask, "monthly-spend", string(task.DemoSpecs()["monthly-spend"]))
		b.apply(t, event(alice, "order.paid", `{"amount":30000}`, start),
			event(alice, "order.paid", `{"amount":25000}`, start.Add(time.Hour)))
		ut := b.row(t, alice, "monthly-spend", "2026-11")
		require.Equal(t, task.StateClaimed, ut.State)
		require.EqualValues(t, 55000, ut.Progress)
		require.Equal(t, []int{0}, ut.StagesDone)
		require.EqualValues(t, 50, b.balance(t, alice, "points"))
		require.Len(t, b.events(t, task.EventProgressed, ut.ID), 1)

		b.apply(t, event(alice, "order.paid", `{"amount":45000}`, start.Add(2*time.Hour)))
		ut = b.row(t, alice, "monthly-spend", "2026-11")
		require.Equal(t, task.StateRewarded, ut.State)
		require.Equal(t, 2, ut.Stage)
		require.EqualValues(t, 200, b.balance(t, alice, "points"))
		b.drain(t)
		ut = b.row(t, alice, "monthly-spend", "2026-11")
		require.Equal(t, task.StateRewarded, ut.State)
		require.Len(t, ut.Grants, 2)

		// Both stages in one event; a negative or non-integer amount does not count.
		b.apply(t, event(bob, "order.paid", `{"amount":-5}`, start), event(bob, "order.paid", `{"amount":1.5}`, start),
			event(bob, "order.paid", `{"amount":120000}`, start))
		require.EqualValues(t, 200, b.balance(t, bob, "points"))
		require.Equal(t, task.StateRewarded, b.row(t, bob, "monthly-spend", "2026-11").State)
		b.verifyLedger(t)
	})
}

// TestDistinctMetric: distinct values of data.sku count once each; the values are kept (at most
// the target).
func TestDistinctMetric(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		b.publish(t, task.KindTask, "explorer", spec(`{'kind':'one_off','trigger':{'event_types':['product.viewed']},
			'metric':{'type':'distinct','field':'item.sku'},'stages':[{'target':3,'rewards':[{'type':'points','amount':7}]}],
			'title':{'en':'Look at 3 products'}}`))
		b.apply(t, event(alice, "product.viewed", `{"item":{"sku":"A"}}`, start),
			event(alice, "product.viewed", `{"item":{"sku":"A"}}`, start),
			event(alice, "product.viewed", `{"item":{"sku":42}}`, start),
			event(alice, "product.viewed", `{"sku":"B"}`, start))
		ut := b.row(t, alice, "explorer", task.PeriodOnce)
		require.EqualValues(t, 2, ut.Progress)
		require.Equal(t, []string{"A", "42"}, ut.Values)
		require.Nil(t, ut.ExpiresAt)
		b.apply(t, event(alice, "product.viewed", `{"item":{"sku":"C"}}`, start))
		ut = b.row(t, alice, "explorer", task.PeriodOnce)
		require.Equal(t, task.StateRewarded, ut.State)
		require.Equal(t, []string{"A", "42", "C"}, ut.Values)
		require.EqualValues(t, 7, b.balance(t, alice, "points"))
		b.apply(t, event(alice, "product.viewed", `{"item":{"sku":"D"}}`, start))
		require.EqualValues(t, 7, b.balance(t, alice, "points"))
	})
}

// TestApplyBatchDuplicates: an event repeated within a batch counts once; events of several users
// and tasks in one batch each move their own rows.
func TestApplyBatchDuplicates(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		b.publish(t, task.KindTask, "weekly-orders", ordersSpec)
		b.publish(t, task.KindTask, "monthly-spend", string(task.DemoSpecs()["monthly-spend"]))
		e := event(alice, "order.paid", `{"amount":6000}`, start)
		again := e
		again.Data = []byte(`{"amount":99999}`) // same (tenant, source, id): the same event
		b.apply(t, e, e, again, event(bob, "order.paid", `{"amount":6000}`, start))
		for _, user := range []string{alice, bob} {
			require.EqualValues(t, 1, b.row(t, user, "weekly-orders", "2026-W47").Progress)
			require.EqualValues(t, 6000, b.row(t, user, "monthly-spend", "2026-11").Progress)
		}
		require.Len(t, b.rows(t, alice), 2)
	})
}

// TestLateEvents: an event goes to the period of its time, even when it arrives later; a period
// whose user task expired takes nothing more.
func TestLateEvents(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		b.publish(t, task.KindTask, "weekly-orders", ordersSpec)
		b.publish(t, task.KindTask, "daily-checkin", checkinSpec)
		b.clock.Set(start.Add(8 * 24 * time.Hour)) // week 48
		b.apply(t, event(alice, "order.paid", `{"amount":6000}`, start),
			event(alice, "checkin", "", start.Add(-24*time.Hour)))
		require.EqualValues(t, 1, b.row(t, alice, "weekly-orders", "2026-W47").Progress)
		require.Equal(t, task.StateRewarded, b.row(t, alice, "daily-checkin", "2026-11-15").State)
		require.EqualValues(t, 10, b.balance(t, alice, "points"))

		n, err := b.svc.ExpireDue(context.Background(), 0)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Equal(t, task.StateExpired, b.row(t, alice, "weekly-orders", "2026-W47").State)
		b.apply(t, event(alice, "order.paid", `{"amount":6000}`, start.Add(time.Hour)))
		ut := b.row(t, alice, "weekly-orders", "2026-W47")
		require.Equal(t, task.StateExpired, ut.State)
		require.EqualValues(t, 1, ut.Progress)
	})
}

// TestVersionPinning: a user task keeps the version it started under for its period; a new
// version applies to user tasks started after it.
func TestVersionPinning(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		b.publish(t, task.KindTask, "weekly-orders", ordersSpec)
		b.apply(t, event(alice, "order.paid", `{"amount":6000}`, start))
		// v2: two orders of any amount, 500 growth.
		v2 := b.publish(t, task.KindTask, "weekly-orders", spec(`{'kind':'weekly','trigger':{'event_types':['order.paid']},
			'metric':{'type':'count'},'stages':[{'target':2,'rewards':[{'type':'growth','amount':500}]}],
			'title':{'en':'Two orders a week'}}`))
		require.Equal(t, 2, v2)
		b.apply(t, event(alice, "order.paid", `{"amount":100}`, start.Add(time.Hour)), // v1's filter refuses it
			event(alice, "order.paid", `{"amount":6000}`, start.Add(time.Hour)),
			event(bob, "order.paid", `{"amount":100}`, start.Add(time.Hour)),
			event(bob, "order.paid", `{"amount":100}`, start.Add(time.Hour)))
		ut := b.row(t, alice, "weekly-orders", "2026-W47")
		require.Equal(t, 1, ut.TaskVersion)
		require.Equal(t, task.StateClaimed, ut.State)
		require.EqualValues(t, 2, ut.Progress) // v1 needs 3
		bobs := b.row(t, bob, "weekly-orders", "2026-W47")
		require.Equal(t, 2, bobs.TaskVersion)
		require.Equal(t, task.StateRewarded, bobs.State)
		require.EqualValues(t, 500, b.balance(t, bob, "growth"))

		b.apply(t, event(alice, "order.paid", `{"amount":7000}`, start.Add(2*time.Hour)))
		require.Equal(t, task.StateRewarded, b.row(t, alice, "weekly-orders", "2026-W47").State)
		require.EqualValues(t, 100, b.balance(t, alice, "growth")) // v1's reward
		// Next week alice starts on v2.
		b.apply(t, event(alice, "order.paid", `{"amount":1}`, start.Add(7*24*time.Hour)))
		require.Equal(t, 2, b.row(t, alice, "weekly-orders", "2026-W48").TaskVersion)
	})
}

// TestGrantsPinFlows: a stage that names a flow grants through it.
func TestStageWithFlow(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		b.publish(t, reward.KindFlow, "welcome", `{"steps":[{"name":"points","component":"grant_points","params":{"amount":30}},
			{"name":"growth","component":"grant_growth","params":{"amount":3}}]}`)
		b.publish(t, task.KindTask, "signup", spec(`{'kind':'one_off','trigger':{'event_types':['signup']},
			'metric':{'type':'count'},'stages':[{'target':1,'flow':'welcome'}],'title':{'zh-CN':'注册'}}`))
		b.apply(t, event(alice, "signup", "", start))
		require.EqualValues(t, 30, b.balance(t, alice, "points"))
		require.EqualValues(t, 3, b.balance(t, alice, "growth"))
		ut := b.row(t, alice, "signup", task.PeriodOnce)
		require.Equal(t, task.Cost{Points: 30, Growth: 3}, ut.Grants[0].Cost)
	})
}

// metricValue reads a counter (with the given value of its only label, or none) from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label == "" || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label) {
				return m.GetCounter().GetValue()
			}
		}
	}
	require.Failf(t, "no metric", "%s{%s}", name, label)
	return 0
}
