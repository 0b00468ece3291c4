package reward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/rules"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// FaultPoint names a boundary in the executor where the Fault hook is called.
type FaultPoint string

// The fault points, in the order an execution meets them.
const (
	// FaultAfterClaim: the grant is claimed (running, leased); no step has run.
	FaultAfterClaim FaultPoint = "after-claim"
	// FaultBeforeStep: before a step's transaction (or its call) begins.
	FaultBeforeStep FaultPoint = "before-step"
	// FaultAfterCall: a call_external answered; its step is not marked yet.
	FaultAfterCall FaultPoint = "after-call"
	// FaultInStepTx: inside a step's transaction, its effect and step row written, before the commit.
	FaultInStepTx FaultPoint = "in-step-tx"
	// FaultBeforeFinish: inside the transaction that makes the grant succeeded, before the commit.
	FaultBeforeFinish FaultPoint = "before-finish"
	// FaultAfterStep: a step's transaction has committed.
	FaultAfterStep FaultPoint = "after-step"
	// FaultAfterFinish: the grant's final transition (succeeded) has committed.
	FaultAfterFinish FaultPoint = "after-finish"
	// FaultBeforeFail: a step failed; the failure is not recorded yet.
	FaultBeforeFail FaultPoint = "before-fail"
)

// Fault tells the Fault hook where the executor is.
type Fault struct {
	Point   FaultPoint
	GrantID string
	// Step is the step concerned ("" for the grant as a whole).
	Step string
}

// stops reports whether err ends an execution on the spot (a fault hook, a lost lease) rather
// than being a failed attempt to record.
func stops(err error) bool {
	var crash crashError
	return errors.As(err, &crash) || errors.Is(err, errLeaseLost)
}

// crashError is a Fault hook's error: the execution stops where it is.
type crashError struct{ err error }

func (e crashError) Error() string { return "reward: stopped by the fault hook: " + e.err.Error() }
func (e crashError) Unwrap() error { return e.err }

var (
	// errLeaseLost: another executor took the grant over; this one stops without writing.
	errLeaseLost = errors.New("reward: the grant's lease was lost")
	// errStepDone: the step row was already done (another writer got there first).
	errStepDone = errors.New("reward: step already done")
	// errRollback carries a component failure out of its transaction.
	errRollback = errors.New("reward: step failed")
)

// Execute runs a grant now if it is due (pending or failed with next_attempt_at passed, or running
// with an expired lease): it claims the grant with a lease — of two executors racing, one wins and
// the other returns the grant as it stands — and runs the steps not done yet. It returns the grant
// with its steps. A failing step is not an error: the grant is recorded as failed (or dead) and
// retried later. Errors are for the store (the grant is left for the sweeper).
func (s *Service) Execute(ctx context.Context, grantID string) (Grant, error) {
	g, err := s.execute(ctx, grantID)
	if err != nil {
		return g, err
	}
	return s.Get(ctx, g.TenantID, g.ID)
}

func (s *Service) execute(ctx context.Context, grantID string) (Grant, error) {
	g, claimed, err := s.claim(ctx, grantID)
	if err != nil || !claimed {
		return g, err
	}
	return s.run(ctx, g)
}

// claim takes the grant if it is due; otherwise it returns it unclaimed.
func (s *Service) claim(ctx context.Context, grantID string) (Grant, bool, error) {
	var (
		g       Grant
		claimed bool
	)
	token := s.newToken()
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		g, claimed, err = s.claimIn(ctx, tx, grantID, token)
		return err
	})
	if err != nil {
		return Grant{}, false, err
	}
	if claimed {
		s.metrics.transition(StateRunning)
		return g, true, nil
	}
	g, err = grantByID(ctx, s.db.Reader(), "", grantID)
	return g, false, err
}

// claimIn claims the grant in tx when it is due: running, leased to token.
func (s *Service) claimIn(ctx context.Context, tx *sqldb.Tx, grantID, token string) (Grant, bool, error) {
	now := s.now()
	g, err := scanGrant(tx.QueryRow(ctx, `UPDATE reward_grants SET state = 'running', claimed_by = $1,
		claimed_until = $2, next_attempt_at = $2, updated_at = $3,
		attempts = attempts + CASE WHEN state = 'running' THEN 1 ELSE 0 END
		WHERE id = $4 AND state IN ('pending', 'running', 'failed') AND next_attempt_at <= $3
		RETURNING `+grantColumns, token, sqldb.Micros(now.Add(s.opts.Lease)), sqldb.Micros(now), grantID))
	if isNoRows(err) {
		return Grant{}, false, nil
	}
	if err != nil {
		return Grant{}, false, fmt.Errorf("reward: claim grant %s: %w", grantID, err)
	}
	return g, true, nil
}

// newToken names one execution in claimed_by.
func (s *Service) newToken() string { return s.opts.Node + "/" + ids.Secret(5) }

// execution is one run of one claimed grant.
type execution struct {
	s        *Service
	g        Grant
	f        *flow
	token    string
	rows     map[string]*stepRow
	params   any
	finished bool
	// recheck is when the earliest waiting step wants to be looked at again.
	recheck time.Time
	// slot is the grant's position in its fast-path batch.
	slot int
}

// run executes a claimed grant.
func (s *Service) run(ctx context.Context, g Grant) (Grant, error) {
	x := &execution{s: s, g: g, token: g.claimedBy}
	if err := s.fault(FaultAfterClaim, g.ID, ""); err != nil {
		return g, err
	}
	f, err := s.flowOf(ctx, g)
	if err != nil {
		return x.settle(x.fail(ctx, -1, err))
	}
	x.f = f
	if x.rows, err = loadSteps(ctx, s.db.Reader(), g); err != nil {
		return g, err
	}
	if x.params, err = rules.DecodeJSON(g.Params); err != nil {
		return x.settle(x.fail(ctx, -1, fmt.Errorf("params: %w", err)))
	}
	if g.Attempts >= g.MaxAttempts {
		// Only reclaimed leases count up to here: every execution so far stopped half-way.
		return x.settle(x.fail(ctx, -1, errors.New("gave up: every attempt stopped before it finished (lease expired)")))
	}
	return x.settle(x.pass(ctx))
}

// settle turns the end of an execution into Execute's answer: a lost lease is not an error (the
// grant is someone else's now).
func (x *execution) settle(err error) (Grant, error) {
	if errors.Is(err, errLeaseLost) {
		x.s.log.Debug("reward: lease lost; another executor has the grant", "grant", x.g.ID)
		return x.g, nil
	}
	return x.g, err
}

// pass runs every step that can run now, in order, and then finishes or parks the grant.
func (x *execution) pass(ctx context.Context) error {
	for _, i := range x.f.order {
		if x.state(i).done() || !x.depsDone(i) {
			continue
		}
		failure, err := x.step(ctx, i)
		if err != nil {
			return err
		}
		if failure != nil {
			return x.fail(ctx, i, failure)
		}
	}
	switch {
	case x.finished:
		return nil
	case x.allDone(x.rows, -1):
		return x.finish(ctx)
	}
	return x.park(ctx)
}

func (x *execution) state(i int) StepState {
	if r := x.rows[x.f.spec.Steps[i].Name]; r != nil {
		return r.state
	}
	return StepPending
}

func (x *execution) depsDone(i int) bool {
	for _, d := range x.f.deps[i] {
		if !x.state(d).done() {
			return false
		}
	}
	return true
}

// allDone reports whether every step but except is done in rows.
func (x *execution) allDone(rows map[string]*stepRow, except int) bool {
	for i, st := range x.f.spec.Steps {
		if i == except {
			continue
		}
		if r := rows[st.Name]; r == nil || !r.state.done() {
			return false
		}
	}
	return true
}

// step runs step i. It returns the step's failure (to record) or an error that stops the run.
func (x *execution) step(ctx context.Context, i int) (failure, err error) {
	st := x.f.spec.Steps[i]
	if err := x.s.fault(FaultBeforeStep, x.g.ID, st.Name); err != nil {
		return nil, err
	}
	if r := x.rows[st.Name]; r != nil && r.state == StepWaiting && sqldb.Micros(x.s.now()) >= r.waitUntil {
		if r.lastError != "" {
			return errors.New(r.lastError), nil
		}
		return errTimedOut, nil
	}
	if prog := x.f.when[i]; prog != nil {
		ok, err := prog.EvalBool(ctx, map[string]any{"params": x.params, "grant": x.vars()})
		if err != nil {
			return fmt.Errorf("condition: %w", err), nil
		}
		if !ok {
			return x.commit(ctx, i, commitSpec{state: StepSkipped})
		}
	}
	switch c := x.f.comps[i].(type) {
	case TxComponent:
		return x.commit(ctx, i, commitSpec{state: StepSucceeded, effect: c})
	case CallComponent:
		return x.call(ctx, i, c)
	}
	return fmt.Errorf("component %q cannot run", st.Component), nil
}

// call runs a CallComponent step: renew the lease, call out (no transaction held), record.
func (x *execution) call(ctx context.Context, i int, c CallComponent) (failure, err error) {
	st := x.f.spec.Steps[i]
	if err := x.s.db.Tx(ctx, func(tx *sqldb.Tx) error { return x.hold(ctx, tx, false) }); err != nil {
		return nil, err
	}
	start := time.Now()
	res, callErr := runCall(ctx, c, x.stepContext(i, nil))
	if err := x.s.fault(FaultAfterCall, x.g.ID, st.Name); err != nil {
		return nil, err
	}
	if callErr != nil {
		x.s.metrics.step(st.Component, StepFailed, start)
		return callErr, nil
	}
	if res.Done {
		return x.commit(ctx, i, commitSpec{state: StepSucceeded, output: res.Output, start: start})
	}
	failure, err = x.commit(ctx, i, commitSpec{state: StepWaiting, waitUntil: res.WaitUntil, start: start})
	if err == nil && failure == nil && x.state(i) == StepWaiting {
		at := res.RecheckAt
		if at.IsZero() || at.After(res.WaitUntil) {
			at = res.WaitUntil
		}
		if x.recheck.IsZero() || at.Before(x.recheck) {
			x.recheck = at
		}
	}
	return failure, err
}

// commitSpec is what one step transaction writes.
type commitSpec struct {
	state     StepState
	output    json.RawMessage
	effect    TxComponent
	waitUntil time.Time
	start     time.Time
}

// commit writes step i in one transaction: the lease check (or, for the last step, the grant's
// final transition), the step's effect, its row and, when last, the grant.succeeded event.
func (x *execution) commit(ctx context.Context, i int, c commitSpec) (failure, err error) {
	st := x.f.spec.Steps[i]
	if c.start.IsZero() {
		c.start = time.Now()
	}
	last := c.state.done() && x.allDone(x.rows, i)
	var row stepRow
	err = x.s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		failure = nil
		if err := x.hold(ctx, tx, last); err != nil {
			return err
		}
		row = stepRow{name: st.Name, component: st.Component, state: c.state, output: c.output}
		if prev := x.rows[st.Name]; prev != nil {
			row.attempts = prev.attempts
		}
		if c.effect != nil {
			out, err := runTx(ctx, c.effect, x.stepContext(i, tx))
			if errors.Is(err, sqldb.ErrBusy) {
				return err // sqldb.Tx runs the transaction again
			}
			if err != nil {
				failure = err
				return errRollback
			}
			row.output = out
		}
		if !c.waitUntil.IsZero() {
			row.waitUntil = sqldb.Micros(c.waitUntil)
		}
		now := x.s.now()
		row.updatedAt = sqldb.Micros(now)
		wrote, err := writeStep(ctx, tx, stepWrite{g: x.g, name: st.Name, component: st.Component, state: c.state,
			output: row.output, waitUntil: row.waitUntil, now: now})
		if err != nil {
			return err
		}
		if !wrote {
			return errStepDone
		}
		return x.closeTx(ctx, tx, st.Name, last, &row)
	})
	switch {
	case errors.Is(err, errRollback):
		x.s.metrics.step(st.Component, StepFailed, c.start)
		return failure, nil
	case errors.Is(err, errStepDone):
		// Confirmed meanwhile (a callback): take the rows as they are and carry on.
		rows, lerr := loadSteps(ctx, x.s.db.Reader(), x.g)
		if lerr != nil {
			return nil, lerr
		}
		x.rows = rows
		return nil, nil
	case stops(err):
		return nil, err
	case err != nil:
		// The store refused the step (a constraint, a timeout): a failed attempt like any other.
		x.s.metrics.step(st.Component, StepFailed, c.start)
		return err, nil
	}
	x.s.metrics.step(st.Component, c.state, c.start)
	x.rows[st.Name] = &row
	if last {
		x.succeeded()
	}
	if err := x.s.fault(FaultAfterStep, x.g.ID, st.Name); err != nil {
		return nil, err
	}
	if last {
		return nil, x.s.fault(FaultAfterFinish, x.g.ID, "")
	}
	return nil, nil
}

// closeTx ends a step transaction: the grant.succeeded event when the step is the last, and the
// fault hooks before the commit.
func (x *execution) closeTx(ctx context.Context, tx *sqldb.Tx, step string, last bool, row *stepRow) error {
	if last {
		rows := make(map[string]*stepRow, len(x.rows)+1)
		for k, v := range x.rows {
			rows[k] = v
		}
		rows[step] = row
		if err := x.emitSucceeded(ctx, tx, rows); err != nil {
			return err
		}
	}
	if err := x.s.fault(FaultInStepTx, x.g.ID, step); err != nil {
		return err
	}
	if last {
		return x.s.fault(FaultBeforeFinish, x.g.ID, "")
	}
	return nil
}

// hold checks, inside tx, that this execution still holds the grant and renews its lease; when
// final, it makes the grant succeeded instead.
func (x *execution) hold(ctx context.Context, tx *sqldb.Tx, final bool) error {
	now := x.s.now()
	g := x.g
	var (
		res interface{ RowsAffected() (int64, error) }
		err error
	)
	if final {
		res, err = tx.Exec(ctx, `UPDATE reward_grants SET state = 'succeeded', claimed_by = '', claimed_until = 0,
			next_attempt_at = 0, last_error = '', updated_at = $1, completed_at = $1
			WHERE tenant_id = $2 AND user_id = $3 AND id = $4 AND state = 'running' AND claimed_by = $5`,
			sqldb.Micros(now), g.TenantID, g.UserID, g.ID, x.token)
	} else {
		lease := sqldb.Micros(now.Add(x.s.opts.Lease))
		res, err = tx.Exec(ctx, `UPDATE reward_grants SET claimed_until = $1, next_attempt_at = $1, updated_at = $2
			WHERE tenant_id = $3 AND user_id = $4 AND id = $5 AND state = 'running' AND claimed_by = $6`,
			lease, sqldb.Micros(now), g.TenantID, g.UserID, g.ID, x.token)
	}
	if err != nil {
		return fmt.Errorf("reward: hold grant %s: %w", g.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return errors.Join(errLeaseLost, err)
	}
	return nil
}

// succeeded records locally that the grant's final transition committed.
func (x *execution) succeeded() {
	now := x.s.now()
	x.finished = true
	x.g.State, x.g.NextAttemptAt, x.g.LastError, x.g.CompletedAt, x.g.UpdatedAt = StateSucceeded, nil, "", &now, now
	x.s.metrics.transition(StateSucceeded)
}

func (x *execution) emitSucceeded(ctx context.Context, tx *sqldb.Tx, rows map[string]*stepRow) error {
	g := x.g
	g.State, g.LastError = StateSucceeded, ""
	return x.s.emit(ctx, tx, EventSucceeded, g, x.f.merge(rows))
}

// finish makes the grant succeeded on its own (every step was done before this run).
func (x *execution) finish(ctx context.Context) error {
	err := x.s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		if err := x.hold(ctx, tx, true); err != nil {
			return err
		}
		if err := x.emitSucceeded(ctx, tx, x.rows); err != nil {
			return err
		}
		return x.s.fault(FaultBeforeFinish, x.g.ID, "")
	})
	if err != nil {
		return err
	}
	x.succeeded()
	return x.s.fault(FaultAfterFinish, x.g.ID, "")
}

// park releases the grant while steps wait for their confirmations: pending again, due at the
// earliest recheck. Steps confirmed meanwhile (the grant row serialises with Callback) finish it.
func (x *execution) park(ctx context.Context) error {
	at := x.recheck
	if at.IsZero() {
		at = x.s.now().Add(x.s.opts.RetryBase)
	}
	now := x.s.now()
	g := x.g
	finished := false
	err := x.s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		finished = false
		res, err := tx.Exec(ctx, `UPDATE reward_grants SET state = 'pending', claimed_by = '', claimed_until = 0,
			next_attempt_at = $1, updated_at = $2
			WHERE tenant_id = $3 AND user_id = $4 AND id = $5 AND state = 'running' AND claimed_by = $6`,
			sqldb.Micros(at), sqldb.Micros(now), g.TenantID, g.UserID, g.ID, x.token)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errors.Join(errLeaseLost, err)
		}
		rows, err := loadSteps(ctx, tx, g)
		if err != nil || !x.allDone(rows, -1) {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE reward_grants SET state = 'succeeded', next_attempt_at = 0, last_error = '',
			completed_at = $1 WHERE tenant_id = $2 AND user_id = $3 AND id = $4`,
			sqldb.Micros(now), g.TenantID, g.UserID, g.ID); err != nil {
			return err
		}
		finished = true
		return x.emitSucceeded(ctx, tx, rows)
	})
	if err != nil {
		return err
	}
	if finished {
		x.succeeded()
		return nil
	}
	x.g.State, x.g.NextAttemptAt, x.g.UpdatedAt = StatePending, &at, now
	x.s.metrics.transition(StatePending)
	return nil
}

// fail records a failed attempt: the grant goes failed (retried after a backoff) or, out of
// attempts, dead — compensating its succeeded steps in the same transaction. i is the failing step
// (-1 for the grant as a whole).
func (x *execution) fail(ctx context.Context, i int, cause error) error {
	name, component := "", ""
	var policy *RetryPolicy
	var prev *stepRow
	if i >= 0 {
		st := x.f.spec.Steps[i]
		name, component, policy, prev = st.Name, st.Component, st.Retry, x.rows[st.Name]
	}
	if err := x.s.fault(FaultBeforeFail, x.g.ID, name); err != nil {
		return err
	}
	attempts := x.g.Attempts + 1
	stepAttempts := 1
	if prev != nil {
		stepAttempts = prev.attempts + 1
	}
	dead := attempts >= x.g.MaxAttempts || (policy != nil && policy.MaxAttempts > 0 && stepAttempts >= policy.MaxAttempts)
	base := x.s.opts.RetryBase
	if policy != nil && policy.BackoffSeconds > 0 {
		base = time.Duration(policy.BackoffSeconds) * time.Second
	}
	now := x.s.now()
	next := now.Add(x.s.backoff(attempts, base))
	msg := truncate(cause.Error(), 1000)
	if name != "" {
		msg = truncate("step "+name+": "+cause.Error(), 1000)
	}
	state := StateFailed
	if dead {
		state = StateDead
	}
	err := x.s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		x.g.LastError = msg
		if err := x.recordFailure(ctx, tx, state, next, now); err != nil {
			return err
		}
		if name != "" {
			if _, err := writeStep(ctx, tx, stepWrite{g: x.g, name: name, component: component, state: StepFailed,
				failed: true, lastError: truncate(cause.Error(), 1000), now: now}); err != nil {
				return err
			}
		}
		g := x.g
		g.State, g.Attempts = state, attempts
		if !dead {
			return x.s.emit(ctx, tx, EventFailed, g, nil)
		}
		if note := x.compensate(ctx, tx); note != "" {
			g.LastError = truncate(msg+"; "+note, 1000)
			if _, err := tx.Exec(ctx, `UPDATE reward_grants SET last_error = $1 WHERE tenant_id = $2 AND user_id = $3 AND id = $4`,
				g.LastError, g.TenantID, g.UserID, g.ID); err != nil {
				return err
			}
			x.g.LastError = g.LastError
		}
		return x.s.emit(ctx, tx, EventDead, g, nil)
	})
	if err != nil {
		return err
	}
	x.g.State, x.g.Attempts, x.g.UpdatedAt = state, attempts, now
	x.g.NextAttemptAt = nil
	if !dead {
		x.g.NextAttemptAt = &next
	}
	x.s.metrics.transition(state)
	x.s.log.Info("reward: grant attempt failed", "grant", x.g.ID, "state", state, "attempts", attempts, "err", msg)
	return nil
}

func (x *execution) recordFailure(ctx context.Context, tx *sqldb.Tx, state State, next, now time.Time) error {
	g := x.g
	completed := any(nil)
	nextAt := sqldb.Micros(next)
	if state == StateDead {
		completed, nextAt = sqldb.Micros(now), 0
	}
	res, err := tx.Exec(ctx, `UPDATE reward_grants SET state = $1, attempts = attempts + 1, next_attempt_at = $2,
		last_error = $3, claimed_by = '', claimed_until = 0, updated_at = $4, completed_at = $5
		WHERE tenant_id = $6 AND user_id = $7 AND id = $8 AND state = 'running' AND claimed_by = $9`,
		string(state), nextAt, g.LastError, sqldb.Micros(now), completed, g.TenantID, g.UserID, g.ID, x.token)
	if err != nil {
		return fmt.Errorf("reward: record failure of %s: %w", g.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return errors.Join(errLeaseLost, err)
	}
	return nil
}

// compensate runs, in reverse order, the compensation of every succeeded step that has one, each
// under a savepoint so that a failing compensation leaves the others (and the dead transition)
// standing. It returns a note about the failures ("" when none).
func (x *execution) compensate(ctx context.Context, tx *sqldb.Tx) string {
	if x.f == nil {
		return "" // the flow could not be loaded: nothing is known to compensate
	}
	var note string
	for k := len(x.f.order) - 1; k >= 0; k-- {
		i := x.f.order[k]
		st, comp := x.f.spec.Steps[i], x.f.comp[i]
		if comp == nil || x.state(i) != StepSucceeded {
			continue
		}
		sc := x.stepContext(i, tx)
		sc.Params, sc.Key = st.Compensate.Params, sc.Key+"/compensate"
		if err := x.compensateOne(ctx, tx, st, comp, sc); err != nil {
			note += fmt.Sprintf("compensation of %s failed: %v; ", st.Name, err)
		}
	}
	return truncate(note, 500)
}

func (x *execution) compensateOne(ctx context.Context, tx *sqldb.Tx, st StepSpec, comp TxComponent, sc StepContext) error {
	return tx.Savepoint(ctx, "reward_compensate", func() error {
		out, err := runTx(ctx, comp, sc)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE reward_steps SET state = 'compensated', output = $1, updated_at = $2
			WHERE tenant_id = $3 AND user_id = $4 AND grant_id = $5 AND step = $6`,
			string(mustJSON(map[string]json.RawMessage{"compensation": nonEmpty(out)})), sqldb.Micros(sc.Now),
			x.g.TenantID, x.g.UserID, x.g.ID, st.Name)
		return err
	})
}

func nonEmpty(out json.RawMessage) json.RawMessage {
	if len(out) == 0 {
		return json.RawMessage(`{}`)
	}
	return out
}

// backoff is the delay before attempt n+1: base doubled per failed attempt, capped, with equal
// jitter (half fixed, half random), so a burst of failures does not retry in lockstep.
func (s *Service) backoff(attempts int, base time.Duration) time.Duration {
	d := s.opts.MaxBackoff
	if attempts-1 < 30 {
		d = min(base<<(attempts-1), s.opts.MaxBackoff)
	}
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// stepContext builds what a component gets for step i.
func (x *execution) stepContext(i int, tx *sqldb.Tx) StepContext {
	st := x.f.spec.Steps[i]
	sc := StepContext{Tx: tx, Grant: x.g, Step: st.Name, Params: st.Params, Key: x.g.ID + "/" + st.Name,
		Attempt: 1, Now: x.s.now()}
	if r := x.rows[st.Name]; r != nil {
		sc.Attempt = r.attempts + 1
		if r.state == StepWaiting && r.waitUntil > 0 {
			sc.WaitUntil = sqldb.FromMicros(r.waitUntil)
		}
	}
	return sc
}

// vars is the grant as a step condition sees it.
func (x *execution) vars() map[string]any {
	steps := map[string]any{}
	for name, r := range x.rows {
		var out any = map[string]any{}
		if len(r.output) > 0 {
			if v, err := rules.DecodeJSON(r.output); err == nil {
				out = v
			}
		}
		steps[name] = map[string]any{"state": string(r.state), "output": out}
	}
	g := x.g
	return map[string]any{"id": g.ID, "tenant_id": g.TenantID, "user_id": g.UserID, "source_kind": g.SourceKind,
		"source_id": g.SourceID, "seq": int64(g.Seq), "flow": g.FlowKey, "flow_version": int64(g.FlowVersion),
		"attempts": int64(g.Attempts), "steps": steps}
}

// merge lists the flow's steps with their rows (pending where none).
func (f *flow) merge(rows map[string]*stepRow) []Step {
	out := make([]Step, 0, len(f.spec.Steps))
	seen := map[string]bool{}
	for _, i := range f.order {
		st := f.spec.Steps[i]
		seen[st.Name] = true
		if r := rows[st.Name]; r != nil {
			out = append(out, r.step())
			continue
		}
		out = append(out, Step{Name: st.Name, Component: st.Component, State: StepPending})
	}
	for _, name := range sortedKeys(rows) {
		if !seen[name] {
			out = append(out, rows[name].step())
		}
	}
	return out
}

// fault calls the Fault hook, if any.
func (s *Service) fault(p FaultPoint, grantID, step string) error {
	if s.opts.Fault == nil {
		return nil
	}
	if err := s.opts.Fault(Fault{Point: p, GrantID: grantID, Step: step}); err != nil {
		return crashError{err}
	}
	return nil
}

// runTx runs a TxComponent, turning a panic into an error.
func runTx(ctx context.Context, c TxComponent, sc StepContext) (out json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("component %s panicked: %v\n%s", c.Name(), p, debug.Stack())
		}
	}()
	return c.RunTx(ctx, sc)
}

// runTxBatch runs a batchTxComponent, turning a panic into an error.
func runTxBatch(ctx context.Context, c batchTxComponent, scs []StepContext) (outs []json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("component %s panicked: %v\n%s", c.Name(), p, debug.Stack())
		}
	}()
	outs, err = c.runTxBatch(ctx, scs[0].Tx, scs)
	if err == nil && len(outs) != len(scs) {
		err = fmt.Errorf("component %s returned %d outputs for %d steps", c.Name(), len(outs), len(scs))
	}
	return outs, err
}

// runCall runs a CallComponent, turning a panic into an error.
func runCall(ctx context.Context, c CallComponent, sc StepContext) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("component %s panicked: %v\n%s", c.Name(), p, debug.Stack())
		}
	}()
	return c.Run(ctx, sc)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
