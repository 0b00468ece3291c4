package coupon

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// TestTheConditionalUpdateAloneAdmitsOneLock races 1,000 lock transactions on one coupon with no
// pre-check and no guard in front of them: the conditional UPDATE must let exactly one through.
func TestTheConditionalUpdateAloneAdmitsOneLock(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, []sqldb.Migrations{Migrations}, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s, err := New(db, Options{Catalog: catalog.New(db, catalog.Options{})})
		require.NoError(t, err)
		now := s.now()
		c := Coupon{ID: ids.New("cpn", now), TenantID: "mch_a", UserID: "u1", Template: "t", TemplateVersion: 1,
			State: StateIssued, IssuedAt: now, StartsAt: now, ExpiresAt: now.Add(time.Hour), BusinessKey: "k", UpdatedAt: now}
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			_, err := insertCoupons(ctx, tx, s.dialect, []Coupon{c})
			return err
		}))
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			won   int
			codes = map[string]int{}
			start = make(chan struct{})
		)
		for i := range 1000 {
			wg.Go(func() {
				r := Redemption{ID: ids.New("rdm", now), TenantID: "mch_a", UserID: "u1", OrderID: fmt.Sprintf("o-%d", i),
					CouponIDs: []string{c.ID}, Coupons: []qualify.Outcome{{CouponID: c.ID, Discount: 100}}, Discount: 100,
					State: RedemptionLocked, LockExpiresAt: now.Add(time.Minute), CreatedAt: now, UpdatedAt: now}
				<-start
				err := db.Tx(ctx, func(tx *sqldb.Tx) error { return s.lockTx(ctx, tx, r, "h") })
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					won++
					return
				}
				p, _ := problem.As(err)
				if p == nil {
					codes[err.Error()]++
					return
				}
				codes[p.Code]++
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, 1, won, "%v", codes)
		require.Equal(t, map[string]int{CodeUnavailable: 999}, codes)
		var n int
		require.NoError(t, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM redemptions`).Scan(&n))
		require.Equal(t, 1, n, "the losers' redemptions rolled back")
	})
}
