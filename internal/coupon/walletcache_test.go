package coupon_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// walletIDs qualifies a cart for user and returns the coupon ids the answer covers.
func walletIDs(t testing.TB, svc *coupon.Service, user string) []string {
	t.Helper()
	res, err := svc.Qualify(context.Background(), coupon.QualifyParams{TenantID: tenantA, UserID: user, Cart: cart(25000)})
	require.NoError(t, err)
	ids := make([]string, 0, len(res.Coupons))
	for _, o := range res.Coupons {
		ids = append(ids, o.CouponID)
	}
	return ids
}

// TestQualifyWalletCache: with the cache on, qualification reads the wallet once, and every change
// the module makes — issue, lock, release, revoke, expiry — shows in the next answer; a change made
// behind the module's back (here a raw UPDATE) shows once the TTL has passed.
func TestQualifyWalletCache(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, sqlCounters, func(o *coupon.Options) { o.WalletCacheTTL = time.Minute })
		ctx := context.Background()
		b.template(t, "save30", save30)
		b.template(t, "ten-off", tenOff)
		first := b.issue(t, "save30", "u1")
		require.Equal(t, []string{first}, walletIDs(t, b.svc, "u1"))

		// Served from memory: a change the module did not make is not seen yet...
		_, err := db.Writer().ExecContext(ctx, `UPDATE coupons SET state = 'revoked' WHERE id = $1`, first)
		require.NoError(t, err)
		require.Equal(t, []string{first}, walletIDs(t, b.svc, "u1"))
		// ...but any change through the module drops the wallet.
		second := b.issue(t, "ten-off", "u1")
		require.Equal(t, []string{second}, walletIDs(t, b.svc, "u1"))

		r := b.lock(t, "u1", "o-1", 25000, second)
		require.Empty(t, walletIDs(t, b.svc, "u1"), "a locked coupon is not offered")
		_, err = b.svc.Release(ctx, tenantA, r.ID)
		require.NoError(t, err)
		require.Equal(t, []string{second}, walletIDs(t, b.svc, "u1"))
		_, err = b.svc.Revoke(ctx, tenantA, second, "test")
		require.NoError(t, err)
		require.Empty(t, walletIDs(t, b.svc, "u1"))

		third := b.issue(t, "ten-off", "u1")
		require.Equal(t, []string{third}, walletIDs(t, b.svc, "u1"))
		b.clock.Advance(400 * 24 * time.Hour) // past every validity: the sweep expires it
		_, err = b.svc.ExpireDue(ctx, 100)
		require.NoError(t, err)
		require.Empty(t, walletIDs(t, b.svc, "u1"))

		// The TTL bounds what a change behind the module's back can hide.
		fourth := b.issue(t, "ten-off", "u2")
		require.Equal(t, []string{fourth}, walletIDs(t, b.svc, "u2"))
		_, err = db.Writer().ExecContext(ctx, `UPDATE coupons SET state = 'revoked' WHERE id = $1`, fourth)
		require.NoError(t, err)
		require.Equal(t, []string{fourth}, walletIDs(t, b.svc, "u2"))
		b.clock.Advance(time.Minute)
		require.Empty(t, walletIDs(t, b.svc, "u2"))
	})
}

// TestWalletCacheAcrossNodes: a node's cached wallet is dropped by another node's change, through
// the coupon.* events on the DOMAIN stream, long before its TTL.
func TestWalletCacheAcrossNodes(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		bs := bustest.NewEnv(t, bustest.Embedded).Open(t, bus.Options{})
		cached := func(o *coupon.Options) { o.WalletCacheTTL, o.Events = time.Hour, bs.EnqueueEvent }
		a := setup(t, db, sqlCounters, cached)
		a.template(t, "save30", save30)
		b := setup(t, db, sqlCounters, cached)
		require.NoError(t, b.snap.Load(ctx))
		stop, err := b.svc.WatchWallets(ctx, bs)
		require.NoError(t, err)
		t.Cleanup(stop)
		relay := bus.NewRelay(db, bs, bus.RelayOptions{PollInterval: 10 * time.Millisecond})
		go func() { _ = relay.Run(ctx) }()

		first := a.issue(t, "save30", "u1")
		require.Equal(t, []string{first}, walletIDs(t, b.svc, "u1"))
		second := a.issue(t, "save30", "u1")
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			require.ElementsMatch(c, []string{first, second}, walletIDs(t, b.svc, "u1"))
		}, 10*time.Second, 10*time.Millisecond, "node A's issue reaches node B's cache")
	})
}
