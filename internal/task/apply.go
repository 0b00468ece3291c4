package task

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/rules"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/reward"
)

// ApplyBatch applies behaviour events to the users' tasks in the caller's transaction: for every
// event, the live tasks its type triggers (the snapshot's index) whose filter, window, claim mode
// and limits let it count move on, and each stage it completes creates its grant: delivered in tx
// when its flow only writes to the database (the user task is then rewarded in tx), else run right
// after the commit. Events are grouped: the user tasks and streaks they touch are read in one
// query each and written in one statement each, and the grants are created together.
//
// ApplyBatch is not idempotent across calls: run it in the transaction that records the events as
// processed (ConsumeBatchTx does). A repeated event within the batch counts once. An event that
// cannot be read is skipped and counted. Another transaction changing the same user task fails
// this one with an sqldb.ErrBusy error, which sqldb.Tx retries.
func (s *Service) ApplyBatch(ctx context.Context, tx *sqldb.Tx, events []bus.Behaviour) error {
	b := s.newBatch(ctx, tx)
	work := b.plan(events)
	if err := b.load(); err != nil {
		return err
	}
	applied := 0
	for _, w := range work {
		hit, err := b.applyEvent(w)
		if err != nil {
			return err
		}
		if hit {
			applied++
		}
	}
	if err := b.flush(); err != nil {
		return err
	}
	tx.AfterCommit(func() {
		s.metrics.batch.Observe(float64(len(events)))
		s.metrics.events.WithLabelValues(resultApplied).Add(float64(applied))
		s.metrics.events.WithLabelValues(resultIgnored).Add(float64(len(work) - applied))
		s.metrics.events.WithLabelValues(resultBad).Add(float64(b.bad))
	})
	return nil
}

// batch is the work of one transaction: the rows it read and changed, what it writes at the end.
type batch struct {
	s   *Service
	ctx context.Context
	tx  *sqldb.Tx
	now time.Time

	rowKeys    []rowKey
	streakKeys []streakKey
	rows       map[rowKey]*UserTask
	streaks    map[streakKey]*streakRow
	order      []*UserTask // changed rows, in the order they were first changed
	users      map[streakKey]map[string]any

	events   []bus.Event
	grants   []grantRow
	prepared []reward.Prepared     // the grants of grants, written by flush
	earlier  map[string][]grantRow // user task id → the grants earlier transactions recorded
	moves    []State
	stages   int // stages completed
	refused  int // completions the budget refused
	bad      int // events without a tenant, user or type
}

func (s *Service) newBatch(ctx context.Context, tx *sqldb.Tx) *batch {
	return &batch{s: s, ctx: ctx, tx: tx, now: s.now(), rows: map[rowKey]*UserTask{},
		streaks: map[streakKey]*streakRow{}, users: map[streakKey]map[string]any{}}
}

// work is one event with the live tasks its type triggers.
type work struct {
	e     bus.Behaviour
	tasks []*compiled
	// receipt: a completion receipt, which counts whatever the filter says and reports refusals.
	receipt bool
	vars    map[string]any // the event as CEL sees it
	data    map[string]any // the event's data, decoded once
	day     int
	// row is the user task the event went to last.
	row *UserTask
}

// decoded is the event's data (an empty map when absent or not an object).
func (w *work) decoded() map[string]any {
	if w.data == nil {
		w.data = behaviourData(w.e)
	}
	return w.data
}

// plan picks the events' candidate tasks and the keys to read; repeated events are dropped.
func (b *batch) plan(events []bus.Behaviour) []*work {
	seen := make(map[string]bool, len(events))
	out := make([]*work, 0, len(events))
	for _, e := range events {
		if e.TenantID == "" || e.UserID == "" || e.Type == "" {
			b.bad++
			continue
		}
		key := e.Key()
		if seen[key] {
			continue
		}
		seen[key] = true
		var tasks []*compiled
		for _, c := range b.s.index(e.TenantID).byType[e.Type] {
			if c.err == nil && !b.s.killed(e.TenantID, c.key) {
				tasks = append(tasks, c)
			}
		}
		if len(tasks) == 0 {
			out = append(out, &work{e: e})
			continue
		}
		out = append(out, b.want(&work{e: e, tasks: tasks}))
	}
	return out
}

// want records the keys an event's tasks read.
func (b *batch) want(w *work) *work {
	loc := b.s.zone(w.e.TenantID)
	w.day = dayNumber(w.e.Time, loc)
	for _, c := range w.tasks {
		p := c.spec.periodAt(w.e.Time, loc)
		for r := 1; r <= c.spec.perPeriod(); r++ {
			b.rowKeys = append(b.rowKeys, rowKey{w.e.TenantID, w.e.UserID, c.key, roundKey(p.key, r)})
		}
		if c.spec.hasStreak() {
			b.streakKeys = append(b.streakKeys, streakKey{w.e.TenantID, w.e.UserID, c.key})
		}
	}
	return w
}

// load reads the rows and trackers the plan wants, in the transaction.
func (b *batch) load() error {
	rows, err := loadUserTasks(b.ctx, b.tx, b.s.dialect, dedupe(b.rowKeys), true)
	if err != nil {
		return err
	}
	for _, ut := range rows {
		b.rows[rowKey{ut.TenantID, ut.UserID, ut.Task, ut.PeriodKey}] = ut
	}
	streaks, err := loadStreaks(b.ctx, b.tx, b.s.dialect, dedupe(b.streakKeys), true)
	if err != nil {
		return err
	}
	for _, r := range streaks {
		b.streaks[streakKey{r.tenant, r.user, r.task}] = r
	}
	b.rowKeys, b.streakKeys = nil, nil
	return nil
}

func dedupe[K comparable](keys []K) []K {
	seen := make(map[K]bool, len(keys))
	out := keys[:0]
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// applyEvent applies one event to each of its tasks; it reports whether any counted it.
func (b *batch) applyEvent(w *work) (bool, error) {
	hit := false
	for _, c := range w.tasks {
		counted, err := b.applyTo(w, c)
		if err != nil && !isRefusal(err) {
			return hit, err
		}
		hit = hit || counted
	}
	return hit, nil
}

// refusal is why an event did not count for a task: events ignore it, receipts report it.
type refusal struct{ p *problem.Error }

func (r refusal) Error() string { return r.p.Error() }
func (r refusal) Unwrap() error { return r.p }

func refuse(p *problem.Error) error { return refusal{p} }

func isRefusal(err error) bool {
	var r refusal
	return errors.As(err, &r)
}

// applyTo applies an event to one task: to the user's open row for the event's period, or to a new
// one (a new round after a completed one), then completes the stages it reaches.
func (b *batch) applyTo(w *work, live *compiled) (bool, error) {
	e := w.e
	loc := b.s.zone(e.TenantID)
	p := live.spec.periodAt(e.Time, loc)
	ut, round := b.current(e.TenantID, e.UserID, live.key, p.key, live.spec.perPeriod())
	c := live
	switch {
	case ut != nil && ut.State == StateClaimed:
		var err error
		if c, err = b.pinned(e.TenantID, live.key, ut); err != nil {
			return false, err
		}
		if err := b.counts(w, c, ut); err != nil {
			return false, err
		}
	case ut != nil && ut.State.done() && round < live.spec.perPeriod():
		if err := b.mayCreate(w, live); err != nil {
			return false, err
		}
		ut = b.create(e.TenantID, e.UserID, live, p, round+1)
	case ut != nil && ut.State.done():
		return false, refuse(problem.Conflict("the task %q is done for this period", live.key).WithCode("task-limit-reached"))
	case ut != nil:
		return false, refuse(problem.Conflict("the task %q is %s for this period", live.key, ut.State).WithCode("task-closed"))
	default:
		if err := b.mayCreate(w, live); err != nil {
			return false, err
		}
		ut = b.create(e.TenantID, e.UserID, live, p, 1)
	}
	w.row = ut
	moved, err := b.progress(w, c, ut)
	if err != nil || !moved {
		return false, err
	}
	return true, b.reach(c, ut)
}

// pinned returns the version a claimed row started under. A version this node cannot use (gone, or
// refused by this node's components) makes the row skip the event, logged, rather than fail the
// whole batch over and over.
func (b *batch) pinned(tenant, key string, ut *UserTask) (*compiled, error) {
	c, err := b.s.version(b.ctx, tenant, key, ut.TaskVersion)
	if c != nil && c.err != nil || problem.Is(err, problem.KindNotFound) {
		b.s.log.Error("task: a user task's version cannot be used; its events are skipped", "task", key,
			"version", ut.TaskVersion, "user_task", ut.ID, "err", errors.Join(err, c.errOrNil()))
		return nil, refuse(problem.Conflict("version %d of task %q cannot be used", ut.TaskVersion, key).
			WithCode("task-version-unusable"))
	}
	return c, err
}

// current returns the latest round's row of a task in a period, and that round (0: none).
func (b *batch) current(tenant, user, task, period string, rounds int) (*UserTask, int) {
	for r := rounds; r >= 1; r-- {
		if ut := b.rows[rowKey{tenant, user, task, roundKey(period, r)}]; ut != nil {
			return ut, r
		}
	}
	return nil, 0
}

// counts checks that an event counts for an open row under its (pinned) version: a trigger the
// version has, inside its active window, through its filter, and after the claim of a manual task.
func (b *batch) counts(w *work, c *compiled, ut *UserTask) error {
	if !c.triggeredBy(w.e.Type) && !w.receipt {
		return refuse(problem.Conflict("version %d of task %q does not count %s events", c.version, c.key, w.e.Type).
			WithCode("task-not-triggered"))
	}
	if !c.spec.Active.contains(w.e.Time) {
		return refuse(notActive(c.key))
	}
	if c.spec.Claim.Mode == ClaimManual && w.e.Time.Before(ut.ClaimedAt) {
		return refuse(problem.Conflict("the event happened before the task %q was claimed", c.key).
			WithCode("task-not-claimed"))
	}
	return b.filter(w, c)
}

// mayCreate checks that an event may start a user task of the live version: the task takes events
// without a claim, is active at the event's time, and the filter and audience let the user in.
func (b *batch) mayCreate(w *work, c *compiled) error {
	if c.spec.Claim.Mode == ClaimManual {
		return refuse(problem.Conflict("claim the task %q first", c.key).WithCode("task-not-claimed"))
	}
	if !c.spec.Active.contains(w.e.Time) {
		return refuse(notActive(c.key))
	}
	if err := b.filter(w, c); err != nil {
		return err
	}
	return b.audience(w.e.TenantID, w.e.UserID, c)
}

func notActive(key string) *problem.Error {
	return problem.Conflict("the task %q is not active at this time", key).WithCode("task-not-active")
}

// filter evaluates the task's trigger filter on the event (receipts skip it). An evaluation error
// (a missing field, say) means the event does not match.
func (b *batch) filter(w *work, c *compiled) error {
	if c.filter == nil || w.receipt {
		return nil
	}
	vars, err := b.vars(w, c)
	if err != nil {
		return err
	}
	ok, err := c.filter.EvalBool(b.ctx, vars)
	if err != nil || !ok {
		return refuse(problem.Conflict("the event does not match the filter of task %q", c.key).WithCode("task-filter-mismatch"))
	}
	return nil
}

// audience checks the task's audience against the user's attributes.
func (b *batch) audience(tenant, user string, c *compiled) error {
	if c.audience == nil {
		return nil
	}
	attrs, err := b.user(tenant, user)
	if err != nil {
		return err
	}
	ok, err := c.audience.EvalBool(b.ctx, map[string]any{"user": attrs})
	if err != nil || !ok {
		return refuse(problem.Forbidden("the task %q is not for this user", c.key).WithCode("task-audience-mismatch"))
	}
	return nil
}

// vars is the event (and, when the filter reads it, the user) as CEL sees them.
func (b *batch) vars(w *work, c *compiled) (map[string]any, error) {
	if w.vars == nil {
		w.vars = map[string]any{"event": map[string]any{"id": w.e.ID, "type": w.e.Type, "source": w.e.Source,
			"time": w.e.Time, "data": w.decoded()}}
	}
	if !c.needsUser {
		if _, ok := w.vars["user"]; !ok {
			w.vars["user"] = map[string]any{}
		}
		return w.vars, nil
	}
	attrs, err := b.user(w.e.TenantID, w.e.UserID)
	if err != nil {
		return nil, err
	}
	w.vars["user"] = attrs
	return w.vars, nil
}

// behaviourData decodes an event's data: an empty map when absent, unreadable or not an object
// (a filter or metric reading it then finds nothing).
func behaviourData(e bus.Behaviour) map[string]any {
	if len(e.Data) > 0 {
		if v, err := rules.DecodeJSON(e.Data); err == nil {
			if m, ok := v.(map[string]any); ok {
				return m
			}
		}
	}
	return map[string]any{}
}

// user returns a user's attributes, asked once per transaction.
func (b *batch) user(tenant, user string) (map[string]any, error) {
	k := streakKey{tenant: tenant, user: user}
	if attrs, ok := b.users[k]; ok {
		return attrs, nil
	}
	attrs, err := b.s.users(b.ctx, tenant, user)
	if err != nil {
		return nil, err
	}
	b.users[k] = attrs
	return attrs, nil
}

// create starts a user task of the live version c in period p, claimed now.
func (b *batch) create(tenant, user string, c *compiled, p period, round int) *UserTask {
	ut := &UserTask{ID: ids.New("ut", b.now), TenantID: tenant, UserID: user, Task: c.key,
		PeriodKey: roundKey(p.key, round), Period: p.key, Round: round, TaskVersion: c.version,
		State: StateClaimed, StagesDone: []int{}, ClaimedAt: b.now, UpdatedAt: b.now, inserted: true}
	if !p.end.IsZero() {
		end := p.end.UTC()
		ut.ExpiresAt = &end
	}
	b.rows[rowKey{tenant, user, c.key, ut.PeriodKey}] = ut
	b.touch(ut)
	b.events = append(b.events, b.s.event(EventClaimed, ut, "", nil))
	b.moves = append(b.moves, StateClaimed)
	return ut
}

// touch marks a row changed.
func (b *batch) touch(ut *UserTask) {
	if !ut.dirty {
		ut.dirty = true
		b.order = append(b.order, ut)
	}
	ut.UpdatedAt = b.now
}

// progress applies the event to the row's metric; it reports whether the row moved.
func (b *batch) progress(w *work, c *compiled, ut *UserTask) (bool, error) {
	spec := &c.spec
	switch spec.Metric.Type {
	case MetricCount:
		ut.Progress++
	case MetricSum:
		n, ok := lookup(w.decoded(), spec.Metric.Field).(int64)
		if !ok || n <= 0 {
			return false, refuse(problem.Invalid("the event's data.%s must be a positive integer", spec.Metric.Field).
				WithField("data."+spec.Metric.Field, "must be a positive integer"))
		}
		ut.Progress = min(ut.Progress+n, MaxTarget*1000)
	case MetricDistinct:
		value, ok := distinctValue(lookup(w.decoded(), spec.Metric.Field))
		if !ok {
			return false, refuse(problem.Invalid("the event's data.%s must be a string or a number", spec.Metric.Field).
				WithField("data."+spec.Metric.Field, "must be a string or a number"))
		}
		if slices.Contains(ut.Values, value) || int64(len(ut.Values)) >= spec.maxTarget() {
			return false, nil
		}
		ut.Values = append(ut.Values, value)
		ut.Progress = int64(len(ut.Values))
	case MetricStreak:
		r := b.streak(w.e.TenantID, w.e.UserID, c.key)
		prev, cur, changed := r.cover(w.day, spec.Streak, false)
		if !changed {
			return false, nil
		}
		ut.Progress = int64(cur)
		b.touch(ut)
		return true, b.streakRewards(c, r, ut, prev, cur)
	default:
		return false, fmt.Errorf("task %s: unknown metric %q", c.key, spec.Metric.Type)
	}
	b.touch(ut)
	if spec.Streak != nil {
		r := b.streak(w.e.TenantID, w.e.UserID, c.key)
		if prev, cur, changed := r.cover(w.day, spec.Streak, false); changed {
			return true, b.streakRewards(c, r, ut, prev, cur)
		}
	}
	return true, nil
}

// streak returns the user's tracker for a task, creating it.
func (b *batch) streak(tenant, user, task string) *streakRow {
	k := streakKey{tenant, user, task}
	r := b.streaks[k]
	if r == nil {
		r = &streakRow{tenant: tenant, user: user, task: task, id: ids.New("tst", b.now)}
		b.streaks[k] = r
	}
	r.updatedAt = b.now
	return r
}
