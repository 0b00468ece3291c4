package reward

import (
	"context"
	"errors"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// Creating many grants in the caller's transaction: a module that applies a batch of events (the
// task center) prepares the grants the batch earns while it applies them (Prepare: checked, with
// their ids), then writes them all at once (CreateManyTx). Grants whose flow only writes to the
// database are delivered right there, set-based as on the fast path, under a savepoint: the
// caller's single commit writes them succeeded with their effects. If that delivery fails (a
// coupon sold out, a condition that cannot be evaluated, a step's error), the savepoint is rolled
// back, the others are delivered without the failing grants, and those take the ordinary path —
// written pending and run right after the commit (ExecuteAfterCommit), retried by the sweeper
// when they fail — so a failing reward never fails the caller's transaction.

// Prepared is a grant checked by Prepare and not written yet.
type Prepared struct {
	g Grant
	f *flow
}

// ID is the id the grant gets when CreateManyTx writes it. A source that has a grant already keeps
// that grant: CreateManyTx then returns it, with its own id.
func (p Prepared) ID() string { return p.g.ID }

// Prepare checks a grant as CreateTx does (bad input is a problem Invalid with field paths) and
// returns it ready for CreateManyTx, without writing anything. It looks the flow up like CreateTx.
func (s *Service) Prepare(ctx context.Context, p CreateParams) (Prepared, error) {
	g, f, err := s.prepare(ctx, p)
	if err != nil {
		return Prepared{}, err
	}
	return Prepared{g: g, f: f}, nil
}

// CreateManyTx writes prepared grants in the caller's transaction and returns them, in order, as
// they stand in it. A grant whose flow only writes to the database (every inline reward list,
// flows without call_external) is delivered in tx: it is returned succeeded, with its steps, and
// its effects commit with the caller. Any other grant — and one whose delivery failed, which is
// rolled back to a savepoint — is written pending and run right after the commit (CreateTx then
// ExecuteAfterCommit); it is returned pending.
//
// As with CreateTx, a grant whose source exists already writes nothing and returns the existing
// grant (run after the commit if it is due), and a source granted to another user is a problem
// Conflict. An error (the store, or the Fault hook) leaves tx unusable: roll it back.
func (s *Service) CreateManyTx(ctx context.Context, tx *sqldb.Tx, ps []Prepared) ([]Grant, error) {
	out := make([]Grant, len(ps))
	done := make([]bool, len(ps))
	var fast []int
	for i, p := range ps {
		if p.f == nil {
			return nil, errors.New("reward: CreateManyTx takes grants from Prepare")
		}
		if p.f.fastEligible() {
			fast = append(fast, i)
		}
	}
	if len(fast) > 0 {
		delivered, err := s.deliverTx(ctx, tx, ps, fast)
		if err != nil {
			return nil, err
		}
		for n, i := range fast {
			if delivered[n].ID != "" {
				out[i], done[i] = delivered[n], true
			}
		}
	}
	for i, p := range ps {
		if done[i] {
			continue
		}
		g, created, err := s.insert(ctx, tx, p.g)
		if err != nil {
			return nil, err
		}
		if created || g.State == StatePending || g.State == StateFailed {
			if err := s.ExecuteAfterCommit(ctx, tx, g.ID); err != nil {
				return nil, err
			}
		}
		out[i] = g
	}
	return out, nil
}

// deliverTx writes and delivers the grants ps[idx] in tx (applyBatch) under a savepoint. It
// returns, per position in idx, the succeeded grant, or a zero Grant for one left to the ordinary
// path: a repeated source, or a grant that could not be delivered. A delivery that fails is rolled
// back to its savepoint and its grants are tried again in two halves, down to the grants that
// fail on their own, so one failing reward does not send the others of its batch the slow way.
// Errors that must fail the caller (the Fault hook, a lock conflict sqldb.Tx retries, the
// context) are returned.
func (s *Service) deliverTx(ctx context.Context, tx *sqldb.Tx, ps []Prepared, idx []int) ([]Grant, error) {
	reqs := make([]fastRequest, len(idx))
	for n, i := range idx {
		reqs[n] = fastRequest{g: ps[i].g, f: ps[i].f}
	}
	out := make([]Grant, len(reqs))
	if err := s.deliverPart(ctx, tx, reqs, out); err != nil {
		return nil, err
	}
	return out, nil
}

// deliverPart delivers reqs in tx under a savepoint, filling out (see deliverTx).
func (s *Service) deliverPart(ctx context.Context, tx *sqldb.Tx, reqs []fastRequest, out []Grant) error {
	res := make([]ledger.Result[fastResult], len(reqs))
	failed := tx.Savepoint(ctx, "reward_many", func() error { return s.applyBatch(ctx, tx, reqs, res) })
	if failed != nil {
		if stops(failed) || errors.Is(failed, sqldb.ErrBusy) || errors.Is(failed, sqldb.ErrSavepoint) ||
			ctx.Err() != nil {
			return failed
		}
		if len(reqs) == 1 {
			s.log.Info("reward: a grant could not be delivered in the caller's transaction; it takes the ordinary path",
				"grant", reqs[0].g.ID, "err", failed)
			return nil
		}
		half := len(reqs) / 2
		if err := s.deliverPart(ctx, tx, reqs[:half], out[:half]); err != nil {
			return err
		}
		return s.deliverPart(ctx, tx, reqs[half:], out[half:])
	}
	delivered := 0
	for n, r := range res {
		if r.Err == nil && r.Value.created {
			out[n] = r.Value.g
			delivered++
		}
	}
	tx.AfterCommit(func() {
		s.metrics.batch.Observe(float64(delivered))
		for range delivered {
			s.metrics.transition(StatePending)
			s.metrics.transition(StateSucceeded)
		}
	})
	return nil
}
