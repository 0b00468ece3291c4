package task_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/task"
)

// day is 10:00 in Shanghai on day n of November 2026.
func day(n int) time.Time { return time.Date(2026, 11, n, 10, 0, 0, 0, shanghai) }

// checkin has alice check in on day n (the clock moves there too).
func (b *testBundle) checkin(t *testing.T, user string, n int) {
	t.Helper()
	b.clock.Set(day(n))
	b.apply(t, event(user, "checkin", "", day(n)))
}

func (b *testBundle) streak(t *testing.T, user, key string) task.StreakView {
	t.Helper()
	views, err := b.svc.List(context.Background(), task.ListParams{TenantID: shop, UserID: user})
	require.NoError(t, err)
	for _, v := range views {
		if v.Task == key {
			require.NotNil(t, v.Streak)
			return *v.Streak
		}
	}
	require.Failf(t, "task not listed", "%s", key)
	return task.StreakView{}
}

// TestStreakBonusFreezeAndMakeUp runs the demo check-in (10 points a day, 50 more every 7 days in a
// row, one freeze and two make-up cards a month) through a month of a user's check-ins.
func TestStreakBonusFreezeAndMakeUp(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.publish(t, task.KindTask, "daily-checkin", string(task.DemoSpecs()["daily-checkin"]))
		for n := 16; n <= 21; n++ {
			b.checkin(t, alice, n)
		}
		require.EqualValues(t, 60, b.balance(t, alice, "points"))
		require.Equal(t, 6, b.streak(t, alice, "daily-checkin").Current)

		// Day 7: the day's 10 and the streak's 50, once, however often the day's check-in comes.
		b.checkin(t, alice, 22)
		b.checkin(t, alice, 22)
		require.EqualValues(t, 120, b.balance(t, alice, "points"))
		seventh := b.row(t, alice, "daily-checkin", "2026-11-22")
		require.Len(t, seventh.Grants, 2)
		require.Equal(t, "streak", seventh.Grants[1].Kind)
		require.Equal(t, 7, seventh.Grants[1].Seq)
		require.EqualValues(t, 50, seventh.Grants[1].Cost.Points)
		b.drain(t)
		require.Equal(t, task.StateRewarded, b.row(t, alice, "daily-checkin", "2026-11-22").State)

		// The 23rd is missed: the month's freeze bridges it (the streak goes on, the frozen day does
		// not lengthen it).
		b.checkin(t, alice, 24)
		v := b.streak(t, alice, "daily-checkin")
		require.Equal(t, 8, v.Current)
		require.Equal(t, "2026-11-24", v.LastDay)
		require.Equal(t, 0, v.FreezeLeft)
		// The 25th is missed too, with no freeze left: the streak starts again.
		b.checkin(t, alice, 26)
		require.Equal(t, 1, b.streak(t, alice, "daily-checkin").Current)
		require.Equal(t, 8, b.streak(t, alice, "daily-checkin").Longest)
		require.EqualValues(t, 140, b.balance(t, alice, "points"))

		// A make-up card fills the 25th: the two runs join (16th–26th, 10 days).
		v, err := b.svc.MakeUp(ctx, task.MakeUpParams{TenantID: shop, UserID: alice, Task: "daily-checkin", Day: "2026-11-25"})
		require.NoError(t, err)
		require.Equal(t, 10, v.Current)
		require.Equal(t, 1, v.MakeupLeft)
		// Refusals: a covered day, today, a day too far back, a bad date.
		for _, c := range []struct {
			day  string
			kind problem.Kind
			code string
		}{
			{"2026-11-23", problem.KindConflict, "task-day-covered"},
			{"2026-11-26", problem.KindInvalid, "day"},
			{"2026-10-20", problem.KindInvalid, "day"},
			{"26/11/2026", problem.KindInvalid, "day"},
		} {
			_, err := b.svc.MakeUp(ctx, task.MakeUpParams{TenantID: shop, UserID: alice, Task: "daily-checkin", Day: c.day})
			requireProblem(t, err, c.kind, c.code)
		}
		b.checkin(t, alice, 27)
		require.Equal(t, 11, b.streak(t, alice, "daily-checkin").Current)
		require.EqualValues(t, 150, b.balance(t, alice, "points"))
		// Late check-ins for the 13th and 14th earn their days; the 15th still separates them.
		b.apply(t, event(alice, "checkin", "", day(13)), event(alice, "checkin", "", day(14)))
		require.Equal(t, 11, b.streak(t, alice, "daily-checkin").Current)
		require.EqualValues(t, 170, b.balance(t, alice, "points"))
		// The second card fills the 15th: 13th–27th is a 14-day streak (one day frozen), 50 more.
		v, err = b.svc.MakeUp(ctx, task.MakeUpParams{TenantID: shop, UserID: alice, Task: "daily-checkin", Day: "2026-11-15"})
		require.NoError(t, err)
		require.Equal(t, 14, v.Current)
		require.EqualValues(t, 220, b.balance(t, alice, "points"))
		_, err = b.svc.MakeUp(ctx, task.MakeUpParams{TenantID: shop, UserID: alice, Task: "daily-checkin", Day: "2026-11-12"})
		requireProblem(t, err, problem.KindConflict, "task-makeup-exhausted")
		// Every grant, days' and streaks', succeeded: 12 days and two bonuses.
		b.drain(t)
		stats, err := b.svc.Stats(ctx, shop, "daily-checkin")
		require.NoError(t, err)
		require.EqualValues(t, 220, stats.RewardCost["points"])
		require.EqualValues(t, 0, stats.Owed["points"])

		// Without a streak, a make-up card is refused; a task without cards refuses it too.
		_, err = b.svc.MakeUp(ctx, task.MakeUpParams{TenantID: shop, UserID: bob, Task: "daily-checkin", Day: "2026-11-25"})
		requireProblem(t, err, problem.KindConflict, "task-streak-not-started")
		b.publish(t, task.KindTask, "plain", checkinSpec)
		_, err = b.svc.MakeUp(ctx, task.MakeUpParams{TenantID: shop, UserID: alice, Task: "plain", Day: "2026-11-25"})
		requireProblem(t, err, problem.KindConflict, "task-makeup-unavailable")
		b.verifyLedger(t)
	})
}

// TestStreakMetric: a task measured in consecutive days completes when the streak reaches its
// target; a break starts the count again.
func TestStreakMetric(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		b.publish(t, task.KindTask, "three-days", spec(`{'kind':'monthly','trigger':{'event_types':['checkin']},
			'metric':{'type':'streak'},'stages':[{'target':3,'rewards':[{'type':'growth','amount':30}]}],
			'title':{'en':'Three days in a row'}}`))
		b.checkin(t, alice, 16)
		b.checkin(t, alice, 17)
		b.checkin(t, alice, 19)
		ut := b.row(t, alice, "three-days", "2026-11")
		require.EqualValues(t, 1, ut.Progress)
		require.Equal(t, task.StateClaimed, ut.State)
		b.checkin(t, alice, 20)
		b.checkin(t, alice, 20)
		b.checkin(t, alice, 21)
		ut = b.row(t, alice, "three-days", "2026-11")
		require.Equal(t, task.StateRewarded, ut.State)
		require.EqualValues(t, 3, ut.Progress)
		require.EqualValues(t, 30, b.balance(t, alice, "growth"))
	})
}
