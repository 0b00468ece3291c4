package task

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

// A streak tracker (task_streaks, one per user and task) keeps the runs of consecutive covered
// days: days with a counted event, days filled with a make-up card, and missed days bridged by a
// freeze. A run is [first day, last day, frozen days]; its length counts the days that are not
// frozen (a freeze keeps a streak alive without lengthening it). The streak is the run that ends
// last. Runs that can no longer be joined (ended more than keepDays before the last day) are
// dropped.

// keepDays is how far back runs are kept: make-up cards reach at most makeupDays back.
const (
	keepDays   = 64
	makeupDays = 31
)

// run is a span of covered days: [Start, End] with Frozen of them bridged by freezes.
type run [3]int

func (r run) start() int  { return r[0] }
func (r run) end() int    { return r[1] }
func (r run) length() int { return r[1] - r[0] + 1 - r[2] }

// StreakView is a user's streak on a task, as of now.
type StreakView struct {
	// Current is the streak's length; 0 when it is broken (no covered day yesterday or today).
	Current int `json:"current"`
	Longest int `json:"longest"`
	// LastDay is the last covered day ("2026-11-21"), empty before the first.
	LastDay string `json:"last_day,omitempty"`
	// MakeupLeft and FreezeLeft are the make-up cards and freezes left this month.
	MakeupLeft int `json:"makeup_left"`
	FreezeLeft int `json:"freeze_left"`
}

// streakRow is a task_streaks row.
type streakRow struct {
	tenant, user, task, id string
	current, longest       int
	runs                   []run
	makeupUsed, freezeUsed int
	// month is the month ("2026-11") the used counters count.
	month     string
	updatedAt time.Time
	rev       int64
	dirty     bool
}

type streakKey struct{ tenant, user, task string }

// latest is the run that ends last (runs are kept sorted).
func (r *streakRow) latest() (run, bool) {
	if len(r.runs) == 0 {
		return run{}, false
	}
	return r.runs[len(r.runs)-1], true
}

// covered reports whether day is in a run.
func (r *streakRow) covered(day int) bool {
	return slices.ContainsFunc(r.runs, func(x run) bool { return day >= x.start() && day <= x.end() })
}

// useMonth moves the used counters to month m (a later month starts them again). It reports
// whether the counters are m's: a day of an earlier month has none left.
func (r *streakRow) useMonth(m string) bool {
	if m > r.month {
		r.month, r.makeupUsed, r.freezeUsed = m, 0, 0
	}
	return m == r.month
}

// cover adds a day with a counted event (makeup=false) or a make-up card (makeup=true). A missed
// gap before an event day is bridged when the month's freezes cover all of it. It returns the
// streak's length before and after: before is the longest run the streak now continues (0 when
// the day starts a new streak); changed is false when the day was covered already.
func (r *streakRow) cover(day int, opt *Streak, makeup bool) (prev, cur int, changed bool) {
	was, ok := r.latest()
	if r.covered(day) {
		return was.length(), was.length(), false
	}
	before := slices.Clone(r.runs)
	r.dirty = true
	if gap := day - was.end() - 1; ok && !makeup && gap > 0 && opt != nil && opt.FreezePerMonth > 0 &&
		r.useMonth(monthOfDay(day)) && opt.FreezePerMonth-r.freezeUsed >= gap {
		r.freezeUsed += gap
		r.runs[len(r.runs)-1] = run{was.start(), day, was[2] + gap}
	} else {
		r.insert(day)
	}
	now, _ := r.latest()
	for _, x := range before {
		if x.start() >= now.start() && x.end() <= now.end() {
			prev = max(prev, x.length()) // a run the streak now continues
		}
	}
	cur = now.length()
	r.current, r.longest = cur, max(r.longest, cur)
	r.prune()
	return prev, cur, true
}

// insert adds [day, day] and merges it with adjacent runs.
func (r *streakRow) insert(day int) {
	i, _ := slices.BinarySearchFunc(r.runs, day, func(x run, d int) int { return x.start() - d })
	r.runs = slices.Insert(r.runs, i, run{day, day, 0})
	merged := r.runs[:0]
	for _, x := range r.runs {
		if n := len(merged); n > 0 && merged[n-1].end()+1 >= x.start() {
			m := merged[n-1]
			merged[n-1] = run{m.start(), max(m.end(), x.end()), m[2] + x[2]}
			continue
		}
		merged = append(merged, x)
	}
	r.runs = merged
}

// prune drops runs that ended too long before the last one to ever be joined to it.
func (r *streakRow) prune() {
	last, ok := r.latest()
	if !ok {
		return
	}
	r.runs = slices.DeleteFunc(r.runs, func(x run) bool { return x.end() < last.end()-keepDays })
}

// source is the grant source id of rewards for the streak's current run: the tracker and the run's
// first day, so a new streak earns its rewards again and a replay of the same one does not.
func (r *streakRow) source() string {
	last, _ := r.latest()
	return r.id + "/" + dayDate(last.start())
}

// view is the streak as of today (a day number).
func (r *streakRow) view(opt *Streak, today int) StreakView {
	v := StreakView{Longest: r.longest}
	month := monthOfDay(today)
	makeupUsed, freezeUsed := r.makeupUsed, r.freezeUsed
	if month != r.month {
		makeupUsed, freezeUsed = 0, 0
	}
	if opt != nil {
		v.MakeupLeft, v.FreezeLeft = max(opt.MakeupCardsPerMonth-makeupUsed, 0), max(opt.FreezePerMonth-freezeUsed, 0)
	}
	last, ok := r.latest()
	if !ok {
		return v
	}
	v.LastDay = dayDate(last.end())
	if gap := today - last.end() - 1; gap <= 0 || gap <= v.FreezeLeft {
		v.Current = last.length()
	}
	return v
}

// rewardAt returns the index of the streak reward a streak of length n earns, if any. With
// Cycle, the rewards repeat after the last one.
func (st *Streak) rewardAt(n int) (int, bool) {
	if st == nil || len(st.Rewards) == 0 || n < 1 {
		return 0, false
	}
	day := n
	if last := st.Rewards[len(st.Rewards)-1].Day; st.Cycle && n > last {
		day = (n-1)%last + 1
	}
	for i, r := range st.Rewards {
		if r.Day == day {
			return i, true
		}
	}
	return 0, false
}

const streakColumns = `tenant_id, user_id, task_key, id, current, longest, last_day, runs, makeup_used, freeze_used,
	month, updated_at, rev`

func scanStreak(row scanner) (*streakRow, error) {
	var (
		r       streakRow
		lastDay int
		runs    string
		updated int64
	)
	if err := row.Scan(&r.tenant, &r.user, &r.task, &r.id, &r.current, &r.longest, &lastDay, &runs, &r.makeupUsed,
		&r.freezeUsed, &r.month, &updated, &r.rev); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(runs), &r.runs); err != nil {
		return nil, fmt.Errorf("task: streak %s: runs: %w", r.id, err)
	}
	r.updatedAt = sqldb.FromMicros(updated)
	return &r, nil
}

// loadStreaks reads the trackers with these keys (those that exist); with lock, locked in key
// order (see loadUserTasks).
func loadStreaks(ctx context.Context, q sqldb.Querier, m sqldb.Dialect, keys []streakKey, lock bool) ([]*streakRow, error) {
	suffix := ""
	if lock {
		suffix = ` ORDER BY tenant_id, user_id, task_key` + m.ForUpdate()
		slices.SortFunc(keys, func(a, b streakKey) int {
			return cmp.Or(strings.Compare(a.tenant, b.tenant), strings.Compare(a.user, b.user), strings.Compare(a.task, b.task))
		})
	}
	var out []*streakRow
	for start := 0; start < len(keys); start += keyChunk {
		chunk := keys[start:min(start+keyChunk, len(keys))]
		args := make([]any, 0, 3*len(chunk))
		for _, k := range chunk {
			args = append(args, k.tenant, k.user, k.task)
		}
		rows, err := q.Query(ctx, `SELECT `+streakColumns+` FROM task_streaks
			WHERE (tenant_id, user_id, task_key) IN (VALUES `+m.Tuples(len(chunk), 3)+`)`+suffix, args...)
		if err != nil {
			return nil, fmt.Errorf("task: load streaks: %w", err)
		}
		for rows.Next() {
			r, err := scanStreak(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, r)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, fmt.Errorf("task: load streaks: %w", err)
		}
	}
	return out, nil
}

// saveStreaks writes new and changed trackers; one changed meanwhile fails with errRace.
func saveStreaks(ctx context.Context, tx *sqldb.Tx, m sqldb.Dialect, rs []*streakRow) error {
	const cols = 13
	for start := 0; start < len(rs); start += keyChunk / 2 {
		chunk := rs[start:min(start+keyChunk/2, len(rs))]
		args := make([]any, 0, cols*len(chunk))
		for _, r := range chunk {
			last, _ := r.latest()
			runs := "[]"
			if len(r.runs) > 0 {
				runs = string(mustJSON(r.runs))
			}
			args = append(args, r.tenant, r.user, r.task, r.id, r.current, r.longest, last.end(), runs, r.makeupUsed,
				r.freezeUsed, r.month, sqldb.Micros(r.updatedAt), r.rev+1)
		}
		rows, err := tx.Query(ctx, `INSERT INTO task_streaks (`+streakColumns+`) VALUES `+m.Tuples(len(chunk), cols)+`
			ON CONFLICT (tenant_id, user_id, task_key) DO UPDATE SET current = excluded.current,
				longest = excluded.longest, last_day = excluded.last_day, runs = excluded.runs,
				makeup_used = excluded.makeup_used, freeze_used = excluded.freeze_used, month = excluded.month,
				updated_at = excluded.updated_at, rev = excluded.rev
			WHERE task_streaks.rev = excluded.rev - 1 AND task_streaks.id = excluded.id
			RETURNING id`, args...)
		if err != nil {
			return fmt.Errorf("task: save streaks: %w", err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("task: save streaks: %w", err)
		}
		if n != len(chunk) {
			return errRace
		}
	}
	for _, r := range rs {
		r.rev++
		r.dirty = false
	}
	return nil
}
