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
	"github.com/perkhq/perk/internal/task"
)

// TestTerminate: terminating a task archives it and closes the claimed user tasks with the reason;
// completed ones keep their owed rewards and still become rewarded.
func TestTerminate(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.publish(t, task.KindTask, "weekly-orders", ordersSpec)
		order := `{"amount":6000}`
		b.apply(t, event(alice, "order.paid", order, start),
			event(bob, "order.paid", order, start), event(bob, "order.paid", order, start), event(bob, "order.paid", order, start))
		n, err := b.svc.Terminate(ctx, task.TerminateParams{TenantID: shop, Task: "weekly-orders", Reason: "fraud wave", Actor: actor})
		require.NoError(t, err)
		require.Equal(t, 1, n)
		ut := b.row(t, alice, "weekly-orders", "2026-W47")
		require.Equal(t, task.StateTerminated, ut.State)
		require.Equal(t, "fraud wave", ut.Reason)
		es := b.events(t, task.EventTerminated, ut.ID)
		require.Len(t, es, 1)
		var data struct {
			From   task.State `json:"from"`
			Reason string     `json:"reason"`
		}
		require.NoError(t, json.Unmarshal(es[0].Data, &data))
		require.Equal(t, task.StateClaimed, data.From)
		require.Equal(t, "fraud wave", data.Reason)

		r, err := b.catalog.Get(ctx, catalog.GetParams{TenantID: shop, Kind: task.KindTask, Key: "weekly-orders"})
		require.NoError(t, err)
		require.Equal(t, catalog.StateArchived, r.State)
		require.NoError(t, b.snap.Apply(ctx))
		b.apply(t, event(alice, "order.paid", order, start.Add(time.Hour)))
		require.EqualValues(t, 1, b.row(t, alice, "weekly-orders", "2026-W47").Progress)

		b.drain(t)
		require.Equal(t, task.StateRewarded, b.row(t, bob, "weekly-orders", "2026-W47").State)
		require.EqualValues(t, 100, b.balance(t, bob, "growth"))

		n, err = b.svc.Terminate(ctx, task.TerminateParams{TenantID: shop, Task: "weekly-orders", Actor: actor})
		require.NoError(t, err)
		require.Zero(t, n)
		_, err = b.svc.Terminate(ctx, task.TerminateParams{TenantID: shop, Task: "nope", Actor: actor})
		requireProblem(t, err, problem.KindNotFound, "task-not-found")
		stats, err := b.svc.Stats(ctx, shop, "weekly-orders")
		require.NoError(t, err)
		require.EqualValues(t, 1, stats.Terminated)
		require.EqualValues(t, 1, stats.Rewarded)
		require.EqualValues(t, 2, stats.Claimed)
	})
}

// TestExpirySweep: claimed user tasks whose period ended expire, a batch at a time; completed ones
// and those of running periods stay.
func TestExpirySweep(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.publish(t, task.KindTask, "weekly-orders", ordersSpec)
		order := `{"amount":6000}`
		for _, u := range []string{"u-1", "u-2", "u-3"} {
			b.apply(t, event(u, "order.paid", order, start))
		}
		b.apply(t, event(bob, "order.paid", order, start), event(bob, "order.paid", order, start),
			event(bob, "order.paid", order, start))
		n, err := b.svc.ExpireDue(ctx, 0)
		require.NoError(t, err)
		require.Zero(t, n)

		// Sunday 23:59 in Shanghai is still week 47; a minute later it is over.
		b.clock.Set(time.Date(2026, 11, 22, 23, 59, 0, 0, shanghai))
		n, err = b.svc.ExpireDue(ctx, 0)
		require.NoError(t, err)
		require.Zero(t, n)
		b.clock.Set(time.Date(2026, 11, 23, 0, 0, 0, 0, shanghai))
		b.apply(t, event(alice, "order.paid", order, b.clock.Now())) // week 48: not due
		n, err = b.svc.ExpireDue(ctx, 2)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		n, err = b.svc.ExpireDue(ctx, 2)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		for _, u := range []string{"u-1", "u-2", "u-3"} {
			ut := b.row(t, u, "weekly-orders", "2026-W47")
			require.Equal(t, task.StateExpired, ut.State)
			require.Len(t, b.events(t, task.EventExpired, ut.ID), 1)
		}
		require.Equal(t, task.StateRewarded, b.row(t, bob, "weekly-orders", "2026-W47").State)
		require.Equal(t, task.StateClaimed, b.row(t, alice, "weekly-orders", "2026-W48").State)
	})
}

// TestRunSweeps: Run expires what is due on its own, until its context ends.
func TestRunSweeps(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, func(o *task.Options) { o.SweepInterval = 10 * time.Millisecond })
		b.publish(t, task.KindTask, "weekly-orders", ordersSpec)
		b.apply(t, event(alice, "order.paid", `{"amount":6000}`, start))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- b.svc.Run(ctx) }()
		b.clock.Advance(7 * 24 * time.Hour)
		require.Eventually(t, func() bool {
			page, err := b.svc.UserTasks(context.Background(), shop, alice, "", 1)
			return err == nil && len(page.Items) == 1 && page.Items[0].State == task.StateExpired
		}, 10*time.Second, 10*time.Millisecond)
		cancel()
		require.NoError(t, <-done)
	})
}
