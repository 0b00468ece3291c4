package reward_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/reward"
)

// createMany prepares ps and writes them with CreateManyTx in one transaction, which then fails
// with fail when it is not nil.
func (b *testBundle) createMany(t *testing.T, fail error, ps ...reward.CreateParams) ([]reward.Grant, error) {
	t.Helper()
	ctx := context.Background()
	prepared := make([]reward.Prepared, len(ps))
	for i, p := range ps {
		var err error
		prepared[i], err = b.svc.Prepare(ctx, p)
		require.NoError(t, err)
	}
	var out []reward.Grant
	err := b.db.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		if out, err = b.svc.CreateManyTx(ctx, tx, prepared); err != nil {
			return err
		}
		return fail
	})
	return out, err
}

// TestCreateManyDeliversInTheCallersTransaction: grants whose flow only writes to the database
// are delivered in the caller's transaction — succeeded, with their ledger entries and events,
// when it commits; nothing at all when it rolls back. A flow that calls out is written pending and
// runs right after the commit.
func TestCreateManyDeliversInTheCallersTransaction(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		m := newMerchant(t, "done")
		b.publishFlow(t, tenantA, "with-call", m.externalFlow(""))
		b.publishFlow(t, tenantA, "db-only", `{"steps":[
			{"name":"points","component":"grant_points","params":{"amount":2}},
			{"name":"growth","component":"grant_growth","params":{"amount":4},"when":"params.vip == true"}]}`)
		calls := pointsParams("u2", "m-3", 0)
		calls.Rewards, calls.Flow = nil, "with-call"
		flow := pointsParams("u3", "m-4", 0)
		flow.Rewards, flow.Flow, flow.Params = nil, "db-only", []byte(`{"vip":true}`)
		ps := []reward.CreateParams{pointsParams("u1", "m-1", 5), pointsParams("u1", "m-2", 7), calls, flow}

		// Rolled back with the caller: nothing is written.
		_, err := b.createMany(t, errors.New("the caller fails"), ps...)
		require.EqualError(t, err, "the caller fails")
		require.Zero(t, b.balance(t, tenantA, "u1", "points"))
		require.Zero(t, eventCount(t, db, reward.EventCreated, ""))
		calls0, _ := m.stats()
		require.Zero(t, calls0)

		gs, err := b.createMany(t, nil, ps...)
		require.NoError(t, err)
		require.Len(t, gs, 4)
		for _, i := range []int{0, 1, 3} {
			g := gs[i]
			require.Equal(t, reward.StateSucceeded, g.State, g.SourceID)
			require.NotNil(t, g.CompletedAt)
			require.Zero(t, eventCount(t, db, reward.EventCreated, g.ID), "delivered at once, never pending")
			require.Equal(t, 1, eventCount(t, db, reward.EventSucceeded, g.ID))
			stored, err := b.svc.Get(ctx, tenantA, g.ID)
			require.NoError(t, err)
			require.Equal(t, reward.StateSucceeded, stored.State)
			require.Equal(t, g.Steps, stored.Steps)
		}
		require.Equal(t, reward.StepSucceeded, gs[3].Steps[1].State, "the condition saw the params")
		require.EqualValues(t, 12, b.balance(t, tenantA, "u1", "points"))
		require.EqualValues(t, 2, b.balance(t, tenantA, "u3", "points"))
		require.EqualValues(t, 4, b.balance(t, tenantA, "u3", "growth"))

		// The flow that calls out was written pending and ran right after the commit.
		require.Equal(t, reward.StatePending, gs[2].State)
		g, err := b.svc.Get(ctx, tenantA, gs[2].ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, g.State)
		require.EqualValues(t, 10, b.balance(t, tenantA, "u2", "points"))
		b.verifyLedger(t)
	})
}

// TestCreateManyFallsBack: when a grant of the batch cannot be delivered in the caller's
// transaction (a step fails), the delivery is rolled back to its savepoint, the other grants are
// delivered without it, and it takes the ordinary path: written pending, run after the commit,
// left failed for the sweeper. The caller's own writes commit regardless.
func TestCreateManyFallsBack(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		fl := &flaky{failing: true}
		b := setup(t, db, withComponents(fl))
		ctx := context.Background()
		b.publishFlow(t, tenantA, "shaky", `{"steps":[
			{"name":"points","component":"grant_points","params":{"amount":1}},
			{"name":"shaky","component":"flaky"}]}`)
		shaky := pointsParams("u2", "f-2", 0)
		shaky.Rewards, shaky.Flow = nil, "shaky"

		var gs []reward.Grant
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			var prepared []reward.Prepared
			for _, p := range []reward.CreateParams{pointsParams("u1", "f-1", 5), pointsParams("u3", "f-3", 4), shaky,
				pointsParams("u1", "f-4", 6)} {
				pr, err := b.svc.Prepare(ctx, p)
				require.NoError(t, err)
				prepared = append(prepared, pr)
			}
			var err error
			if gs, err = b.svc.CreateManyTx(ctx, tx, prepared); err != nil {
				return err
			}
			// The caller's transaction is still usable after the rollback to the savepoint.
			_, err = tx.Exec(ctx, `UPDATE reward_grants SET params = $1 WHERE id = $2`, `{"note":"kept"}`, gs[0].ID)
			return err
		}))
		require.Equal(t, []reward.State{reward.StateSucceeded, reward.StateSucceeded, reward.StatePending,
			reward.StateSucceeded}, []reward.State{gs[0].State, gs[1].State, gs[2].State, gs[3].State})

		first, err := b.svc.Get(ctx, tenantA, gs[0].ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, first.State)
		require.JSONEq(t, `{"note":"kept"}`, string(first.Params))
		require.EqualValues(t, 11, b.balance(t, tenantA, "u1", "points"))
		require.EqualValues(t, 4, b.balance(t, tenantA, "u3", "points"))
		for _, g := range []reward.Grant{gs[0], gs[1], gs[3]} {
			require.Equal(t, 1, eventCount(t, db, reward.EventSucceeded, g.ID))
			require.Equal(t, 1, b.entries(t, tenantA, g.ID))
		}
		failed, err := b.svc.Get(ctx, tenantA, gs[2].ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateFailed, failed.State)
		owed, err := b.svc.Owed(ctx, tenantA, "u2")
		require.NoError(t, err)
		require.Len(t, owed, 1)
		require.Equal(t, 1, eventCount(t, db, reward.EventCreated, gs[2].ID), "the rolled-back delivery wrote no events")

		fl.set(false)
		b.clock.Advance(time.Hour)
		_, err = b.svc.Sweep(ctx, 0)
		require.NoError(t, err)
		failed, err = b.svc.Get(ctx, tenantA, gs[2].ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, failed.State)
		require.EqualValues(t, 1, b.balance(t, tenantA, "u2", "points"))
		require.Equal(t, 1, b.entries(t, tenantA, gs[2].ID))
		b.verifyLedger(t)
	})
}

// TestCreateManyRepeats: a source that has a grant (from an earlier call, or earlier in the same
// call) returns that grant and delivers nothing twice; a source granted to another user is a
// Conflict.
func TestCreateManyRepeats(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		first, err := b.createMany(t, nil, pointsParams("u1", "r-1", 5), pointsParams("u1", "r-1", 5))
		require.NoError(t, err)
		require.Equal(t, first[0].ID, first[1].ID)
		require.Equal(t, reward.StateSucceeded, first[1].State)

		again, err := b.createMany(t, nil, pointsParams("u1", "r-2", 3), pointsParams("u1", "r-1", 5))
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, again[0].State)
		require.Equal(t, first[0].ID, again[1].ID)
		require.Equal(t, reward.StateSucceeded, again[1].State)
		require.EqualValues(t, 8, b.balance(t, tenantA, "u1", "points"))
		require.Equal(t, 1, eventCount(t, db, reward.EventSucceeded, first[0].ID))
		require.Equal(t, 1, b.entries(t, tenantA, first[0].ID))

		_, err = b.createMany(t, nil, pointsParams("intruder", "r-1", 5))
		requireProblem(t, err, problem.KindConflict)
		g, err := b.svc.Get(ctx, tenantA, first[0].ID)
		require.NoError(t, err)
		require.Equal(t, "u1", g.UserID)
		b.verifyLedger(t)
	})
}

// TestCreateManyFault: the Fault hook inside the delivery stops it as a crash would: the
// caller's transaction fails and nothing is written.
func TestCreateManyFault(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		crash := errors.New("crash")
		b := setup(t, db, func(o *reward.Options) {
			o.Fault = func(f reward.Fault) error {
				if f.Point == reward.FaultBeforeFinish {
					return crash
				}
				return nil
			}
		})
		_, err := b.createMany(t, nil, pointsParams("u1", "c-1", 5))
		require.ErrorIs(t, err, crash)
		require.Zero(t, b.balance(t, tenantA, "u1", "points"))
		require.Zero(t, eventCount(t, db, reward.EventCreated, ""))
	})
}
