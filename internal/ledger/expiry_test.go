package ledger_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

func TestExpiryPolicies(t *testing.T) {
	t.Parallel()
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	require.NoError(t, err)
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		// 2026-03-31 20:00 UTC is already 2026-04-01 04:00 in Shanghai.
		b.clock.Set(time.Date(2026, 3, 31, 20, 0, 0, 0, time.UTC))
		fixed := time.Date(2026, 6, 1, 12, 30, 0, 0, time.UTC)
		for i, tc := range []struct {
			exp  ledger.Expiry
			loc  *time.Location
			want time.Time // zero: never
		}{
			{never, nil, time.Time{}},
			{ledger.Expiry{Policy: ledger.ExpireNever}, shanghai, time.Time{}},
			{ledger.Expiry{Policy: ledger.ExpireAt, At: fixed}, shanghai, fixed},
			// Through the end of the local day one day later.
			{days(1), nil, time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC)},
			{days(1), shanghai, time.Date(2026, 4, 3, 0, 0, 0, 0, shanghai)},
			{days(30), shanghai, time.Date(2026, 5, 2, 0, 0, 0, 0, shanghai)},
			{ledger.Expiry{Policy: ledger.ExpireEndOfMonth}, nil, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)},
			{ledger.Expiry{Policy: ledger.ExpireEndOfMonth}, shanghai, time.Date(2026, 5, 1, 0, 0, 0, 0, shanghai)},
			{ledger.Expiry{Policy: ledger.ExpireEndOfYear}, shanghai, time.Date(2027, 1, 1, 0, 0, 0, 0, shanghai)},
		} {
			e, _, err := b.svc.Grant(ctx, ledger.GrantParams{TenantID: shop, UserID: alice, Asset: "points", Amount: 1,
				BusinessKey: fmt.Sprintf("g-%d", i), Expiry: tc.exp, Location: tc.loc})
			require.NoError(t, err)
			if tc.want.IsZero() {
				require.Nil(t, e.LotExpiresAt, "%+v", tc.exp)
				continue
			}
			require.NotNil(t, e.LotExpiresAt, "%+v", tc.exp)
			require.True(t, tc.want.Equal(*e.LotExpiresAt), "%+v in %v: want %v, got %v", tc.exp, tc.loc, tc.want, e.LotExpiresAt)
		}
	})
}

func TestExpireDue(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.grant(t, alice, 10, "g-1", days(1))
		b.grant(t, alice, 20, "g-2", days(3))
		b.grant(t, alice, 30, "g-3", never)
		b.grant(t, bob, 5, "g-4", days(1))
		h := b.hold(t, bob, 3, "order-1", 24*time.Hour*30)

		n, err := b.svc.ExpireDue(ctx, 100)
		require.NoError(t, err)
		require.Zero(t, n, "nothing is due yet")

		b.clock.Advance(48 * time.Hour) // past the end of March 11
		var wg sync.WaitGroup
		counts := make([]int, 2)
		for i := range counts {
			wg.Go(func() {
				var err error
				counts[i], err = b.svc.ExpireDue(ctx, 100)
				assertNoError(t, err)
			})
		}
		wg.Wait()
		require.Equal(t, 2, counts[0]+counts[1], "one expiry for alice's lot, one for bob's free part")
		require.Equal(t, []int64{20, 30}, b.remaining(t, alice))
		require.EqualValues(t, 50, b.account(t, alice).Balance)
		acct := b.account(t, bob)
		require.EqualValues(t, 3, acct.Balance, "the held part does not expire while held")
		require.EqualValues(t, 3, acct.Held)

		page, err := b.svc.Entries(ctx, ledger.ListEntriesParams{TenantID: shop, UserID: alice})
		require.NoError(t, err)
		e := page.Items[0]
		require.Equal(t, ledger.KindExpire, e.Kind)
		require.Equal(t, ledger.AccountExpired, e.Credit)
		require.EqualValues(t, 10, e.Amount)
		require.NotNil(t, e.LotExpiresAt)
		require.True(t, strings.HasPrefix(e.BusinessKey, "ledger:expire:"))

		// Once the hold is released, what it held expires at the next sweep, once.
		_, err = b.svc.Release(ctx, shop, h.ID)
		require.NoError(t, err)
		n, err = b.svc.ExpireDue(ctx, 100)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Zero(t, b.account(t, bob).Balance)
		n, err = b.svc.ExpireDue(ctx, 100)
		require.NoError(t, err)
		require.Zero(t, n)

		require.Equal(t, ledger.Liability{Asset: "points", Outstanding: 50, Issued: 65, Expired: 15}, b.liability(t))
		require.Equal(t, 4+3, b.counts(t)["ledger_entries"])
	})
}

// TestExpirePaysDebtFirst: a debt left by an adjustment below zero is paid from the expiring lot
// before the rest of it expires.
func TestExpirePaysDebtFirst(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.grant(t, alice, 10, "g-1", days(1))
		_, _, err := b.svc.Adjust(ctx, ledger.AdjustParams{TenantID: shop, UserID: alice, Asset: "points", Amount: -15,
			Reason: "clawback of a refunded order", BusinessKey: "a-1", AllowNegative: true})
		require.NoError(t, err)
		b.grant(t, alice, 20, "g-2", days(1))
		require.Equal(t, []int64{-5, 20}, b.remaining(t, alice))
		acct := b.account(t, alice)
		require.EqualValues(t, 15, acct.Balance)
		require.EqualValues(t, 15, acct.ExpiringSoon, "the debt is paid from the expiring lot first")

		b.clock.Advance(72 * time.Hour)
		n, err := b.svc.ExpireDue(ctx, 10)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Zero(t, b.account(t, alice).Balance)
		require.Empty(t, b.remaining(t, alice))
		require.Equal(t, ledger.Liability{Asset: "points", Outstanding: 0, Issued: 30, Expired: 15, Adjusted: -15}, b.liability(t))
	})
}

func TestExpireDueLimit(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		for _, u := range []string{"u-1", "u-2", "u-3", "u-4", "u-5"} {
			b.grant(t, u, 4, "g-"+u, days(1))
		}
		b.clock.Advance(72 * time.Hour)
		total := 0
		for range 3 {
			n, err := b.svc.ExpireDue(ctx, 2)
			require.NoError(t, err)
			require.LessOrEqual(t, n, 2)
			total += n
		}
		require.Equal(t, 5, total)
		require.EqualValues(t, 20, b.liability(t).Expired)
	})
}

func TestExpiringSoon(t *testing.T) {
	t.Parallel()
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	require.NoError(t, err)
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		grant := func(amount int64, key string, exp ledger.Expiry) {
			_, _, err := b.svc.Grant(ctx, ledger.GrantParams{TenantID: shop, UserID: alice, Asset: "points",
				Amount: amount, BusinessKey: key, Expiry: exp, Location: shanghai})
			require.NoError(t, err)
		}
		// start is 17:00 on March 10 in Shanghai.
		grant(10, "g-1", days(1))                                        // through March 11
		grant(5, "g-2", days(1))                                         // same lot
		grant(20, "g-3", days(5))                                        // through March 15
		grant(40, "g-4", ledger.Expiry{Policy: ledger.ExpireEndOfMonth}) // through March 31
		grant(80, "g-5", days(45))                                       // through April 24
		grant(160, "g-6", never)
		b.spend(t, alice, 3, "s-1") // from the earliest lot

		got, err := b.svc.ExpiringSoon(ctx, ledger.ExpiringSoonParams{TenantID: shop, UserID: alice, Asset: "points",
			Within: 30 * 24 * time.Hour, Location: shanghai})
		require.NoError(t, err)
		require.Equal(t, []string{"2026-03-11", "2026-03-15", "2026-03-31"}, periods(got.Items))
		require.Equal(t, []int64{12, 20, 40}, amounts(got.Items))
		require.True(t, got.Items[0].ExpiresAt.Equal(time.Date(2026, 3, 12, 0, 0, 0, 0, shanghai)))
		require.True(t, got.Until.Equal(start.Add(30*24*time.Hour)))
		require.Equal(t, ledger.ByDay, got.By)

		got, err = b.svc.ExpiringSoon(ctx, ledger.ExpiringSoonParams{TenantID: shop, UserID: alice, Asset: "points",
			Within: 60 * 24 * time.Hour, By: ledger.ByMonth, Location: shanghai})
		require.NoError(t, err)
		require.Equal(t, []string{"2026-03", "2026-04"}, periods(got.Items))
		require.Equal(t, []int64{72, 80}, amounts(got.Items))

		// The account shows the default 30-day window.
		acct := b.account(t, alice)
		require.EqualValues(t, 72, acct.ExpiringSoon)
		require.True(t, acct.ExpiringBefore.Equal(start.Add(30*24*time.Hour)))

		_, err = b.svc.ExpiringSoon(ctx, ledger.ExpiringSoonParams{TenantID: shop, UserID: alice, Asset: "gold", By: "week"})
		pe := requireProblem(t, err, problem.KindInvalid, "")
		require.Equal(t, []string{"asset", "by"}, fieldPaths(pe))
	})
}

func periods(xs []ledger.Expiring) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.Period
	}
	return out
}

func amounts(xs []ledger.Expiring) []int64 {
	out := make([]int64, len(xs))
	for i, x := range xs {
		out[i] = x.Amount
	}
	return out
}
