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

func TestIssueIsIdempotentOnTheBusinessKey(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		ctx := context.Background()
		v := b.template(t, "save30", save30)
		p := coupon.IssueParams{TenantID: tenantA, Template: "save30", UserIDs: []string{"u1", "u2", "u1", "u3"},
			BusinessKey: "campaign-7"}
		first, err := b.svc.Issue(ctx, p)
		require.NoError(t, err)
		require.Equal(t, 3, first.Created)
		require.Equal(t, v, first.TemplateVersion)
		require.Len(t, first.Results, 4)
		require.Equal(t, first.Results[0], first.Results[2], "a user listed twice gets one coupon")
		for _, r := range first.Results {
			require.True(t, r.Created)
			require.Nil(t, r.Error)
		}

		again, err := b.svc.Issue(ctx, p)
		require.NoError(t, err)
		require.Zero(t, again.Created)
		for i, r := range again.Results {
			require.Equal(t, first.Results[i].CouponID, r.CouponID)
			require.False(t, r.Created)
		}
		require.Equal(t, 3, b.count(t, "coupons", ""))
		require.Len(t, b.events(t, coupon.EventIssued), 3)

		c := b.get(t, first.Results[1].CouponID)
		require.Equal(t, coupon.Coupon{ID: c.ID, TenantID: tenantA, UserID: "u2", Template: "save30", TemplateVersion: v,
			State: coupon.StateIssued, IssuedAt: epoch, StartsAt: epoch, ExpiresAt: epoch.Add(30 * 24 * time.Hour),
			SourceKind: coupon.SourceAPI, SourceID: "campaign-7", BusinessKey: "campaign-7/u2", UpdatedAt: epoch}, c)

		// Another template with the same key base is a per-user conflict, not a second coupon.
		b.template(t, "ten-off", tenOff)
		p.Template, p.UserIDs = "ten-off", []string{"u1", "u9"}
		other, err := b.svc.Issue(ctx, p)
		require.NoError(t, err)
		require.Equal(t, coupon.CodeKeyConflict, other.Results[0].Error.Code)
		require.True(t, other.Results[1].Created)
	})
}

func TestIssueRefusesBadRequestsAndChangesNothing(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		ctx := context.Background()
		b.template(t, "save30", save30)
		_, err := b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "Bad Key", UserIDs: []string{"ok", "bad user"},
			BusinessKey: "has space"})
		requireProblem(t, err, problem.KindInvalid, "", "template", "user_ids[1]", "business_key")
		_, err = b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "save30"})
		requireProblem(t, err, problem.KindInvalid, "", "user_ids")
		_, err = b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "nope", UserIDs: []string{"u1"}})
		requireProblem(t, err, problem.KindNotFound, coupon.CodeTemplateNotFound)
		_, err = b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantB, Template: "save30", UserIDs: []string{"u1"}})
		requireProblem(t, err, problem.KindNotFound, coupon.CodeTemplateNotFound)

		// A fixed window that is over issues nothing.
		b.template(t, "old", `{"type":"amount_off","amount":100,"validity":{"from":"2025-01-01T00:00:00Z",
			"until":"2025-02-01T00:00:00Z"},"title":{"en":"old"}}`)
		_, err = b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "old", UserIDs: []string{"u1"}})
		requireProblem(t, err, problem.KindConflict, coupon.CodeTemplateEnded)

		require.Zero(t, b.count(t, "coupons", ""))
		require.Empty(t, b.events(t, coupon.EventIssued))
	})
}

func TestCouponsStayOnTheVersionTheyWereIssuedUnder(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters)
		ctx := context.Background()
		require.Equal(t, 1, b.template(t, "save30", save30))
		old := b.issue(t, "save30", "u1")
		// Version 2 takes 50 off 200.
		require.Equal(t, 2, b.template(t, "save30", `{"type":"amount_off","amount":5000,"threshold":{"amount":20000},
			"validity":{"days":30},"title":{"en":"50 off 200"}}`))
		cur := b.issue(t, "save30", "u1")
		require.Equal(t, 1, b.get(t, old).TemplateVersion)
		require.Equal(t, 2, b.get(t, cur).TemplateVersion)

		// A fresh service (empty caches) reads version 1 from the catalog.
		svc, err := coupon.New(db, b.opts)
		require.NoError(t, err)
		res, err := svc.Qualify(ctx, coupon.QualifyParams{TenantID: tenantA, UserID: "u1", Cart: cart(25000)})
		require.NoError(t, err)
		byID := map[string]qualify.Outcome{}
		for _, o := range res.Coupons {
			byID[o.CouponID] = o
		}
		require.True(t, byID[old].Applicable)
		require.EqualValues(t, 3000, byID[old].Discount)
		require.EqualValues(t, 5000, byID[cur].Discount)
		require.Equal(t, []string{cur}, res.Best.Single.CouponIDs)
	})
}

func TestIssueTxRollsBackWithItsTransaction(t *testing.T) {
	t.Parallel()
	runCounters(t, func(t *testing.T, db *sqldb.DB, mode counters) {
		b := setup(t, db, mode)
		ctx := context.Background()
		b.template(t, "one", limited(1, 1))
		p := coupon.TxIssueParams{TenantID: tenantA, UserID: "u1", Template: "one", BusinessKey: "grt_1/coupon",
			SourceKind: "grant", SourceID: "grt_1"}
		err := db.Tx(ctx, func(tx *sqldb.Tx) error {
			id, err := b.svc.IssueTx(ctx, tx, p)
			require.NoError(t, err)
			require.NotEmpty(t, id)
			return errRollback
		})
		require.ErrorIs(t, err, errRollback)
		require.Zero(t, b.count(t, "coupons", ""))
		require.Empty(t, b.events(t, coupon.EventIssued))

		// The retry (same key) gets the one coupon of the template: the rolled-back attempt did not
		// use up the quantity.
		var id string
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			var err error
			id, err = b.svc.IssueTx(ctx, tx, p)
			return err
		}))
		c := b.get(t, id)
		require.Equal(t, "grant", c.SourceKind)
		require.Equal(t, "grt_1/coupon", c.BusinessKey)

		// Repeating the key answers the same coupon; another key finds the template sold out.
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			again, err := b.svc.IssueTx(ctx, tx, p)
			require.Equal(t, id, again)
			return err
		}))
		err = db.Tx(ctx, func(tx *sqldb.Tx) error {
			p.BusinessKey, p.UserID = "grt_2/coupon", "u2"
			_, err := b.svc.IssueTx(ctx, tx, p)
			return err
		})
		requireProblem(t, err, problem.KindConflict, coupon.CodeSoldOut)
		require.Len(t, b.events(t, coupon.EventIssued), 1)
	})
}

type rollbackError struct{}

func (rollbackError) Error() string { return "roll back" }

var errRollback error = rollbackError{}
