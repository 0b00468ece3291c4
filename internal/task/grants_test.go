package task_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/reward"
	"github.com/perkhq/perk/internal/task"
)

// flakyFlow grants 5 points after a step that fails while the flaky component is down; a grant
// dies after attempts failed attempts.
func flakyFlow(attempts int) string {
	return fmt.Sprintf(`{"steps":[{"name":"check","component":"flaky"},
		{"name":"points","component":"grant_points","params":{"amount":5}}],"max_attempts":%d}`, attempts)
}

// TestGrantFailureReplay: a completed stage whose grant fails makes the user task failed; a replay
// that succeeds makes it rewarded, and the points land once. Grant events arriving again or out of
// order change nothing.
func TestGrantFailureReplay(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.publish(t, reward.KindFlow, "fragile", flakyFlow(1))
		b.publish(t, task.KindTask, "signup", spec(`{'kind':'one_off','trigger':{'event_types':['signup']},
			'metric':{'type':'count'},'stages':[{'target':1,'flow':'fragile'}],'title':{'en':'Sign up'}}`))
		b.flaky.set(true)
		b.apply(t, event(alice, "signup", "", start), event(bob, "signup", "", start))
		b.drain(t)
		ut := b.row(t, alice, "signup", task.PeriodOnce)
		require.Equal(t, task.StateFailed, ut.State)
		require.Equal(t, "dead", ut.Grants[0].State)
		require.Len(t, b.events(t, task.EventFailed, ut.ID), 1)
		require.Zero(t, b.balance(t, alice, "points"))
		replayed, err := b.svc.Replay(ctx, shop, ut.ID)
		require.NoError(t, err) // retried, and dead again
		require.Equal(t, task.StateFailed, replayed.State)
		b.drain(t)
		ut = b.row(t, alice, "signup", task.PeriodOnce)
		require.Equal(t, task.StateFailed, ut.State)
		require.Equal(t, "dead", ut.Grants[0].State)

		b.flaky.set(false)
		replayed, err = b.svc.Replay(ctx, shop, ut.ID)
		require.NoError(t, err)
		require.Equal(t, task.StateRewarded, replayed.State)
		require.Equal(t, "succeeded", replayed.Grants[0].State)
		require.EqualValues(t, 5, b.balance(t, alice, "points"))
		_, err = b.svc.Replay(ctx, shop, ut.ID)
		requireProblem(t, err, problem.KindConflict, "task-nothing-to-replay")
		_, err = b.svc.Replay(ctx, shop, "ut_nope")
		requireProblem(t, err, problem.KindNotFound, "user-task-not-found")

		// Every event the grants wrote, handed over again and in any order, changes nothing.
		b.drained = ""
		b.drain(t)
		require.Equal(t, task.StateRewarded, b.row(t, alice, "signup", task.PeriodOnce).State)
		require.Len(t, b.events(t, task.EventRewarded, ut.ID), 1)

		// Replaying every failed user task of the task.
		n, err := b.svc.ReplayFailed(ctx, shop, "signup")
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Equal(t, task.StateRewarded, b.row(t, bob, "signup", task.PeriodOnce).State)
		require.EqualValues(t, 5, b.balance(t, bob, "points"))
		b.verifyLedger(t)
	})
}

// TestGrantOutcomesThroughTheBus: with the real bus, the relay and the task-grants consumer, a
// completed user task becomes rewarded on its own, and a failed one once the reward sweeper's
// retry succeeds.
func TestGrantOutcomesThroughTheBus(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		bs := bustest.NewEnv(t, bustest.Embedded).Open(t, bus.Options{})
		b := setup(t, db, func(o *task.Options) { o.Events = bs.EnqueueEvent })
		b.rewards = b.rewardsOnBus(t, bs)
		var err error
		b.opts.Rewards = b.rewards
		b.svc, err = task.New(db, b.opts)
		require.NoError(t, err)
		relay := bus.NewRelay(db, bs, bus.RelayOptions{PollInterval: 20 * time.Millisecond})
		go func() { _ = relay.Run(ctx) }()
		stop, err := b.svc.ConsumeGrants(ctx, bs)
		require.NoError(t, err)
		t.Cleanup(stop)

		b.publish(t, reward.KindFlow, "fragile", flakyFlow(5))
		b.publish(t, task.KindTask, "daily-checkin", checkinSpec)
		b.publish(t, task.KindTask, "signup", spec(`{'kind':'one_off','trigger':{'event_types':['signup']},
			'metric':{'type':'count'},'stages':[{'target':1,'flow':'fragile'}],'title':{'en':'Sign up'}}`))
		b.flaky.set(true)
		b.apply(t, event(alice, "checkin", "", start), event(alice, "signup", "", start))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			page, err := b.svc.UserTasks(ctx, shop, alice, "", 10)
			require.NoError(c, err)
			got := map[string]task.State{}
			for _, ut := range page.Items {
				got[ut.Task] = ut.State
			}
			require.Equal(c, map[string]task.State{"daily-checkin": task.StateRewarded, "signup": task.StateFailed}, got)
		}, 20*time.Second, 20*time.Millisecond)

		b.flaky.set(false)
		b.clock.Advance(time.Hour) // the grant's retry is due
		_, err = b.rewards.Sweep(ctx, 0)
		require.NoError(t, err)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			page, err := b.svc.UserTasks(ctx, shop, alice, "", 10)
			require.NoError(c, err)
			for _, ut := range page.Items {
				require.Equal(c, task.StateRewarded, ut.State, ut.Task)
			}
		}, 20*time.Second, 20*time.Millisecond)
		require.EqualValues(t, 15, b.balance(t, alice, "points"))
	})
}

// rewardsOnBus builds a reward engine like the bundle's whose events go to the bus.
func (b *testBundle) rewardsOnBus(t *testing.T, bs *bus.Bus) *reward.Service {
	t.Helper()
	components := reward.NewRegistry()
	require.NoError(t, components.Register(b.flaky))
	svc, err := reward.New(b.db, reward.Options{Clock: b.clock, Ledger: b.ledger, Events: bs.EnqueueEvent,
		Flows: reward.CatalogFlows{Catalog: b.catalog, Snapshot: b.snap}, Components: components, Node: "bus",
		Lease: time.Minute, RetryBase: 10 * time.Second, MaxBackoff: time.Minute, TimeZone: zones,
		Logger: b.opts.Logger})
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	return svc
}

// TestGrantsInTheBatchTransaction: a batch whose stage grants only write to the database
// delivers them in its own transaction — the user task is rewarded when ApplyBatch's
// transaction commits — while a grant whose step fails in that delivery falls back to the
// ordinary path (pending, run after the commit, failed and retried): the batch's events are
// applied all the same. A staged user task whose earlier stage grant is not delivered yet stays
// completed until it is.
func TestGrantsInTheBatchTransaction(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.publish(t, reward.KindFlow, "fragile", flakyFlow(5))
		b.publish(t, task.KindTask, "daily-checkin", checkinSpec)
		b.publish(t, task.KindTask, "signup", spec(`{'kind':'one_off','trigger':{'event_types':['signup']},
			'metric':{'type':'count'},'stages':[{'target':1,'flow':'fragile'}],'title':{'en':'Sign up'}}`))
		b.publish(t, task.KindTask, "two-shares", spec(`{'kind':'staged','trigger':{'event_types':['share']},
			'metric':{'type':'count'},'stages':[{'target':1,'flow':'fragile'},{'target':2,'rewards':[{'type':'points','amount':3}]}],
			'title':{'en':'Share twice'}}`))
		b.flaky.set(true)
		b.apply(t, event(alice, "checkin", "", start), event(bob, "signup", "", start), event(carol, "share", "", start))

		// Alice: delivered in the batch's transaction.
		ut := b.row(t, alice, "daily-checkin", "2026-11-16")
		require.Equal(t, task.StateRewarded, ut.State)
		require.Equal(t, "succeeded", ut.Grants[0].State)
		require.EqualValues(t, 10, b.balance(t, alice, "points"))
		completed, rewarded := b.events(t, task.EventCompleted, ut.ID), b.events(t, task.EventRewarded, ut.ID)
		require.Len(t, completed, 1)
		require.Len(t, rewarded, 1)
		require.Contains(t, string(rewarded[0].Data), ut.Grants[0].GrantID)

		// Bob: the fragile grant fell back; it ran after the commit and failed.
		signup := b.row(t, bob, "signup", task.PeriodOnce)
		require.Equal(t, task.StateCompleted, signup.State)
		require.Equal(t, "pending", signup.Grants[0].State)
		g, err := b.rewards.Get(ctx, shop, signup.Grants[0].GrantID)
		require.NoError(t, err)
		require.Equal(t, reward.StateFailed, g.State)

		// Carol: stage 1 (fragile) is owed; stage 2 is delivered at once, but the task waits for
		// stage 1.
		b.apply(t, event(carol, "share", "", start.Add(time.Minute)))
		shares := b.row(t, carol, "two-shares", task.PeriodOnce)
		require.Equal(t, task.StateCompleted, shares.State)
		require.Equal(t, []string{"pending", "succeeded"}, []string{shares.Grants[0].State, shares.Grants[1].State})
		require.EqualValues(t, 3, b.balance(t, carol, "points"))

		b.drain(t)
		require.Equal(t, task.StateRewarded, b.row(t, alice, "daily-checkin", "2026-11-16").State)
		require.Len(t, b.events(t, task.EventRewarded, ut.ID), 1, "the grant events change nothing")
		require.Equal(t, task.StateFailed, b.row(t, bob, "signup", task.PeriodOnce).State)
		require.Equal(t, task.StateFailed, b.row(t, carol, "two-shares", task.PeriodOnce).State)

		b.flaky.set(false)
		b.clock.Advance(time.Hour)
		_, err = b.rewards.Sweep(ctx, 0)
		require.NoError(t, err)
		b.drain(t)
		require.Equal(t, task.StateRewarded, b.row(t, bob, "signup", task.PeriodOnce).State)
		require.Equal(t, task.StateRewarded, b.row(t, carol, "two-shares", task.PeriodOnce).State)
		require.EqualValues(t, 5, b.balance(t, bob, "points"))
		require.EqualValues(t, 8, b.balance(t, carol, "points"))
		b.verifyLedger(t)
	})
}

const carol = "u-carol"
