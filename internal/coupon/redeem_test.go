package coupon_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// lock locks coupons for an order on a cart of amount and fails the test on error.
func (b *testBundle) lock(t testing.TB, user, order string, amount int64, ids ...string) coupon.Redemption {
	t.Helper()
	r, err := b.svc.Lock(context.Background(), coupon.LockParams{TenantID: tenantA, UserID: user, OrderID: order,
		CouponIDs: ids, Cart: cart(amount)})
	require.NoError(t, err)
	return r
}

func TestExactlyOneOfAThousandConcurrentLocksWins(t *testing.T) {
	t.Parallel()
	runCounters(t, func(t *testing.T, db *sqldb.DB, mode counters) {
		b := setup(t, db, mode)
		ctx := context.Background()
		b.template(t, "save30", save30)
		id := b.issue(t, "save30", "u1")
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []coupon.Redemption
			others  = map[string]int{}
			start   = make(chan struct{})
		)
		for i := range 1000 {
			wg.Go(func() {
				<-start
				r, err := b.svc.Lock(ctx, coupon.LockParams{TenantID: tenantA, UserID: "u1", OrderID: fmt.Sprintf("o-%d", i),
					CouponIDs: []string{id}, Cart: cart(20000)})
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					winners = append(winners, r)
					return
				}
				if p, ok := problem.As(err); ok {
					others[p.Code]++
					return
				}
				others[err.Error()]++
			})
		}
		close(start)
		wg.Wait()
		require.Len(t, winners, 1, "%v", others)
		require.Equal(t, map[string]int{coupon.CodeUnavailable: 999}, others)
		require.EqualValues(t, 3000, winners[0].Discount)
		c := b.get(t, id)
		require.Equal(t, coupon.StateLocked, c.State)
		require.Equal(t, winners[0].ID, c.RedemptionID)
		require.Equal(t, 1, b.count(t, "redemptions", ""))
		require.Len(t, b.events(t, coupon.EventLocked), 1)
	})
}

func TestLockIsAllOrNone(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		ctx := context.Background()
		b.template(t, "ten-off", tenOff)
		b.template(t, "five-off", `{"type":"amount_off","amount":500,"validity":{"days":7},
			"stacking":{"mode":"group","group":"brand"},"title":{"en":"5 off"}}`)
		ten, five := b.issue(t, "ten-off", "u1"), b.issue(t, "five-off", "u1")
		first := b.lock(t, "u1", "o-1", 5000, ten)

		_, err := b.svc.Lock(ctx, coupon.LockParams{TenantID: tenantA, UserID: "u1", OrderID: "o-2",
			CouponIDs: []string{five, ten}, Cart: cart(5000)})
		p := requireProblem(t, err, problem.KindConflict, coupon.CodeUnavailable, "coupon_ids[1]")
		require.Len(t, p.Fields, 1)
		require.Equal(t, coupon.StateIssued, b.get(t, five).State, "nothing of the refused lock stays locked")
		require.Equal(t, first.ID, b.get(t, ten).RedemptionID)
		require.Equal(t, 1, b.count(t, "redemptions", ""))

		// Once the first order lets go, both lock together and the discount splits over them.
		_, err = b.svc.Release(ctx, tenantA, first.ID)
		require.NoError(t, err)
		both := b.lock(t, "u1", "o-2", 5000, five, ten)
		require.EqualValues(t, 1500, both.Discount)
		require.Len(t, both.Coupons, 2)
		require.EqualValues(t, 1000, b.get(t, ten).Discount)
		require.EqualValues(t, 500, b.get(t, five).Discount)
	})
}

func TestRedemptionTransitions(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		ctx := context.Background()
		b.template(t, "save30", save30)
		id := b.issue(t, "save30", "u1")
		r := b.lock(t, "u1", "o-1", 12000, id)
		require.Equal(t, coupon.RedemptionLocked, r.State)
		require.Equal(t, epoch.Add(coupon.DefaultLockTTL), r.LockExpiresAt)
		require.Equal(t, []qualify.Share{{Index: 0, SKU: "sku-1", Discount: 3000}}, r.Coupons[0].Split)

		_, err := b.svc.Rollback(ctx, coupon.RollbackParams{TenantID: tenantA, ID: r.ID})
		requireProblem(t, err, problem.KindConflict, coupon.CodeRedemptionState)

		b.clock.Advance(time.Minute)
		confirmed, err := b.svc.Confirm(ctx, tenantA, r.ID)
		require.NoError(t, err)
		require.Equal(t, coupon.RedemptionConfirmed, confirmed.State)
		require.Equal(t, epoch.Add(time.Minute), *confirmed.ConfirmedAt)
		again, err := b.svc.Confirm(ctx, tenantA, r.ID)
		require.NoError(t, err, "confirming twice is a no-op")
		require.Equal(t, confirmed, again)
		c := b.get(t, id)
		require.Equal(t, coupon.StateRedeemed, c.State)
		require.Equal(t, epoch.Add(time.Minute), *c.RedeemedAt)
		_, err = b.svc.Release(ctx, tenantA, r.ID)
		requireProblem(t, err, problem.KindConflict, coupon.CodeRedemptionState)

		rolled, err := b.svc.Rollback(ctx, coupon.RollbackParams{TenantID: tenantA, ID: r.ID})
		require.NoError(t, err)
		require.Equal(t, coupon.RedemptionRolledBack, rolled.State)
		require.Equal(t, []string{id}, rolled.Restored)
		c = b.get(t, id)
		require.Equal(t, coupon.StateIssued, c.State)
		require.Empty(t, c.RedemptionID)
		require.Nil(t, c.RedeemedAt)
		_, err = b.svc.Rollback(ctx, coupon.RollbackParams{TenantID: tenantA, ID: r.ID})
		require.NoError(t, err, "rolling back twice is a no-op")
		_, err = b.svc.Confirm(ctx, tenantA, r.ID)
		requireProblem(t, err, problem.KindConflict, coupon.CodeRedemptionState)

		got, err := b.svc.GetRedemption(ctx, tenantA, r.ID)
		require.NoError(t, err)
		require.Equal(t, rolled, got)

		// The restored coupon is usable again, for another order.
		r2 := b.lock(t, "u1", "o-2", 12000, id)
		released, err := b.svc.Release(ctx, tenantA, r2.ID)
		require.NoError(t, err)
		require.Equal(t, coupon.ReleaseByRequest, released.ReleaseReason)
		require.Equal(t, coupon.StateIssued, b.get(t, id).State)
		_, err = b.svc.Confirm(ctx, tenantA, r2.ID)
		requireProblem(t, err, problem.KindConflict, coupon.CodeRedemptionState)

		for typ, n := range map[string]int{coupon.EventLocked: 2, coupon.EventRedeemed: 1, coupon.EventRestored: 1,
			coupon.EventReleased: 1, coupon.EventRedemptionLocked: 2, coupon.EventRedemptionConfirmed: 1,
			coupon.EventRedemptionRolledBack: 1, coupon.EventRedemptionReleased: 1} {
			require.Len(t, b.events(t, typ), n, typ)
		}
		_, err = b.svc.Confirm(ctx, tenantA, "rdm_nope")
		requireProblem(t, err, problem.KindNotFound, coupon.CodeRedemptionNotFound)
		_, err = b.svc.GetRedemption(ctx, tenantB, r.ID)
		requireProblem(t, err, problem.KindNotFound, coupon.CodeRedemptionNotFound)
	})
}

func TestLocksAreReleasedWhenTheirTTLPasses(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		ctx := context.Background()
		b.template(t, "save30", save30)
		a, c := b.issue(t, "save30", "u1"), b.issue(t, "save30", "u2")
		ra, err := b.svc.Lock(ctx, coupon.LockParams{TenantID: tenantA, UserID: "u1", OrderID: "o-a", CouponIDs: []string{a},
			Cart: cart(10000), TTL: time.Minute})
		require.NoError(t, err)
		rc, err := b.svc.Lock(ctx, coupon.LockParams{TenantID: tenantA, UserID: "u2", OrderID: "o-c", CouponIDs: []string{c},
			Cart: cart(10000), TTL: time.Hour})
		require.NoError(t, err)

		n, err := b.svc.ReleaseExpired(ctx, 10)
		require.NoError(t, err)
		require.Zero(t, n, "nothing is due yet")
		b.clock.Advance(time.Minute)
		n, err = b.svc.ReleaseExpired(ctx, 10)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		got, err := b.svc.GetRedemption(ctx, tenantA, ra.ID)
		require.NoError(t, err)
		require.Equal(t, coupon.RedemptionReleased, got.State)
		require.Equal(t, coupon.ReleaseByTTL, got.ReleaseReason)
		require.Equal(t, coupon.StateIssued, b.get(t, a).State)
		_, err = b.svc.Confirm(ctx, tenantA, ra.ID)
		requireProblem(t, err, problem.KindConflict, coupon.CodeRedemptionState)

		// A confirmation that arrives after the TTL, before the sweeper, releases and refuses.
		b.clock.Advance(time.Hour)
		_, err = b.svc.Confirm(ctx, tenantA, rc.ID)
		requireProblem(t, err, problem.KindConflict, coupon.CodeRedemptionExpired)
		got, err = b.svc.GetRedemption(ctx, tenantA, rc.ID)
		require.NoError(t, err)
		require.Equal(t, coupon.ReleaseByTTL, got.ReleaseReason)
		require.Equal(t, coupon.StateIssued, b.get(t, c).State)
	})
}

func TestARepeatedLockAnswersTheSameRedemption(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		ctx := context.Background()
		b.template(t, "save30", save30)
		id := b.issue(t, "save30", "u1")
		p := coupon.LockParams{TenantID: tenantA, UserID: "u1", OrderID: "o-1", CouponIDs: []string{id}, Cart: cart(15000)}
		first, err := b.svc.Lock(ctx, p)
		require.NoError(t, err)
		again, err := b.svc.Lock(ctx, p)
		require.NoError(t, err)
		require.Equal(t, first, again)

		p.Cart = cart(16000)
		_, err = b.svc.Lock(ctx, p)
		e := requireProblem(t, err, problem.KindConflict, coupon.CodeOrderConflict)
		require.Equal(t, first.ID, e.Extensions["redemption_id"])
		require.Equal(t, 1, b.count(t, "redemptions", ""))
	})
}

func TestBadLockRequestsChangeNothing(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		ctx := context.Background()
		b.template(t, "save30", save30)
		id := b.issue(t, "save30", "u1")
		theirs := b.issue(t, "save30", "u2")
		ok := coupon.LockParams{TenantID: tenantA, UserID: "u1", OrderID: "o-1", CouponIDs: []string{id}, Cart: cart(15000)}
		for name, tc := range map[string]struct {
			edit   func(p *coupon.LockParams)
			kind   problem.Kind
			code   string
			fields []string
		}{
			"empty cart": {func(p *coupon.LockParams) { p.Cart = qualify.Cart{} }, problem.KindInvalid, "", []string{"cart.items"}},
			"bad item": {func(p *coupon.LockParams) { p.Cart.Items[0].Quantity = 0; p.Cart.Items[0].SKU = "" },
				problem.KindInvalid, "", []string{"cart.items[0].quantity", "cart.items[0].sku"}},
			"bad currency": {func(p *coupon.LockParams) { p.Cart.Currency = "XXX" }, problem.KindInvalid, "", []string{"cart.currency"}},
			"bad request": {func(p *coupon.LockParams) {
				p.OrderID, p.CouponIDs, p.TTL, p.UserID = "", []string{id, id}, 48*time.Hour, "bad user"
			}, problem.KindInvalid, "", []string{"order_id", "coupon_ids[1]", "ttl_seconds", "user_id"}},
			"no coupons":     {func(p *coupon.LockParams) { p.CouponIDs = nil }, problem.KindInvalid, "", []string{"coupon_ids"}},
			"unknown coupon": {func(p *coupon.LockParams) { p.CouponIDs = []string{"cpn_nope"} }, problem.KindConflict, coupon.CodeUnavailable, []string{"coupon_ids[0]"}},
			"another's coupon": {func(p *coupon.LockParams) { p.CouponIDs = []string{id, theirs} }, problem.KindConflict,
				coupon.CodeUnavailable, []string{"coupon_ids[1]"}},
			"below threshold": {func(p *coupon.LockParams) { p.Cart = cart(9000) }, problem.KindConflict, qualify.CodeRefused,
				[]string{"coupon_ids[0]"}},
		} {
			t.Run(name, func(t *testing.T) {
				p := ok
				p.Cart = cart(15000)
				tc.edit(&p)
				_, err := b.svc.Lock(ctx, p)
				requireProblem(t, err, tc.kind, tc.code, tc.fields...)
			})
		}
		require.Zero(t, b.count(t, "redemptions", ""))
		require.Equal(t, 2, b.count(t, "coupons", "state = 'issued'"))
		require.Empty(t, b.events(t, coupon.EventLocked))
	})
}

func TestRollbackPolicies(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		ctx := context.Background()
		b.template(t, "save30", save30)
		redeem := func(user, order string) (string, coupon.Redemption) {
			id := b.issue(t, "save30", user)
			r := b.lock(t, user, order, 10000, id)
			_, err := b.svc.Confirm(ctx, tenantA, r.ID)
			require.NoError(t, err)
			return id, r
		}
		kept, rk := redeem("u1", "o-1")
		late, rl := redeem("u2", "o-2")
		st, err := b.svc.Stats(ctx, tenantA, "save30")
		require.NoError(t, err)
		require.Equal(t, coupon.Stats{Template: "save30", Issued: 2, Redeemed: 2, DiscountCost: 6000, RedemptionRate: 1}, st)

		out, err := b.svc.Rollback(ctx, coupon.RollbackParams{TenantID: tenantA, ID: rk.ID, Policy: coupon.NeverRestore})
		require.NoError(t, err)
		require.Empty(t, out.Restored)
		require.Equal(t, coupon.StateRedeemed, b.get(t, kept).State, "never_restore leaves the coupon used")

		b.clock.Advance(31 * 24 * time.Hour) // past the coupon's expiry
		out, err = b.svc.Rollback(ctx, coupon.RollbackParams{TenantID: tenantA, ID: rl.ID})
		require.NoError(t, err)
		require.Empty(t, out.Restored)
		require.Equal(t, coupon.StateExpired, b.get(t, late).State, "an expired coupon is not restored")
		require.Len(t, b.events(t, coupon.EventExpired), 1)

		st, err = b.svc.Stats(ctx, tenantA, "save30")
		require.NoError(t, err)
		require.Equal(t, coupon.Stats{Template: "save30", Issued: 2, Redeemed: 1, Expired: 1, DiscountCost: 0, RedemptionRate: 0.5}, st,
			"rolled-back discounts are no cost")
		_, err = b.svc.Rollback(ctx, coupon.RollbackParams{TenantID: tenantA, ID: rl.ID, Policy: "sometimes"})
		requireProblem(t, err, problem.KindInvalid, "", "policy")
	})
}
