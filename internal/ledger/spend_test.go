package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

func TestSpendEarliestExpiryFirst(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		// Granted out of expiry order: never, 25 days (through April 4), end of month (March 31), 5 days.
		b.grant(t, alice, 100, "g-never", never)
		b.grant(t, alice, 30, "g-25d", days(25))
		b.grant(t, alice, 20, "g-eom", ledger.Expiry{Policy: ledger.ExpireEndOfMonth})
		b.grant(t, alice, 10, "g-5d", days(5))
		require.Equal(t, []int64{10, 20, 30, 100}, b.remaining(t, alice))

		e := b.spend(t, alice, 15, "s-1") // all of the 5-day lot, 5 of end of month
		require.Equal(t, ledger.KindSpend, e.Kind)
		require.Equal(t, alice, e.Debit)
		require.Equal(t, ledger.AccountSpent, e.Credit)
		require.EqualValues(t, -15, e.Delta)
		require.Equal(t, []int64{15, 30, 100}, b.remaining(t, alice))

		b.spend(t, alice, 50, "s-2") // the rest of end of month, all of 25 days, 5 of never
		require.Equal(t, []int64{95}, b.remaining(t, alice))
		require.EqualValues(t, 95, b.account(t, alice).Balance)

		// A repeated spend changes nothing.
		again, created, err := b.svc.Spend(context.Background(), ledger.SpendParams{TenantID: shop, UserID: alice,
			Asset: "points", Amount: 50, BusinessKey: "s-2"})
		require.NoError(t, err)
		require.False(t, created)
		require.EqualValues(t, 50, again.Amount)
		require.EqualValues(t, 95, b.account(t, alice).Balance)
		require.Equal(t, ledger.Liability{Asset: "points", Outstanding: 95, Issued: 160, Spent: 65}, b.liability(t))
	})
}

func TestSpendRefusedWritesNothing(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.grant(t, alice, 30, "g-1", days(3))
		before := b.counts(t)
		for _, tc := range []struct {
			name      string
			p         ledger.SpendParams
			available int64
		}{
			{"over balance", ledger.SpendParams{UserID: alice, Amount: 31}, 30},
			{"no account", ledger.SpendParams{UserID: bob, Amount: 1}, 0},
		} {
			tc.p.TenantID, tc.p.Asset, tc.p.BusinessKey = shop, "points", "s-"+tc.name[:2]
			_, _, err := b.svc.Spend(ctx, tc.p)
			pe := requireProblem(t, err, problem.KindConflict, "insufficient-balance")
			require.Equal(t, tc.available, pe.Extensions["available"], tc.name)
			// Inside a caller's transaction too, leaving it usable.
			require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
				_, _, err := b.svc.SpendTx(ctx, tx, tc.p)
				requireProblem(t, err, problem.KindConflict, "insufficient-balance")
				var n int
				return tx.QueryRow(ctx, `SELECT COUNT(*) FROM ledger_entries`).Scan(&n)
			}))
		}
		for _, tc := range []struct {
			name  string
			p     ledger.SpendParams
			paths []string
		}{
			{"zero", ledger.SpendParams{UserID: alice, Asset: "points", Amount: 0, BusinessKey: "k"}, []string{"amount"}},
			{"negative", ledger.SpendParams{UserID: alice, Asset: "points", Amount: -3, BusinessKey: "k"}, []string{"amount"}},
			{"unknown asset", ledger.SpendParams{UserID: alice, Asset: "gold", Amount: 3, BusinessKey: "k"}, []string{"asset"}},
			{"no key", ledger.SpendParams{UserID: alice, Asset: "points", Amount: 3}, []string{"business_key"}},
		} {
			tc.p.TenantID = shop
			_, _, err := b.svc.Spend(ctx, tc.p)
			pe := requireProblem(t, err, problem.KindInvalid, "")
			require.Equal(t, tc.paths, fieldPaths(pe), tc.name)
		}
		require.Equal(t, before, b.counts(t))
		require.EqualValues(t, 30, b.account(t, alice).Balance)
	})
}

func TestConcurrentSpendsNeverOverdraw(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		// 100 points over three lots.
		b.grant(t, alice, 40, "g-1", days(2))
		b.grant(t, alice, 35, "g-2", days(9))
		b.grant(t, alice, 25, "g-3", never)
		var ok, refused atomic.Int32
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				_, _, err := b.svc.Spend(ctx, ledger.SpendParams{TenantID: shop, UserID: alice, Asset: "points",
					Amount: 7, BusinessKey: fmt.Sprintf("s-%d", i)})
				if pe, isProblem := problem.As(err); isProblem && pe.Code == "insufficient-balance" {
					refused.Add(1)
					return
				}
				if assertNoError(t, err) {
					ok.Add(1)
				}
			})
		}
		wg.Wait()
		require.EqualValues(t, 14, ok.Load())
		require.EqualValues(t, 36, refused.Load())
		require.EqualValues(t, 2, b.account(t, alice).Balance)
		require.Equal(t, []int64{2}, b.remaining(t, alice))
		require.Equal(t, 3+14, b.counts(t)["ledger_entries"])
	})
}

func TestAdjust(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		adjust := func(amount int64, key string, allowNegative bool) (ledger.Entry, error) {
			e, _, err := b.svc.Adjust(ctx, ledger.AdjustParams{TenantID: shop, UserID: alice, Asset: "points",
				Amount: amount, Reason: "support ticket 42", BusinessKey: key, AllowNegative: allowNegative})
			return e, err
		}
		e, err := adjust(50, "a-1", false)
		require.NoError(t, err)
		require.Equal(t, ledger.AccountAdjustment, e.Debit)
		require.Equal(t, alice, e.Credit)
		require.EqualValues(t, 50, e.Delta)
		require.Equal(t, "support ticket 42", e.Reason)

		e, err = adjust(-20, "a-2", false)
		require.NoError(t, err)
		require.Equal(t, alice, e.Debit)
		require.EqualValues(t, 20, e.Amount)
		require.EqualValues(t, -20, e.Delta)
		require.EqualValues(t, 30, b.account(t, alice).Balance)

		// Below zero is refused unless allowed, and writes nothing.
		before := b.counts(t)
		_, err = adjust(-31, "a-3", false)
		pe := requireProblem(t, err, problem.KindConflict, "insufficient-balance")
		require.EqualValues(t, 30, pe.Extensions["available"])
		require.Equal(t, before, b.counts(t))

		// Allowed: the balance goes negative; the shortfall is a debt.
		_, err = adjust(-45, "a-4", true)
		require.NoError(t, err)
		require.EqualValues(t, -15, b.account(t, alice).Balance)
		require.Equal(t, []int64{-15}, b.remaining(t, alice))
		_, _, err = b.svc.Spend(ctx, ledger.SpendParams{TenantID: shop, UserID: alice, Asset: "points", Amount: 1, BusinessKey: "s-1"})
		requireProblem(t, err, problem.KindConflict, "insufficient-balance")

		// New points pay the debt first.
		b.grant(t, alice, 20, "g-1", days(3))
		acct := b.account(t, alice)
		require.EqualValues(t, 5, acct.Balance)
		require.EqualValues(t, 5, acct.Available)
		require.EqualValues(t, 5, acct.ExpiringSoon)
		b.spend(t, alice, 5, "s-2")
		require.Zero(t, b.account(t, alice).Balance)
		require.Equal(t, ledger.Liability{Asset: "points", Outstanding: 0, Issued: 20, Spent: 5, Adjusted: -15}, b.liability(t))

		// Validation: a reason is mandatory, zero is not an adjustment.
		before = b.counts(t)
		for _, tc := range []struct {
			p     ledger.AdjustParams
			paths []string
		}{
			{ledger.AdjustParams{Amount: 5, BusinessKey: "k"}, []string{"reason"}},
			{ledger.AdjustParams{Amount: 0, Reason: "x", BusinessKey: "k"}, []string{"amount"}},
			{ledger.AdjustParams{Amount: -ledger.MaxAmount - 1, Reason: "x", BusinessKey: "k"}, []string{"amount"}},
			{ledger.AdjustParams{Amount: 5, Reason: "x"}, []string{"business_key"}},
		} {
			tc.p.TenantID, tc.p.UserID, tc.p.Asset = shop, alice, "points"
			_, _, err := b.svc.Adjust(ctx, tc.p)
			pe := requireProblem(t, err, problem.KindInvalid, "")
			require.Equal(t, tc.paths, fieldPaths(pe))
		}
		tc := ledger.AdjustParams{TenantID: shop, UserID: alice, Asset: "diamonds", Amount: 5, Reason: "x", BusinessKey: "k"}
		_, _, err = b.svc.Adjust(ctx, tc)
		pe = requireProblem(t, err, problem.KindInvalid, "")
		require.Equal(t, []string{"asset"}, fieldPaths(pe))
		require.Equal(t, before, b.counts(t))
	})
}
