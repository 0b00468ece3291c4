package ledger_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

func (b *testBundle) hold(t *testing.T, user string, amount int64, key string, ttl time.Duration) ledger.Hold {
	t.Helper()
	h, created, err := b.svc.Hold(context.Background(), ledger.HoldParams{TenantID: shop, UserID: user,
		Asset: "points", Amount: amount, TTL: ttl, BusinessKey: key, SourceKind: "order", SourceID: key})
	require.NoError(t, err)
	require.True(t, created)
	return h
}

func TestHoldCapture(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.grant(t, alice, 30, "g-1", days(3))
		b.grant(t, alice, 70, "g-2", never)

		h := b.hold(t, alice, 50, "order-1", time.Minute)
		require.Equal(t, ledger.HoldActive, h.State)
		require.True(t, h.ExpiresAt.Equal(start.Add(time.Minute)))
		acct := b.account(t, alice)
		require.EqualValues(t, 100, acct.Balance)
		require.EqualValues(t, 50, acct.Held)
		require.EqualValues(t, 50, acct.Available)
		require.Zero(t, acct.ExpiringSoon, "the expiring lot is held, so it will not expire free")

		// The held part cannot be spent or held again.
		_, _, err := b.svc.Spend(ctx, ledger.SpendParams{TenantID: shop, UserID: alice, Asset: "points", Amount: 51, BusinessKey: "s-1"})
		pe := requireProblem(t, err, problem.KindConflict, "insufficient-balance")
		require.EqualValues(t, 50, pe.Extensions["available"])
		_, _, err = b.svc.Hold(ctx, ledger.HoldParams{TenantID: shop, UserID: alice, Asset: "points", Amount: 51, BusinessKey: "order-2"})
		requireProblem(t, err, problem.KindConflict, "insufficient-balance")

		// The same key returns the same hold; another hold under it is a conflict.
		again, created, err := b.svc.Hold(ctx, ledger.HoldParams{TenantID: shop, UserID: alice, Asset: "points", Amount: 50, BusinessKey: "order-1"})
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, h.ID, again.ID)
		_, _, err = b.svc.Hold(ctx, ledger.HoldParams{TenantID: shop, UserID: alice, Asset: "points", Amount: 5, BusinessKey: "order-1"})
		requireProblem(t, err, problem.KindConflict, "ledger-key-reused")

		// Capture: a spend of the held points, from the earliest lot first.
		got, e, err := b.svc.Capture(ctx, ledger.CaptureParams{TenantID: shop, HoldID: h.ID})
		require.NoError(t, err)
		require.Equal(t, ledger.HoldCaptured, got.State)
		require.EqualValues(t, 50, got.Captured)
		require.Equal(t, e.ID, got.EntryID)
		require.Equal(t, ledger.KindCapture, e.Kind)
		require.Equal(t, h.ID, e.HoldID)
		require.Equal(t, "order", e.SourceKind)
		require.EqualValues(t, -50, e.Delta)
		require.Equal(t, []int64{50}, b.remaining(t, alice))
		acct = b.account(t, alice)
		require.EqualValues(t, 50, acct.Balance)
		require.Zero(t, acct.Held)

		// Capturing again returns the same entry; releasing a captured hold is refused.
		_, e2, err := b.svc.Capture(ctx, ledger.CaptureParams{TenantID: shop, HoldID: h.ID})
		require.NoError(t, err)
		require.Equal(t, e.ID, e2.ID)
		_, err = b.svc.Release(ctx, shop, h.ID)
		pe = requireProblem(t, err, problem.KindConflict, "hold-not-active")
		require.Equal(t, "captured", pe.Extensions["state"])

		// A hold of another tenant is not found.
		_, _, err = b.svc.Capture(ctx, ledger.CaptureParams{TenantID: other, HoldID: h.ID})
		requireProblem(t, err, problem.KindNotFound, "hold-not-found")
		require.Equal(t, ledger.Liability{Asset: "points", Outstanding: 50, Issued: 100, Spent: 50}, b.liability(t))
	})
}

func TestHoldPartialCaptureAndRelease(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.grant(t, alice, 10, "g-1", days(1))
		b.grant(t, alice, 10, "g-2", days(2))
		b.grant(t, alice, 10, "g-3", days(3))

		h := b.hold(t, alice, 25, "order-1", time.Hour) // 10 + 10 + 5
		_, _, err := b.svc.Capture(ctx, ledger.CaptureParams{TenantID: shop, HoldID: h.ID, Amount: 26})
		pe := requireProblem(t, err, problem.KindInvalid, "")
		require.Equal(t, []string{"amount"}, fieldPaths(pe))
		got, e, err := b.svc.Capture(ctx, ledger.CaptureParams{TenantID: shop, HoldID: h.ID, Amount: 15})
		require.NoError(t, err)
		require.EqualValues(t, 15, got.Captured)
		require.EqualValues(t, 15, e.Amount)
		// 15 taken from the first lots, the other 10 released.
		require.Equal(t, []int64{5, 10}, b.remaining(t, alice))
		acct := b.account(t, alice)
		require.EqualValues(t, 15, acct.Balance)
		require.EqualValues(t, 15, acct.Available)

		h2 := b.hold(t, alice, 12, "order-2", time.Hour)
		require.EqualValues(t, 3, b.account(t, alice).Available)
		rel, err := b.svc.Release(ctx, shop, h2.ID)
		require.NoError(t, err)
		require.Equal(t, ledger.HoldReleased, rel.State)
		require.NotNil(t, rel.SettledAt)
		rel2, err := b.svc.Release(ctx, shop, h2.ID) // idempotent
		require.NoError(t, err)
		require.Equal(t, ledger.HoldReleased, rel2.State)
		_, _, err = b.svc.Capture(ctx, ledger.CaptureParams{TenantID: shop, HoldID: h2.ID})
		pe = requireProblem(t, err, problem.KindConflict, "hold-not-active")
		require.Equal(t, "released", pe.Extensions["state"])
		acct = b.account(t, alice)
		require.EqualValues(t, 15, acct.Available)
		require.Zero(t, acct.Held)

		_, err = b.svc.Release(ctx, shop, "hld_nope")
		requireProblem(t, err, problem.KindNotFound, "hold-not-found")
	})
}

func TestHoldTTL(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.grant(t, alice, 100, "g-1", never)
		b.grant(t, bob, 100, "g-2", never)
		short := b.hold(t, alice, 30, "order-1", time.Minute)
		long := b.hold(t, alice, 20, "order-2", time.Hour)
		late := b.hold(t, bob, 40, "order-3", time.Minute)

		n, err := b.svc.ReleaseExpiredHolds(ctx, 10)
		require.NoError(t, err)
		require.Zero(t, n, "nothing is due yet")

		b.clock.Advance(2 * time.Minute)
		// Capturing a hold past its TTL is refused, and releases it.
		_, _, err = b.svc.Capture(ctx, ledger.CaptureParams{TenantID: shop, HoldID: late.ID})
		requireProblem(t, err, problem.KindConflict, "hold-expired")
		got, err := b.svc.GetHold(ctx, shop, late.ID)
		require.NoError(t, err)
		require.Equal(t, ledger.HoldExpired, got.State)
		require.EqualValues(t, 100, b.account(t, bob).Available)

		// Two sweeps at once release the due hold once.
		var wg sync.WaitGroup
		counts := make([]int, 2)
		for i := range counts {
			wg.Go(func() {
				var err error
				counts[i], err = b.svc.ReleaseExpiredHolds(ctx, 10)
				assertNoError(t, err)
			})
		}
		wg.Wait()
		require.Equal(t, 1, counts[0]+counts[1])
		got, err = b.svc.GetHold(ctx, shop, short.ID)
		require.NoError(t, err)
		require.Equal(t, ledger.HoldExpired, got.State)
		got, err = b.svc.GetHold(ctx, shop, long.ID)
		require.NoError(t, err)
		require.Equal(t, ledger.HoldActive, got.State)
		acct := b.account(t, alice)
		require.EqualValues(t, 20, acct.Held)
		require.EqualValues(t, 80, acct.Available)
		require.Equal(t, 2, b.counts(t)["ledger_entries"], "holds and releases post no entries")
	})
}

func TestHoldValidation(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.grant(t, alice, 100, "g-1", never)
		before := b.counts(t)
		for _, tc := range []struct {
			p     ledger.HoldParams
			paths []string
		}{
			{ledger.HoldParams{Asset: "points", Amount: 0, BusinessKey: "k"}, []string{"amount"}},
			{ledger.HoldParams{Asset: "gold", Amount: 1, BusinessKey: "k"}, []string{"asset"}},
			{ledger.HoldParams{Asset: "points", Amount: 1, BusinessKey: "k", TTL: time.Millisecond}, []string{"ttl"}},
			{ledger.HoldParams{Asset: "points", Amount: 1, BusinessKey: "k", TTL: 31 * 24 * time.Hour}, []string{"ttl"}},
			{ledger.HoldParams{Asset: "points", Amount: 1}, []string{"business_key"}},
		} {
			tc.p.TenantID, tc.p.UserID = shop, alice
			_, _, err := b.svc.Hold(ctx, tc.p)
			pe := requireProblem(t, err, problem.KindInvalid, "")
			require.Equal(t, tc.paths, fieldPaths(pe))
		}
		require.Equal(t, before, b.counts(t))
	})
}
