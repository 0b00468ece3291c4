package reward

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/rules"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// The fast path: Create of a grant whose flow only writes to the database (every inline reward
// list, and flows without call_external) needs no claim, no lease and no step-by-step commits.
// Concurrent Creates are coalesced by a group committer, and each batch runs in ONE transaction:
// for every grant, its row (already succeeded), its steps' effects and rows and its grant.created
// and grant.succeeded events. The batch commits or rolls back as a whole, so a crash anywhere
// leaves either every grant of the batch delivered or none of them written. A batch that fails
// (a step's error, a condition that cannot be evaluated) is rolled back and each of its grants
// takes the slow path, which records the failure and retries it.

// fastRequest is one Create for the group committer.
type fastRequest struct {
	g Grant
	f *flow
}

// fastResult is the outcome of one fastRequest. fallback: the batch could not apply it.
type fastResult struct {
	g        Grant
	created  bool
	fallback bool
}

// fastEligible reports whether every step of f writes to the database.
func (f *flow) fastEligible() bool {
	for _, c := range f.comps {
		if _, ok := c.(TxComponent); !ok {
			return false
		}
	}
	return true
}

// flushFast applies a batch of Creates in one transaction.
func (s *Service) flushFast(ctx context.Context, reqs []fastRequest) []ledger.Result[fastResult] {
	out := make([]ledger.Result[fastResult], len(reqs))
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		clear(out)
		for i, r := range reqs {
			res, err := s.applyFast(ctx, tx, r)
			if err != nil {
				return err
			}
			out[i] = res
		}
		return nil
	})
	if err != nil {
		for i := range out {
			out[i] = ledger.Result[fastResult]{Value: fastResult{fallback: true}}
			if stops(err) {
				out[i].Err = err // the process "died" with the batch in hand
			}
		}
		if !stops(err) {
			s.log.Info("reward: a batch of grants failed; each takes the slow path", "grants", len(reqs), "err", err)
		}
		return out
	}
	for _, r := range out {
		if r.Err == nil && r.Value.created {
			s.metrics.transition(StatePending)
			s.metrics.transition(StateSucceeded)
		}
	}
	for _, r := range out {
		if r.Err == nil && r.Value.created {
			if err := s.fault(FaultAfterFinish, r.Value.g.ID, ""); err != nil {
				for i := range out {
					out[i].Err = err
				}
				break
			}
		}
	}
	return out
}

// applyFast writes one grant and runs its whole flow in tx. A returned error fails the batch; a
// repeat of a source given to another user fails only its request.
func (s *Service) applyFast(ctx context.Context, tx *sqldb.Tx, r fastRequest) (ledger.Result[fastResult], error) {
	g := r.g
	g.State, g.NextAttemptAt, g.CompletedAt = StateSucceeded, nil, &g.CreatedAt
	inserted, err := insertGrant(ctx, tx, g)
	if err != nil {
		return ledger.Result[fastResult]{}, fmt.Errorf("reward: create grant: %w", err)
	}
	if !inserted {
		existing, err := grantBySource(ctx, tx, g.TenantID, g.SourceKind, g.SourceID, g.Seq)
		if err != nil {
			return ledger.Result[fastResult]{}, fmt.Errorf("reward: create grant: %w", err)
		}
		if existing.UserID != g.UserID {
			return ledger.Result[fastResult]{Err: sourceConflict(g, existing)}, nil
		}
		return ledger.Result[fastResult]{Value: fastResult{g: existing}}, nil
	}
	created := g
	created.State, created.CompletedAt = StatePending, nil
	if err := s.emit(ctx, tx, EventCreated, created, nil); err != nil {
		return ledger.Result[fastResult]{}, err
	}
	x := &execution{s: s, g: g, f: r.f, rows: map[string]*stepRow{}}
	x.g.State = StateRunning
	if x.params, err = rules.DecodeJSON(g.Params); err != nil {
		return ledger.Result[fastResult]{}, err
	}
	for _, i := range r.f.order {
		if err := x.applyStep(ctx, tx, i); err != nil {
			return ledger.Result[fastResult]{}, err
		}
	}
	g.Steps = r.f.merge(x.rows)
	if err := s.emit(ctx, tx, EventSucceeded, g, g.Steps); err != nil {
		return ledger.Result[fastResult]{}, err
	}
	if err := s.fault(FaultBeforeFinish, g.ID, ""); err != nil {
		return ledger.Result[fastResult]{}, err
	}
	return ledger.Result[fastResult]{Value: fastResult{g: g, created: true}}, nil
}

// applyStep runs step i of a fast-path grant in tx: its condition, its effect, its row.
func (x *execution) applyStep(ctx context.Context, tx *sqldb.Tx, i int) error {
	st := x.f.spec.Steps[i]
	if err := x.s.fault(FaultBeforeStep, x.g.ID, st.Name); err != nil {
		return err
	}
	state := StepSucceeded
	if prog := x.f.when[i]; prog != nil {
		ok, err := prog.EvalBool(ctx, map[string]any{"params": x.params, "grant": x.vars()})
		if err != nil {
			return fmt.Errorf("step %s: condition: %w", st.Name, err)
		}
		if !ok {
			state = StepSkipped
		}
	}
	var out json.RawMessage
	if state == StepSucceeded {
		var err error
		if out, err = runTx(ctx, x.f.comps[i].(TxComponent), x.stepContext(i, tx)); err != nil {
			return fmt.Errorf("step %s: %w", st.Name, err)
		}
	}
	now := x.s.now()
	if _, err := writeStep(ctx, tx, stepWrite{g: x.g, name: st.Name, component: st.Component, state: state,
		output: out, now: now}); err != nil {
		return err
	}
	x.rows[st.Name] = &stepRow{name: st.Name, component: st.Component, state: state, output: out,
		updatedAt: sqldb.Micros(now)}
	return x.s.fault(FaultInStepTx, x.g.ID, st.Name)
}

func sourceConflict(g, existing Grant) error {
	return problem.Conflict("source %s %s (seq %d) was granted to another user", g.SourceKind, g.SourceID, g.Seq).
		WithCode("grant-source-conflict").With("grant_id", existing.ID)
}
