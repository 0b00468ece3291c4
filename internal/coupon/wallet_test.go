package coupon_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

func TestListFiltersAndPagesTheWallet(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		ctx := context.Background()
		b.template(t, "save30", save30)
		b.template(t, "ten-off", tenOff)
		var ids []string // oldest first
		for i := range 5 {
			tpl := "save30"
			if i%2 == 1 {
				tpl = "ten-off"
			}
			ids = append(ids, b.issue(t, tpl, "u1"))
			b.clock.Advance(time.Second)
		}
		b.issue(t, "save30", "u2")
		b.lock(t, "u1", "o-1", 20000, ids[0])

		var walked []string
		cursor := ""
		for {
			page, err := b.svc.List(ctx, coupon.ListParams{TenantID: tenantA, UserID: "u1", Cursor: cursor, Limit: 2})
			require.NoError(t, err)
			require.LessOrEqual(t, len(page.Items), 2)
			for _, c := range page.Items {
				walked = append(walked, c.ID)
			}
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
		require.Equal(t, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}, walked, "newest first, each once")

		list := func(p coupon.ListParams) []string {
			p.TenantID, p.UserID = tenantA, "u1"
			page, err := b.svc.List(ctx, p)
			require.NoError(t, err)
			out := []string{}
			for _, c := range page.Items {
				out = append(out, c.ID)
			}
			return out
		}
		require.Equal(t, []string{ids[3], ids[1]}, list(coupon.ListParams{Template: "ten-off"}))
		require.Equal(t, []string{ids[0]}, list(coupon.ListParams{State: coupon.StateLocked}))
		require.Equal(t, []string{ids[3], ids[1]}, list(coupon.ListParams{ExpiringBefore: epoch.Add(8 * 24 * time.Hour)}))
		require.Empty(t, list(coupon.ListParams{State: coupon.StateRedeemed}))

		_, err := b.svc.List(ctx, coupon.ListParams{TenantID: tenantA, UserID: "u1", Cursor: "garbage", State: "gone", Limit: 500})
		requireProblem(t, err, problem.KindInvalid, "", "cursor", "state", "limit")
	})
}

func TestQualifyAnswersForTheUsableWallet(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		ctx := context.Background()
		b.template(t, "save30", save30)
		b.template(t, "ten-off", tenOff)
		big, small := b.issue(t, "save30", "u1"), b.issue(t, "ten-off", "u1")
		held := b.issue(t, "ten-off", "u1")
		b.lock(t, "u1", "o-1", 5000, held)
		b.issue(t, "save30", "u2")

		res, err := b.svc.Qualify(ctx, coupon.QualifyParams{TenantID: tenantA, UserID: "u1", Cart: cart(8800)})
		require.NoError(t, err)
		require.EqualValues(t, 8800, res.Amount)
		require.Len(t, res.Coupons, 2, "the locked coupon is not offered")
		byID := map[string]qualify.Outcome{}
		for _, o := range res.Coupons {
			byID[o.CouponID] = o
		}
		require.False(t, byID[big].Applicable)
		require.Equal(t, qualify.ReasonBelowThreshold, byID[big].Reasons[0].Code)
		require.EqualValues(t, 1200, byID[big].Reasons[0].Shortfall)
		require.True(t, byID[small].Applicable)
		require.Equal(t, []string{small}, res.Best.Single.CouponIDs)

		_, err = b.svc.Qualify(ctx, coupon.QualifyParams{TenantID: tenantA, UserID: "u1", Cart: qualify.Cart{
			Items: []qualify.Item{{SKU: "a", UnitPrice: -1, Quantity: 1}}}, Lang: "fr"})
		requireProblem(t, err, problem.KindInvalid, "", "lang")
		_, err = b.svc.Qualify(ctx, coupon.QualifyParams{TenantID: tenantA, UserID: "u1", Cart: qualify.Cart{
			Items: []qualify.Item{{SKU: "a", UnitPrice: -1, Quantity: 1}}}})
		requireProblem(t, err, problem.KindInvalid, "", "cart.items[0].unit_price")

		empty, err := b.svc.Qualify(ctx, coupon.QualifyParams{TenantID: tenantA, UserID: "nobody", Cart: cart(100)})
		require.NoError(t, err)
		require.Empty(t, empty.Coupons)
		require.Nil(t, empty.Best.Single)
	})
}
