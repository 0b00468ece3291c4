package coupon

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/clock"
)

func TestWalletCacheGenerations(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	c := newWalletCache(time.Minute, 3, clk.Now)
	a, b := walletKey{"t", "a"}, walletKey{"t", "b"}
	wallet := qualify.NewWallet([]qualify.Coupon{{ID: "c1"}}, nil)

	_, gen, ok := c.get(a)
	require.False(t, ok)
	c.fill(a, gen, wallet)
	got, _, ok := c.get(a)
	require.True(t, ok)
	require.Equal(t, wallet, got)

	// A read that began before a change must not store what it saw after the change's drop.
	c.drop(a)
	_, stale, ok := c.get(a)
	require.False(t, ok)
	c.drop(a) // the change commits while the read runs
	c.fill(a, stale, wallet)
	_, _, ok = c.get(a)
	require.False(t, ok, "a read older than the last drop fills nothing")

	// Two reads in flight: only the newer one may fill.
	_, first, _ := c.get(b)
	_, second, _ := c.get(b)
	c.fill(b, first, wallet)
	_, _, ok = c.get(b)
	require.False(t, ok)
	_, third, _ := c.get(b)
	require.NotEqual(t, second, third)
	c.fill(b, third, wallet)
	_, _, ok = c.get(b)
	require.True(t, ok)

	// Entries age out after the TTL.
	clk.Advance(time.Minute)
	_, _, ok = c.get(b)
	require.False(t, ok, "past its TTL a wallet is read again")

	// The cache holds at most its number of coupons: past it, it starts again empty.
	for _, u := range []string{"c", "d", "e", "f"} {
		_, gen, _ := c.get(walletKey{"t", u})
		c.fill(walletKey{"t", u}, gen, wallet)
		require.LessOrEqual(t, c.held, 3)
		require.LessOrEqual(t, len(c.entries), 3)
	}
	require.Positive(t, c.size())
	big := qualify.NewWallet([]qualify.Coupon{{ID: "c1"}, {ID: "c2"}, {ID: "c3"}, {ID: "c4"}}, nil)
	_, gen, _ = c.get(walletKey{"t", "big"})
	c.fill(walletKey{"t", "big"}, gen, big)
	_, _, ok = c.get(walletKey{"t", "big"})
	require.False(t, ok, "a wallet larger than the whole cache is not held")
	held := 0
	for _, e := range c.entries {
		if e.filled {
			held += len(e.wallet.Coupons())
		}
	}
	require.Equal(t, held, c.held, "the count of held coupons follows fills, drops and resets")

	require.Nil(t, newWalletCache(0, 10, clk.Now), "TTL 0 turns the cache off")
}

// size is how many wallets are held.
func (c *walletCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.entries {
		if e.filled {
			n++
		}
	}
	return n
}
