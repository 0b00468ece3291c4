package coupon_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// outcomes counts what concurrent issuances answered.
type outcomes struct {
	mu      sync.Mutex
	created int
	codes   map[string]int
}

func (o *outcomes) add(created bool, code string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.codes == nil {
		o.codes = map[string]int{}
	}
	switch {
	case created:
		o.created++
	case code != "":
		o.codes[code]++
	default:
		o.codes["error: "+fmt.Sprint(err)]++
	}
}

func TestQuantityIsNeverOverIssuedUnderConcurrency(t *testing.T) {
	t.Parallel()
	runCounters(t, func(t *testing.T, db *sqldb.DB, mode counters) {
		b := setup(t, db, mode)
		ctx := context.Background()
		b.template(t, "fifty", limited(50, 0))
		var (
			wg  sync.WaitGroup
			got outcomes
		)
		// 200 concurrent issuances to 200 users, half through Issue, half through IssueTx.
		for i := range 200 {
			wg.Go(func() {
				user := fmt.Sprintf("u%03d", i)
				if i%2 == 0 {
					out, err := b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "fifty", UserIDs: []string{user}})
					if err != nil {
						got.add(false, "", err)
						return
					}
					r := out.Results[0]
					code := ""
					if r.Error != nil {
						code = r.Error.Code
					}
					got.add(r.Created, code, nil)
					return
				}
				err := db.Tx(ctx, func(tx *sqldb.Tx) error {
					_, err := b.svc.IssueTx(ctx, tx, coupon.TxIssueParams{TenantID: tenantA, UserID: user, Template: "fifty",
						BusinessKey: "grt_" + user + "/coupon", SourceKind: "grant", SourceID: "grt_" + user})
					return err
				})
				code := ""
				if p, ok := problem.As(err); ok {
					code, err = p.Code, nil
				}
				got.add(err == nil && code == "", code, err)
			})
		}
		wg.Wait()
		require.Equal(t, 50, got.created, "%v", got.codes)
		require.Equal(t, map[string]int{coupon.CodeSoldOut: 150}, got.codes)
		require.Equal(t, 50, b.count(t, "coupons", ""))
		require.Len(t, b.events(t, coupon.EventIssued), 50)
		st, err := b.svc.Stats(ctx, tenantA, "fifty")
		require.NoError(t, err)
		require.EqualValues(t, 50, st.Issued)
	})
}

func TestPerUserLimitHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	runCounters(t, func(t *testing.T, db *sqldb.DB, mode counters) {
		b := setup(t, db, mode)
		ctx := context.Background()
		b.template(t, "once", limited(0, 1))
		var (
			wg  sync.WaitGroup
			got outcomes
		)
		// 200 concurrent calls, each with its own business key, for one user.
		for i := range 200 {
			wg.Go(func() {
				out, err := b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "once", UserIDs: []string{"u1"},
					BusinessKey: fmt.Sprintf("call-%d", i)})
				if err != nil {
					got.add(false, "", err)
					return
				}
				code := ""
				if e := out.Results[0].Error; e != nil {
					code = e.Code
				}
				got.add(out.Results[0].Created, code, nil)
			})
		}
		wg.Wait()
		require.Equal(t, 1, got.created, "%v", got.codes)
		require.Equal(t, map[string]int{coupon.CodeLimitReached: 199}, got.codes)
		require.Equal(t, 1, b.count(t, "coupons", "user_id = 'u1'"))

		// Another user is not affected.
		b.issue(t, "once", "u2")
	})
}

func TestABatchIssuesWhatFitsAndRefusesTheRest(t *testing.T) {
	t.Parallel()
	runCounters(t, func(t *testing.T, db *sqldb.DB, mode counters) {
		b := setup(t, db, mode)
		ctx := context.Background()
		b.template(t, "five", limited(5, 1))
		b.issue(t, "five", "u3") // u3 holds one already
		out, err := b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "five",
			UserIDs: []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7"}, BusinessKey: "batch"})
		require.NoError(t, err)
		require.Equal(t, 4, out.Created)
		var codes []string
		for _, r := range out.Results {
			switch {
			case r.Created:
				codes = append(codes, "ok")
			default:
				codes = append(codes, r.Error.Code)
			}
		}
		require.Equal(t, []string{"ok", "ok", coupon.CodeLimitReached, "ok", "ok", coupon.CodeSoldOut, coupon.CodeSoldOut}, codes)
		require.Equal(t, 5, b.count(t, "coupons", ""))

		// A repeat answers the same and takes nothing more.
		again, err := b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "five",
			UserIDs: []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7"}, BusinessKey: "batch"})
		require.NoError(t, err)
		require.Zero(t, again.Created)
		for i, r := range again.Results {
			require.Equal(t, out.Results[i].CouponID, r.CouponID)
		}
	})
}

func TestReconcileGivesBackWhatACrashLeaked(t *testing.T) {
	t.Parallel()
	runCounters(t, func(t *testing.T, db *sqldb.DB, mode counters) {
		b := setup(t, db, mode)
		ctx := context.Background()
		b.template(t, "one", limited(1, 0))
		// A node reserves inside a transaction that rolls back and then "dies": its reservation
		// is never reused.
		dying, err := coupon.New(db, b.opts)
		require.NoError(t, err)
		err = db.Tx(ctx, func(tx *sqldb.Tx) error {
			_, err := dying.IssueTx(ctx, tx, coupon.TxIssueParams{TenantID: tenantA, UserID: "u1", Template: "one",
				BusinessKey: "grt_1/coupon"})
			require.NoError(t, err)
			return errRollback
		})
		require.ErrorIs(t, err, errRollback)

		out, err := b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "one", UserIDs: []string{"u2"}})
		require.NoError(t, err)
		if mode == sqlCounters {
			require.True(t, out.Results[0].Created, "SQL counters roll back with the transaction: nothing leaks")
			return
		}
		require.Equal(t, coupon.CodeSoldOut, out.Results[0].Error.Code, "the leaked unit under-issues")

		rec, err := b.svc.Reconcile(ctx, coupon.ReconcileParams{TenantID: tenantA, Template: "one", UserIDs: []string{"u1"}})
		require.NoError(t, err)
		require.Equal(t, coupon.Reconciled{Template: "one", Issued: 0, Users: 1}, rec)
		out, err = b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "one", UserIDs: []string{"u2"}})
		require.NoError(t, err)
		require.True(t, out.Results[0].Created)
		out, err = b.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "one", UserIDs: []string{"u3"}})
		require.NoError(t, err)
		require.Equal(t, coupon.CodeSoldOut, out.Results[0].Error.Code, "after the repair the quantity holds again")
	})
}
