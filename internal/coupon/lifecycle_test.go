package coupon_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

func TestExpireDueExpiresIssuedCouponsOnly(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		ctx := context.Background()
		b.template(t, "save30", save30)
		b.template(t, "ten-off", tenOff) // 7 days
		short, long := b.issue(t, "ten-off", "u1"), b.issue(t, "save30", "u1")
		held := b.issue(t, "ten-off", "u2")
		b.lock(t, "u2", "o-1", 5000, held)

		n, err := b.svc.ExpireDue(ctx, 100)
		require.NoError(t, err)
		require.Zero(t, n)
		b.clock.Advance(7 * 24 * time.Hour)
		// Past expiry but not yet swept: qualification still shows it, with its reason.
		res, err := b.svc.Qualify(ctx, coupon.QualifyParams{TenantID: tenantA, UserID: "u1", Cart: cart(5000)})
		require.NoError(t, err)
		require.Len(t, res.Coupons, 2)

		n, err = b.svc.ExpireDue(ctx, 100)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Equal(t, coupon.StateExpired, b.get(t, short).State)
		require.Equal(t, coupon.StateIssued, b.get(t, long).State)
		require.Equal(t, coupon.StateLocked, b.get(t, held).State, "a locked coupon is left to its redemption")
		ev := b.events(t, coupon.EventExpired)
		require.Len(t, ev, 1)
		require.Equal(t, short, ev[0].SourceID)
		require.Equal(t, "u1", ev[0].UserID)
		n, err = b.svc.ExpireDue(ctx, 100)
		require.NoError(t, err)
		require.Zero(t, n, "a second sweep finds nothing")
	})
}

func TestArchivedCouponsAreStillReadableAndCounted(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters, func(o *coupon.Options) { o.ArchiveAfter = 24 * time.Hour })
		ctx := context.Background()
		b.template(t, "year", `{"type":"amount_off","amount":3000,"threshold":{"amount":10000},"validity":{"days":365},
			"per_user":2,"title":{"en":"a year"}}`)
		out, err := b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "year", UserIDs: []string{"u1"},
			BusinessKey: "welcome"})
		require.NoError(t, err)
		redeemed := out.Results[0].CouponID
		revoked, live := b.issue(t, "year", "u2"), b.issue(t, "year", "u3")
		r := b.lock(t, "u1", "o-1", 10000, redeemed)
		_, err = b.svc.Confirm(ctx, tenantA, r.ID)
		require.NoError(t, err)
		_, err = b.svc.Revoke(ctx, tenantA, revoked, "fraud")
		require.NoError(t, err)

		n, err := b.svc.Archive(ctx, 0, 100)
		require.NoError(t, err)
		require.Zero(t, n, "nothing is past the retention yet")
		b.clock.Advance(25 * time.Hour)
		n, err = b.svc.Archive(ctx, 0, 100)
		require.NoError(t, err)
		require.Equal(t, 2, n)

		for _, id := range []string{redeemed, revoked} {
			c := b.get(t, id)
			require.True(t, c.Archived)
		}
		require.Equal(t, coupon.StateRedeemed, b.get(t, redeemed).State)
		require.False(t, b.get(t, live).Archived)
		page, err := b.svc.List(ctx, coupon.ListParams{TenantID: tenantA, UserID: "u1"})
		require.NoError(t, err)
		require.Empty(t, page.Items, "the wallet lists live coupons")
		st, err := b.svc.Stats(ctx, tenantA, "year")
		require.NoError(t, err)
		require.Equal(t, coupon.Stats{Template: "year", Issued: 3, Available: 1, Redeemed: 1, Revoked: 1, DiscountCost: 3000,
			RedemptionRate: 1.0 / 3}, st)

		// Archived coupons still count: the same business key issues nothing new, and the per-user
		// limit (2) counts the archived one.
		again, err := b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "year", UserIDs: []string{"u1"},
			BusinessKey: "welcome"})
		require.NoError(t, err)
		require.Equal(t, redeemed, again.Results[0].CouponID)
		require.False(t, again.Results[0].Created)
		b.issue(t, "year", "u1")
		out, err = b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "year", UserIDs: []string{"u1"}})
		require.NoError(t, err)
		require.Equal(t, coupon.CodeLimitReached, out.Results[0].Error.Code)

		// A refund brings the archived coupon back to the wallet.
		rolled, err := b.svc.Rollback(ctx, coupon.RollbackParams{TenantID: tenantA, ID: r.ID})
		require.NoError(t, err)
		require.Equal(t, []string{redeemed}, rolled.Restored)
		c := b.get(t, redeemed)
		require.False(t, c.Archived)
		require.Equal(t, coupon.StateIssued, c.State)
		require.Zero(t, b.count(t, "coupons_archive", "id = $2", redeemed))
	})
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		ctx := context.Background()
		b.template(t, "save30", save30)
		id, held := b.issue(t, "save30", "u1"), b.issue(t, "save30", "u1")
		b.lock(t, "u1", "o-1", 10000, held)

		c, err := b.svc.Revoke(ctx, tenantA, id, "issued by mistake")
		require.NoError(t, err)
		require.Equal(t, coupon.StateRevoked, c.State)
		require.Equal(t, "issued by mistake", b.get(t, id).RevokeReason)
		again, err := b.svc.Revoke(ctx, tenantA, id, "twice")
		require.NoError(t, err, "revoking twice is a no-op")
		require.Equal(t, "issued by mistake", again.RevokeReason)
		require.Len(t, b.events(t, coupon.EventRevoked), 1)

		_, err = b.svc.Revoke(ctx, tenantA, held, "")
		requireProblem(t, err, problem.KindConflict, coupon.CodeCouponState)
		_, err = b.svc.Revoke(ctx, tenantB, id, "")
		requireProblem(t, err, problem.KindNotFound, coupon.CodeCouponNotFound)
		_, err = b.svc.Revoke(ctx, tenantA, "cpn_01nope", "")
		requireProblem(t, err, problem.KindNotFound, coupon.CodeCouponNotFound)
		_, err = b.svc.Lock(ctx, coupon.LockParams{TenantID: tenantA, UserID: "u1", OrderID: "o-2", CouponIDs: []string{id},
			Cart: cart(10000)})
		requireProblem(t, err, problem.KindConflict, coupon.CodeUnavailable)
	})
}

func TestSweepRunsEveryJob(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters, func(o *coupon.Options) { o.ArchiveAfter = time.Hour })
		ctx := context.Background()
		b.template(t, "ten-off", tenOff) // 7 days
		expiring, held := b.issue(t, "ten-off", "u1"), b.issue(t, "ten-off", "u2")
		r, err := b.svc.Lock(ctx, coupon.LockParams{TenantID: tenantA, UserID: "u2", OrderID: "o-1", CouponIDs: []string{held},
			Cart: cart(5000), TTL: time.Minute})
		require.NoError(t, err)

		b.clock.Advance(2 * time.Minute)
		require.NoError(t, b.svc.Sweep(ctx))
		got, err := b.svc.GetRedemption(ctx, tenantA, r.ID)
		require.NoError(t, err)
		require.Equal(t, coupon.RedemptionReleased, got.State)

		b.clock.Advance(7 * 24 * time.Hour)
		require.NoError(t, b.svc.Sweep(ctx)) // both expire
		require.Equal(t, coupon.StateExpired, b.get(t, expiring).State)
		require.False(t, b.get(t, expiring).Archived)
		b.clock.Advance(2 * time.Hour)
		require.NoError(t, b.svc.Sweep(ctx)) // and are archived past the retention
		require.True(t, b.get(t, expiring).Archived)
		require.True(t, b.get(t, held).Archived)
	})
}
