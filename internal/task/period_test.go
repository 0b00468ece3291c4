package task

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPeriodKeys: periods are cut in the tenant's time zone — days at local midnight, ISO weeks
// from Monday (across the year's end), calendar months — and last 23 or 25 hours across DST.
func TestPeriodKeys(t *testing.T) {
	t.Parallel()
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	require.NoError(t, err)
	newYork, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return v
	}
	for _, c := range []struct {
		cut  Period
		at   string
		loc  *time.Location
		key  string
		hrs  float64 // length of the period, 0 for open
		from string  // local start
	}{
		{PeriodDaily, "2026-11-20T15:59:59Z", shanghai, "2026-11-20", 24, "2026-11-20T00:00:00+08:00"},
		{PeriodDaily, "2026-11-20T16:00:00Z", shanghai, "2026-11-21", 24, "2026-11-21T00:00:00+08:00"},
		{PeriodDaily, "2026-11-20T16:00:00Z", time.UTC, "2026-11-20", 24, "2026-11-20T00:00:00Z"},
		{PeriodDaily, "2026-11-21T03:00:00Z", newYork, "2026-11-20", 24, "2026-11-20T00:00:00-05:00"},
		{PeriodDaily, "2026-03-08T12:00:00Z", newYork, "2026-03-08", 23, "2026-03-08T00:00:00-05:00"},
		{PeriodDaily, "2026-11-01T12:00:00Z", newYork, "2026-11-01", 25, "2026-11-01T00:00:00-04:00"},
		{PeriodWeekly, "2026-11-16T02:00:00Z", shanghai, "2026-W47", 168, "2026-11-16T00:00:00+08:00"},
		{PeriodWeekly, "2026-11-15T16:30:00Z", shanghai, "2026-W47", 168, "2026-11-16T00:00:00+08:00"},
		{PeriodWeekly, "2026-11-15T15:30:00Z", shanghai, "2026-W46", 168, "2026-11-09T00:00:00+08:00"},
		{PeriodWeekly, "2027-01-01T12:00:00Z", shanghai, "2026-W53", 168, "2026-12-28T00:00:00+08:00"},
		{PeriodWeekly, "2027-01-04T12:00:00Z", shanghai, "2027-W01", 168, "2027-01-04T00:00:00+08:00"},
		{PeriodWeekly, "2026-03-10T12:00:00Z", newYork, "2026-W11", 168, "2026-03-09T00:00:00-04:00"},
		{PeriodWeekly, "2026-03-05T12:00:00Z", newYork, "2026-W10", 167, "2026-03-02T00:00:00-05:00"},
		{PeriodMonthly, "2026-11-30T16:30:00Z", shanghai, "2026-12", 744, "2026-12-01T00:00:00+08:00"},
		{PeriodMonthly, "2026-11-30T15:30:00Z", shanghai, "2026-11", 720, "2026-11-01T00:00:00+08:00"},
		{PeriodMonthly, "2026-03-15T12:00:00Z", newYork, "2026-03", 743, "2026-03-01T00:00:00-05:00"},
		{PeriodNone, "2026-11-20T10:00:00Z", shanghai, "once", 0, ""},
	} {
		p := periodOf(c.cut, utc(c.at), c.loc)
		require.Equal(t, c.key, p.key, "%s %s in %s", c.cut, c.at, c.loc)
		if c.hrs == 0 {
			require.True(t, p.start.IsZero() && p.end.IsZero())
			continue
		}
		require.Equal(t, c.hrs, p.end.Sub(p.start).Hours(), "%s %s in %s", c.cut, c.at, c.loc)
		require.Equal(t, c.from, p.start.Format(time.RFC3339))
		require.False(t, utc(c.at).Before(p.start))
		require.True(t, utc(c.at).Before(p.end))
	}
	// A nil zone is UTC.
	require.Equal(t, "2026-11-20", periodOf(PeriodDaily, utc("2026-11-20T23:00:00Z"), nil).key)

	// The active window's end caps a period; a window task has one period, "once".
	until := utc("2026-11-18T00:00:00Z")
	s := Spec{Kind: KindWeekly, Active: &Window{Until: &until}}
	require.Equal(t, until, s.periodAt(utc("2026-11-16T02:00:00Z"), shanghai).end)
	w := Spec{Kind: KindWindow, Active: &Window{Until: &until}}
	p := w.periodAt(utc("2026-11-16T02:00:00Z"), shanghai)
	require.Equal(t, "once", p.key)
	require.Equal(t, until, p.end)
	st := Spec{Kind: KindStaged, Period: PeriodMonthly}
	require.Equal(t, "2026-11", st.periodAt(utc("2026-11-16T02:00:00Z"), shanghai).key)
}

// TestDayNumbers: streak days are local calendar days.
func TestDayNumbers(t *testing.T) {
	t.Parallel()
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	require.NoError(t, err)
	d := dayNumber(time.Date(2026, 11, 20, 16, 0, 0, 0, time.UTC), shanghai)
	require.Equal(t, "2026-11-21", dayDate(d))
	n, ok := parseDay("2026-11-21")
	require.True(t, ok)
	require.Equal(t, d, n)
	require.Equal(t, "2026-11", monthOfDay(d))
	_, ok = parseDay("2026-13-01")
	require.False(t, ok)
	require.Equal(t, "2026-W47#3", roundKey("2026-W47", 3))
	require.Equal(t, "2026-W47", roundKey("2026-W47", 1))
}
