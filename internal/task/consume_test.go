package task_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/task"
)

// TestConsumeEventsThroughTheBus: behaviour events published on EVENTS move progress through the
// task-progress consumer, once each, on two nodes at once; an event published again and a message
// that is not a behaviour event change nothing.
func TestConsumeEventsThroughTheBus(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		env := bustest.NewEnv(t, bustest.Embedded)
		bs := env.Open(t, bus.Options{})
		b := setup(t, db)
		b.publish(t, task.KindTask, "weekly-orders", ordersSpec)
		b.publish(t, task.KindTask, "daily-checkin", checkinSpec)
		second, err := task.New(db, b.opts)
		require.NoError(t, err)
		for _, svc := range []*task.Service{b.svc, second} {
			stop, err := svc.Consume(ctx, env.Open(t, bus.Options{}), db)
			require.NoError(t, err)
			t.Cleanup(stop)
		}
		const users = 20
		var msgs []bus.Message
		for i := range users {
			user := fmt.Sprintf("u-%02d", i)
			for _, e := range []bus.Behaviour{event(user, "checkin", "", start),
				event(user, "order.paid", `{"amount":6000}`, start), event(user, "order.paid", `{"amount":6000}`, start)} {
				m, err := bs.BehaviourMessage(e)
				require.NoError(t, err)
				msgs = append(msgs, m)
			}
		}
		require.NoError(t, bs.PublishBatch(ctx, msgs))
		// An order published again (a client's resend: the same event, so the same message id) and
		// a stranger.
		require.NoError(t, bs.Publish(ctx, msgs[1]))
		require.NoError(t, bs.Publish(ctx, bus.Message{Subject: bs.BehaviourSubject(shop, "checkin"), Data: []byte(`{"x":1}`)}))

		// The grants run right after each batch commits: wait for the points too.
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			for i := range users {
				user := fmt.Sprintf("u-%02d", i)
				page, err := b.svc.UserTasks(ctx, shop, user, "", 10)
				require.NoError(c, err)
				require.Len(c, page.Items, 2)
				for _, ut := range page.Items {
					if ut.Task == "weekly-orders" {
						require.EqualValues(c, 2, ut.Progress)
					}
				}
				accounts, err := b.ledger.Accounts(ctx, shop, user)
				require.NoError(c, err)
				require.Len(c, accounts, 1)
			}
		}, 30*time.Second, 50*time.Millisecond)
		for i := range users {
			require.EqualValues(t, 10, b.balance(t, fmt.Sprintf("u-%02d", i), "points"))
		}
	})
}

// TestConcurrentWriters: transactions applying events of the same users at once (real concurrency
// on PostgreSQL) lose no update and complete each stage once; the budget never oversells.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.publish(t, task.KindTask, "ten-shares", spec(`{'kind':'one_off','trigger':{'event_types':['share']},
			'metric':{'type':'count'},'stages':[{'target':10,'rewards':[{'type':'points','amount':10}]}],
			'limits':{'budget':{'completions':3}},'title':{'en':'Ten shares'}}`))
		const (
			users   = 4
			writers = 4
			each    = 5 // batches per writer, each with one event of every user
		)
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Go(func() {
				for n := range each {
					events := make([]bus.Behaviour, 0, users)
					for u := range users {
						events = append(events, event(fmt.Sprintf("u-%d", u), "share", "", start.Add(time.Duration(w*each+n)*time.Second)))
					}
					errs <- db.Tx(ctx, func(tx *sqldb.Tx) error { return b.svc.ApplyBatch(ctx, tx, events) })
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		completed := 0
		for u := range users {
			ut := b.row(t, fmt.Sprintf("u-%d", u), "ten-shares", task.PeriodOnce)
			if ut.State == task.StateRewarded {
				completed++
				require.EqualValues(t, 10, ut.Progress) // a completed task takes no more
				require.Len(t, ut.Grants, 1)
				require.EqualValues(t, 10, b.balance(t, ut.UserID, "points"))
				continue
			}
			require.Equal(t, task.StateClaimed, ut.State)
			require.Equal(t, task.ReasonBudget, ut.Reason)
			require.EqualValues(t, writers*each, ut.Progress) // refused: still counting, every event once
		}
		require.Equal(t, 3, completed)
		stats, err := b.svc.Stats(ctx, shop, "ten-shares")
		require.NoError(t, err)
		require.EqualValues(t, 3, stats.Budget.Completions)
		b.verifyLedger(t)
	})
}
