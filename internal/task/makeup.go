package task

import (
	"context"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// MakeUpParams names the missed day a user fills with a make-up card (补签).
type MakeUpParams struct {
	TenantID string
	UserID   string
	Task     string
	// Day is the missed day, "2026-11-20", one of the 31 days before today (tenant's time zone).
	Day string
}

// MakeUp fills a missed day of the user's streak with one of the month's make-up cards. The streak
// may join the run before the day and reach streak rewards, which are granted as for an event; a
// streak-metric task's current user task takes the new length (and may complete). The day's own
// task reward is not granted. Refusals: the task has no make-up cards (Conflict
// task-makeup-unavailable), the user has no streak yet (Conflict task-streak-not-started), the day is
// covered already (Conflict task-day-covered), the month's cards are used (Conflict
// task-makeup-exhausted), a day out of range (Invalid day).
func (s *Service) MakeUp(ctx context.Context, p MakeUpParams) (StreakView, error) {
	c, err := s.open(p.TenantID, p.UserID, p.Task)
	if err != nil {
		return StreakView{}, err
	}
	opt := c.spec.Streak
	if opt == nil || opt.MakeupCardsPerMonth == 0 {
		return StreakView{}, problem.Conflict("the task %q has no make-up cards", c.key).WithCode("task-makeup-unavailable")
	}
	now := s.now()
	loc := s.zone(p.TenantID)
	today := dayNumber(now, loc)
	day, ok := parseDay(p.Day)
	if !ok || day >= today || day < today-makeupDays {
		return StreakView{}, problem.Invalid("invalid make-up day").
			WithField("day", "must be a date (2026-11-20) among the 31 days before today")
	}
	var view StreakView
	err = s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		b := s.newBatch(ctx, tx)
		per := c.spec.periodAt(now, loc)
		if err := b.loadPeriod(p.TenantID, p.UserID, c, per); err != nil {
			return err
		}
		r := b.streaks[streakKey{p.TenantID, p.UserID, c.key}]
		switch {
		case r == nil:
			return problem.Conflict("no streak on task %q yet", c.key).WithCode("task-streak-not-started")
		case r.covered(day):
			return problem.Conflict("%s is covered already", p.Day).WithCode("task-day-covered")
		case !r.useMonth(monthOfDay(today)) || r.makeupUsed >= opt.MakeupCardsPerMonth:
			return problem.Conflict("this month's %d make-up cards are used", opt.MakeupCardsPerMonth).
				WithCode("task-makeup-exhausted")
		}
		r.makeupUsed++
		r.updatedAt = b.now
		prev, cur, _ := r.cover(day, opt, true)
		ut, _ := b.current(p.TenantID, p.UserID, c.key, per.key, c.spec.perPeriod())
		if err := b.streakRewards(c, r, ut, prev, cur); err != nil {
			return err
		}
		if ut != nil && ut.State == StateClaimed && c.spec.Metric.Type == MetricStreak {
			pinned, err := s.version(ctx, p.TenantID, c.key, ut.TaskVersion)
			if err != nil {
				return err
			}
			ut.Progress = int64(cur)
			b.touch(ut)
			if err := b.reach(pinned, ut); err != nil {
				return err
			}
		}
		view = r.view(opt, today)
		return b.flush()
	})
	return view, err
}
