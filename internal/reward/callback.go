package reward

import (
	"context"
	"fmt"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// CallbackParams is a confirmation callback for a waiting step.
type CallbackParams struct {
	// TenantID scopes the grant; "" looks it up by id alone (the public callback route, which the
	// signature authenticates).
	TenantID string
	GrantID  string
	Step     string
	// Signature is the Perk-Signature header: "v1=<hex HMAC-SHA256 of <grant_id>.<step>.<body>>".
	Signature string
	Body      []byte
}

// Callback takes a merchant's signed confirmation of a step (call_external): the signature is
// checked with the step's secret (callback-signature-invalid otherwise); {"status":"done"} marks
// the step succeeded and runs the grant on at once; {"status":"failed"} makes the step's next
// attempt fail with the merchant's error. A repeated callback changes nothing.
func (s *Service) Callback(ctx context.Context, p CallbackParams) (Grant, error) {
	g, err := grantByID(ctx, s.db.Reader(), p.TenantID, p.GrantID)
	if err != nil {
		return Grant{}, err
	}
	f, err := s.flowOf(ctx, g)
	if err != nil {
		return Grant{}, err
	}
	i, ok := f.index[p.Step]
	if !ok {
		return Grant{}, problem.NotFound("grant %s has no step %q", g.ID, p.Step).WithCode("grant-step-not-found")
	}
	c, ok := f.comps[i].(Confirmer)
	if !ok {
		return Grant{}, problem.Conflict("step %q (%s) does not take callbacks", p.Step, f.spec.Steps[i].Component).
			WithCode("callback-not-expected")
	}
	rows, err := loadSteps(ctx, s.db.Reader(), g)
	if err != nil {
		return Grant{}, err
	}
	x := &execution{s: s, g: g, f: f, rows: rows}
	sc := x.stepContext(i, nil)
	res, confirmErr := c.Confirm(ctx, sc, p.Signature, p.Body)
	if _, isProblem := problem.As(confirmErr); isProblem {
		return Grant{}, confirmErr
	}
	if r := rows[p.Step]; r != nil && r.state.done() {
		return s.Get(ctx, g.TenantID, g.ID)
	}
	w := stepWrite{g: g, name: p.Step, component: f.spec.Steps[i].Component, now: s.now()}
	switch {
	case confirmErr != nil:
		// The step fails on its next run (its wait is over), counted against its attempts then.
		w.state, w.lastError, w.waitUntil = StepWaiting, truncate(confirmErr.Error(), 1000), 1
	case res.Done:
		w.state, w.output = StepSucceeded, nonEmpty(res.Output)
	default:
		return s.Get(ctx, g.TenantID, g.ID)
	}
	if err := s.db.Tx(ctx, func(tx *sqldb.Tx) error { return confirmStep(ctx, tx, w) }); err != nil {
		return Grant{}, fmt.Errorf("reward: callback for %s/%s: %w", g.ID, p.Step, err)
	}
	if _, err := s.execute(context.WithoutCancel(ctx), g.ID); err != nil {
		s.log.Warn("reward: execution after callback failed; the sweeper will replay the grant", "grant", g.ID, "err", err)
	}
	return s.Get(ctx, g.TenantID, g.ID)
}

// confirmStep writes a confirmed step and wakes its grant. The grant row is always touched, so
// the write serialises with an executor parking the grant (which then sees the step done).
func confirmStep(ctx context.Context, tx *sqldb.Tx, w stepWrite) error {
	now := sqldb.Micros(w.now)
	if _, err := tx.Exec(ctx, `UPDATE reward_grants SET updated_at = $1,
		next_attempt_at = CASE WHEN state IN ('pending', 'failed') THEN $1 ELSE next_attempt_at END
		WHERE tenant_id = $2 AND user_id = $3 AND id = $4`, now, w.g.TenantID, w.g.UserID, w.g.ID); err != nil {
		return err
	}
	_, err := writeStep(ctx, tx, w)
	return err
}

func isNotFound(err error) bool { return problem.Is(err, problem.KindNotFound) }
