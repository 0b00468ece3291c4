package reward

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/rules"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// The fast path: Create of a grant whose flow only writes to the database (every inline reward
// list, and flows without call_external) needs no claim, no lease and no step-by-step commits.
// Concurrent Creates are coalesced by a group committer, and each batch runs in ONE transaction:
// for every grant, its row (already succeeded), its steps' effects and rows and its grant.succeeded
// event. Such a grant never exists in any other state, so it has no grant.created event: nothing
// waits on it (the asynchronous executor would only find it done). The batch commits or rolls back as a whole, so a crash anywhere
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
		return s.applyBatch(ctx, tx, reqs, out)
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

// applyBatch writes a batch of grants and runs their flows in tx with set-based statements: one
// insert of the grants, then the flows' steps round by round (the k-th step of every grant
// together: one call per component that takes batches, one insert of the step rows), then one batch
// of grant.succeeded events. Events keep each grant's order: what its steps emit, then succeeded. A returned error fails the batch; a repeat of a source
// given to another user fails only its request.
func (s *Service) applyBatch(ctx context.Context, tx *sqldb.Tx, reqs []fastRequest, out []ledger.Result[fastResult]) error {
	gs := make([]Grant, len(reqs))
	for i, r := range reqs {
		gs[i] = r.g
		gs[i].State, gs[i].NextAttemptAt, gs[i].CompletedAt = StateSucceeded, nil, &gs[i].CreatedAt
	}
	inserted, err := s.insertGrants(ctx, tx, gs)
	if err != nil {
		return fmt.Errorf("reward: create grants: %w", err)
	}
	var xs []*execution
	for i, g := range gs {
		if !inserted[g.ID] {
			if out[i], err = s.repeated(ctx, tx, g); err != nil {
				return err
			}
			continue
		}
		x := &execution{s: s, g: g, f: reqs[i].f, rows: map[string]*stepRow{}, slot: i}
		x.g.State = StateRunning
		if x.params, err = rules.DecodeJSON(g.Params); err != nil {
			return err
		}
		xs = append(xs, x)
	}
	for k := 0; ; k++ {
		round := make([]*execution, 0, len(xs))
		for _, x := range xs {
			if k < len(x.f.order) {
				round = append(round, x)
			}
		}
		if len(round) == 0 {
			break
		}
		if err := s.applyRound(ctx, tx, round, k); err != nil {
			return err
		}
	}
	succeeded := make([]bus.Event, 0, len(xs))
	for _, x := range xs {
		g := gs[x.slot]
		g.Steps = x.f.merge(x.rows)
		succeeded = append(succeeded, s.event(EventSucceeded, g, g.Steps))
		if err := s.fault(FaultBeforeFinish, g.ID, ""); err != nil {
			return err
		}
		out[x.slot] = ledger.Result[fastResult]{Value: fastResult{g: g, created: true}}
	}
	return s.emitAll(ctx, tx, succeeded)
}

// repeated answers a fast-path Create whose source exists already (committed, or earlier in the
// batch): a Conflict when it was granted to another user, else a result the caller resolves on
// the slow path.
func (s *Service) repeated(ctx context.Context, tx *sqldb.Tx, g Grant) (ledger.Result[fastResult], error) {
	existing, err := grantBySource(ctx, tx, g.TenantID, g.SourceKind, g.SourceID, g.Seq)
	if err != nil {
		return ledger.Result[fastResult]{}, fmt.Errorf("reward: create grant: %w", err)
	}
	if existing.UserID != g.UserID {
		return ledger.Result[fastResult]{Err: sourceConflict(g, existing)}, nil
	}
	return ledger.Result[fastResult]{Value: fastResult{g: existing}}, nil
}

// applyRound runs the k-th step of every execution in round: conditions, effects (batched per
// component where the component takes batches), then the step rows in one insert.
func (s *Service) applyRound(ctx context.Context, tx *sqldb.Tx, round []*execution, k int) error {
	now := s.now()
	states := make([]StepState, len(round))
	outputs := make([]json.RawMessage, len(round))
	batches := map[string][]int{} // component → positions in round whose effect runs batched
	for j, x := range round {
		i := x.f.order[k]
		st := x.f.spec.Steps[i]
		if err := s.fault(FaultBeforeStep, x.g.ID, st.Name); err != nil {
			return err
		}
		states[j] = StepSucceeded
		if prog := x.f.when[i]; prog != nil {
			ok, err := prog.EvalBool(ctx, map[string]any{"params": x.params, "grant": x.vars()})
			if err != nil {
				return fmt.Errorf("step %s: condition: %w", st.Name, err)
			}
			if !ok {
				states[j] = StepSkipped
				continue
			}
		}
		if _, ok := x.f.comps[i].(batchTxComponent); ok {
			batches[st.Component] = append(batches[st.Component], j)
			continue
		}
		var err error
		if outputs[j], err = runTx(ctx, x.f.comps[i].(TxComponent), x.stepContext(i, tx)); err != nil {
			return fmt.Errorf("step %s: %w", st.Name, err)
		}
	}
	for _, js := range batches {
		c := round[js[0]].f.comps[round[js[0]].f.order[k]].(batchTxComponent)
		scs := make([]StepContext, len(js))
		for n, j := range js {
			scs[n] = round[j].stepContext(round[j].f.order[k], tx)
		}
		outs, err := runTxBatch(ctx, c, scs)
		if err != nil {
			return fmt.Errorf("step %s: %w", scs[0].Step, err)
		}
		for n, j := range js {
			outputs[j] = outs[n]
		}
	}
	rows := make([]stepInsert, len(round))
	for j, x := range round {
		st := x.f.spec.Steps[x.f.order[k]]
		rows[j] = stepInsert{g: &x.g, name: st.Name, component: st.Component, state: states[j], output: outputs[j]}
		x.rows[st.Name] = &stepRow{name: st.Name, component: st.Component, state: states[j], output: outputs[j],
			updatedAt: sqldb.Micros(now)}
	}
	if err := s.insertSteps(ctx, tx, rows, now); err != nil {
		return err
	}
	for _, x := range round {
		if err := s.fault(FaultInStepTx, x.g.ID, x.f.spec.Steps[x.f.order[k]].Name); err != nil {
			return err
		}
	}
	return nil
}

func sourceConflict(g, existing Grant) error {
	return problem.Conflict("source %s %s (seq %d) was granted to another user", g.SourceKind, g.SourceID, g.Seq).
		WithCode("grant-source-conflict").With("grant_id", existing.ID)
}
