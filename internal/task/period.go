package task

import (
	"fmt"
	"strconv"
	"time"
)

// PeriodOnce is the period key of one-off, window and unperiodic staged tasks.
const PeriodOnce = "once"

// period is one period of a task: its key and its bounds (zero when open).
type period struct {
	key        string
	start, end time.Time
}

// cut is how a spec's periods are cut.
func (s *Spec) cut() Period {
	switch s.Kind {
	case KindDaily:
		return PeriodDaily
	case KindWeekly:
		return PeriodWeekly
	case KindMonthly:
		return PeriodMonthly
	case KindStaged:
		return s.Period
	}
	return PeriodNone
}

// periodAt returns the period of the spec that t falls in, in the time zone loc. Its end is capped
// by the active window's end.
func (s *Spec) periodAt(t time.Time, loc *time.Location) period {
	p := periodOf(s.cut(), t, loc)
	if s.Active != nil && s.Active.Until != nil && (p.end.IsZero() || s.Active.Until.Before(p.end)) {
		p.end = *s.Active.Until
	}
	return p
}

// periodOf cuts time t into a period: daily "2026-11-21", weekly ISO "2026-W47", monthly "2026-11",
// otherwise "once". Days start at local midnight, weeks on Monday; DST changes are handled by
// calendar arithmetic, so a day may last 23 or 25 hours.
func periodOf(cut Period, t time.Time, loc *time.Location) period {
	if loc == nil {
		loc = time.UTC
	}
	l := t.In(loc)
	y, m, d := l.Date()
	switch cut {
	case PeriodDaily:
		start := time.Date(y, m, d, 0, 0, 0, 0, loc)
		return period{key: l.Format("2006-01-02"), start: start, end: time.Date(y, m, d+1, 0, 0, 0, 0, loc)}
	case PeriodWeekly:
		wy, w := l.ISOWeek()
		back := (int(l.Weekday()) + 6) % 7 // days since Monday
		start := time.Date(y, m, d-back, 0, 0, 0, 0, loc)
		return period{key: fmt.Sprintf("%04d-W%02d", wy, w), start: start, end: time.Date(y, m, d-back+7, 0, 0, 0, 0, loc)}
	case PeriodMonthly:
		start := time.Date(y, m, 1, 0, 0, 0, 0, loc)
		return period{key: l.Format("2006-01"), start: start, end: time.Date(y, m+1, 1, 0, 0, 0, 0, loc)}
	}
	return period{key: PeriodOnce}
}

// roundKey is the period key of a round: the period itself for the first, "<period>#<n>" after.
func roundKey(period string, round int) string {
	if round <= 1 {
		return period
	}
	return period + "#" + strconv.Itoa(round)
}

// dayNumber is the local calendar day of t in loc, counted from 1970-01-01.
func dayNumber(t time.Time, loc *time.Location) int {
	if loc == nil {
		loc = time.UTC
	}
	y, m, d := t.In(loc).Date()
	return int(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// dayDate is the date of a day number ("2026-11-21").
func dayDate(day int) string { return time.Unix(int64(day)*86400, 0).UTC().Format("2006-01-02") }

// parseDay reads a date ("2026-11-21") as a day number.
func parseDay(s string) (int, bool) {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return 0, false
	}
	return int(t.Unix() / 86400), true
}

// monthOfDay is the month ("2026-11") a day number falls in.
func monthOfDay(day int) string { return time.Unix(int64(day)*86400, 0).UTC().Format("2006-01") }
