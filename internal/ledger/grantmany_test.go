package ledger_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

func TestGrantManyTx(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		grant := func(user, key string, amount int64) ledger.GrantParams {
			return ledger.GrantParams{TenantID: shop, UserID: user, Asset: "points", Amount: amount, BusinessKey: key}
		}

		// Rolled back with the caller's transaction: nothing stays.
		boom := errors.New("caller failed later")
		err := db.Tx(ctx, func(tx *sqldb.Tx) error {
			_, created, err := b.svc.GrantManyTx(ctx, tx, []ledger.GrantParams{grant(alice, "k1", 5)})
			require.NoError(t, err)
			require.Equal(t, []bool{true}, created)
			return boom
		})
		require.ErrorIs(t, err, boom)
		require.Zero(t, b.counts(t)["ledger_entries"])

		// One entry already committed; a batch repeating it, repeating a key within itself, and new ones.
		var first ledger.Entry
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			first, _, err = b.svc.GrantTx(ctx, tx, grant(alice, "k1", 5))
			return err
		}))
		var entries []ledger.Entry
		var created []bool
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			entries, created, err = b.svc.GrantManyTx(ctx, tx, []ledger.GrantParams{grant(alice, "k1", 5),
				grant(bob, "k2", 7), grant(alice, "k3", 1), grant(bob, "k2", 7)})
			return err
		}))
		require.Equal(t, []bool{false, true, true, false}, created)
		require.Equal(t, first.ID, entries[0].ID)
		require.Equal(t, entries[1].ID, entries[3].ID, "a key repeated in the batch is posted once")
		require.NotEqual(t, entries[1].ID, entries[2].ID)
		require.EqualValues(t, 7, entries[1].Amount)
		require.EqualValues(t, 6, b.account(t, alice).Balance)
		require.EqualValues(t, 7, b.account(t, bob).Balance)
		require.EqualValues(t, 3, b.counts(t)["ledger_entries"])

		// A key reused for a different movement, or an invalid grant, fails the call.
		for _, ps := range [][]ledger.GrantParams{{grant(alice, "k4", 1), grant(alice, "k1", 6)},
			{grant(alice, "k4", 1), grant(bob, "k5", 9), grant(bob, "k5", 8)}} {
			err = db.Tx(ctx, func(tx *sqldb.Tx) error {
				_, _, err := b.svc.GrantManyTx(ctx, tx, ps)
				return err
			})
			requireProblem(t, err, problem.KindConflict, "ledger-key-reused")
		}
		err = db.Tx(ctx, func(tx *sqldb.Tx) error {
			_, _, err := b.svc.GrantManyTx(ctx, tx, []ledger.GrantParams{grant(alice, "k4", 1), grant(bob, "k6", 0)})
			return err
		})
		requireProblem(t, err, problem.KindInvalid, "")
		require.EqualValues(t, 3, b.counts(t)["ledger_entries"])
	})
}
