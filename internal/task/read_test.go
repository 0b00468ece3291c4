package task_test

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/task"
)

// TestListAndGet: the C-end views — my tasks by filter with progress, targets, reward previews and
// time left; one task's detail with its current user task and history.
func TestListAndGet(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		for key, s := range task.DemoSpecs() {
			b.publish(t, task.KindTask, key, string(s))
		}
		b.publish(t, task.KindTask, "hidden", spec(`{'kind':'one_off','trigger':{'event_types':['x']},'metric':{'type':'count'},
			'stages':[{'target':1,'rewards':[{'type':'points','amount':1}]}],'title':{'en':'Later'},
			'visible':{'from':'2026-12-01T00:00:00Z'}}`))
		b.publish(t, task.KindTask, "soon", spec(`{'kind':'window','trigger':{'event_types':['x']},'metric':{'type':'count'},
			'stages':[{'target':1,'rewards':[{'type':'points','amount':1}]}],'title':{'en':'Soon'},'order':9,
			'active':{'from':'2026-11-20T00:00:00Z','until':'2026-11-30T00:00:00Z'}}`))
		b.checkin(t, alice, 15)
		b.clock.Set(start)
		b.apply(t, event(alice, "checkin", "", start), event(alice, "order.paid", `{"amount":60000}`, start))
		b.drain(t)

		list := func(filter string) map[string]task.TaskView {
			views, err := b.svc.List(ctx, task.ListParams{TenantID: shop, UserID: alice, Filter: filter, Lang: "zh-CN"})
			require.NoError(t, err)
			out := map[string]task.TaskView{}
			for _, v := range views {
				out[v.Task] = v
			}
			return out
		}
		all := list("")
		require.Len(t, all, 4) // "hidden" is not visible yet
		checkin := all["daily-checkin"]
		require.Equal(t, "每日签到", checkin.Title)
		require.Equal(t, string(task.StateRewarded), checkin.Status)
		require.Equal(t, "2026-11-16", checkin.Period)
		require.Equal(t, 2, checkin.Streak.Current)
		require.Equal(t, int64(14*3600), checkin.TimeLeft) // until midnight in Shanghai
		spend := all["monthly-spend"]
		require.Equal(t, string(task.StateClaimed), spend.Status)
		require.EqualValues(t, 60000, spend.Progress)
		require.EqualValues(t, 100000, spend.Target)
		require.Equal(t, 1, spend.Stage)
		require.True(t, spend.Stages[0].Done)
		require.EqualValues(t, 150, spend.Stages[1].Rewards[0].Amount)
		orders := all["weekly-orders"] // the order counts there too
		require.Equal(t, string(task.StateClaimed), orders.Status)
		require.EqualValues(t, 1, orders.Progress)
		require.EqualValues(t, 3, orders.Target)
		require.Equal(t, task.StatusUpcoming, all["soon"].Status)
		require.False(t, all["soon"].Claimable)

		require.Empty(t, list(task.FilterAvailable))
		require.Equal(t, []string{"monthly-spend", "weekly-orders"}, keys(list(task.FilterClaimed)))
		require.Equal(t, []string{"daily-checkin"}, keys(list(task.FilterDone)))
		fresh, err := b.svc.List(ctx, task.ListParams{TenantID: shop, UserID: bob, Filter: task.FilterAvailable})
		require.NoError(t, err)
		require.Len(t, fresh, 3)
		require.Equal(t, "Daily check-in", fresh[0].Title) // by order, English by default
		require.True(t, fresh[0].Claimable)
		require.Equal(t, 2, fresh[0].Streak.MakeupLeft)
		_, err = b.svc.List(ctx, task.ListParams{TenantID: shop, UserID: alice, Filter: "mine"})
		requireProblem(t, err, problem.KindInvalid, "filter")

		d, err := b.svc.Get(ctx, shop, alice, "daily-checkin")
		require.NoError(t, err)
		require.NotNil(t, d.Current)
		require.Equal(t, "2026-11-16", d.Current.PeriodKey)
		require.Len(t, d.Current.Grants, 1)
		require.Len(t, d.History, 1)
		require.Equal(t, "2026-11-15", d.History[0].PeriodKey)
		_, err = b.svc.Get(ctx, shop, alice, "hidden-nope")
		requireProblem(t, err, problem.KindNotFound, "task-not-found")
	})
}

func keys(m map[string]task.TaskView) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestUserTasksPages: a merchant pages through one user's tasks, newest first.
func TestUserTasksPages(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.publish(t, task.KindTask, "daily-checkin", checkinSpec)
		for n := 10; n <= 16; n++ {
			b.checkin(t, alice, n)
		}
		var got []string
		cursor := ""
		for {
			page, err := b.svc.UserTasks(ctx, shop, alice, cursor, 3)
			require.NoError(t, err)
			for _, ut := range page.Items {
				got = append(got, ut.PeriodKey)
			}
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
		require.Equal(t, []string{"2026-11-16", "2026-11-15", "2026-11-14", "2026-11-13", "2026-11-12", "2026-11-11", "2026-11-10"}, got)
		_, err := b.svc.UserTasks(ctx, shop, alice, "garbage", 3)
		requireProblem(t, err, problem.KindInvalid, "cursor")
		_, err = b.svc.UserTasks(ctx, shop, alice, "", 500)
		requireProblem(t, err, problem.KindInvalid, "limit")
		page, err := b.svc.UserTasks(ctx, other, alice, "", 0)
		require.NoError(t, err)
		require.Empty(t, page.Items)

		stats, err := b.svc.Stats(ctx, shop, "daily-checkin")
		require.NoError(t, err)
		require.EqualValues(t, 7, stats.Claimed)
		require.EqualValues(t, 7, stats.Completed)
		require.Zero(t, stats.Owed["points"]) // delivered in the batch's transaction
		b.drain(t)
		stats, err = b.svc.Stats(ctx, shop, "daily-checkin")
		require.NoError(t, err)
		require.EqualValues(t, 7, stats.Rewarded)
		require.EqualValues(t, 70, stats.RewardCost["points"])
		require.Nil(t, stats.Budget)
	})
}
