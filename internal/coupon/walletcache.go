package coupon

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/bus"
)

// The wallet cache keeps each recently qualified user's usable coupons in memory, so that a
// qualification — the hottest read of the module, run on every cart change — reads no row.
//
// Correctness rests on three things. Every change of a coupon's state goes through emit, which
// drops the owner's entry once the transaction has committed (so a node reads its own writes at
// once). Each entry carries a generation, taken from one node-wide counter when the entry is
// created or dropped; a read fills the entry only if its generation did not move while the read
// ran, so a read that saw the wallet before a commit can never store it after the drop. And the
// coupon.* events of other nodes drop entries too (WatchWallets), with the TTL as the bound on how
// stale an entry can be if a notice is missed. The cache serves qualification only: locking for a
// redemption always reads the rows.

// walletKey names one user's wallet.
type walletKey struct{ tenant, user string }

// walletEntry is one cached wallet. filled is false while a read is in flight or after a drop.
type walletEntry struct {
	gen     uint64
	filled  bool
	at      time.Time
	coupons []qualify.Coupon
}

// walletCache holds wallets; a nil cache holds nothing.
type walletCache struct {
	ttl time.Duration
	max int // the most coupons held, all wallets together
	now func() time.Time

	mu      sync.Mutex
	entries map[walletKey]*walletEntry
	held    int // coupons in filled entries
	gen     uint64
}

// newWalletCache returns a cache of at most max coupons, each wallet kept at most ttl; ttl 0
// means no cache.
func newWalletCache(ttl time.Duration, max int, now func() time.Time) *walletCache {
	if ttl <= 0 {
		return nil
	}
	return &walletCache{ttl: ttl, max: max, now: now, entries: map[walletKey]*walletEntry{}}
}

// get returns the cached wallet of k, or the generation a read must present to fill it.
func (c *walletCache) get(k walletKey) (coupons []qualify.Coupon, gen uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	if e != nil && e.filled && c.now().Sub(e.at) < c.ttl {
		return e.coupons, 0, true
	}
	if e == nil {
		if len(c.entries) >= c.max {
			c.reset()
		}
		e = &walletEntry{}
		c.entries[k] = e
	}
	c.forget(e)
	return nil, e.gen, false
}

// forget empties e under a new generation.
func (c *walletCache) forget(e *walletEntry) {
	if e.filled {
		c.held -= len(e.coupons)
	}
	c.gen++
	e.gen, e.filled, e.coupons = c.gen, false, nil
}

// reset drops everything: crude, rare, and safe (reads in flight then fill nothing).
func (c *walletCache) reset() {
	clear(c.entries)
	c.held = 0
}

// fill stores a wallet read under generation gen, unless the entry was dropped since.
func (c *walletCache) fill(k walletKey, gen uint64, coupons []qualify.Coupon) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	if e == nil || e.gen != gen || len(coupons) > c.max {
		return
	}
	if c.held+len(coupons) > c.max {
		c.reset()
		return
	}
	e.filled, e.at, e.coupons = true, c.now(), slices.Clip(coupons)
	c.held += len(coupons)
}

// drop forgets the wallets of keys; reads in flight for them fill nothing.
func (c *walletCache) drop(keys ...walletKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if e := c.entries[k]; e != nil {
			c.forget(e)
		}
	}
}

// walletKeys lists the distinct owners of events.
func walletKeys(events []bus.Event) []walletKey {
	seen := make(map[walletKey]bool, len(events))
	keys := make([]walletKey, 0, len(events))
	for _, e := range events {
		k := walletKey{e.TenantID, e.UserID}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys
}

// cachedWallet is usable(tenant, user, nil) through the wallet cache.
func (s *Service) cachedWallet(ctx context.Context, tenant, user string) ([]qualify.Coupon, error) {
	if s.wallets == nil {
		return s.usable(ctx, tenant, user, nil)
	}
	k := walletKey{tenant, user}
	coupons, gen, ok := s.wallets.get(k)
	if ok {
		s.metrics.walletCache.WithLabelValues("hit").Inc()
		return coupons, nil
	}
	s.metrics.walletCache.WithLabelValues("miss").Inc()
	coupons, err := s.usable(ctx, tenant, user, nil)
	if err != nil {
		return nil, err
	}
	s.wallets.fill(k, gen, coupons)
	return coupons, nil
}

// WatchWallets keeps this node's wallet cache in step with the other nodes: it watches the
// coupon.* events on the DOMAIN stream and drops the wallets they touch. Run it on every node
// whose cache is on (a single node reads its own writes without it).
func (s *Service) WatchWallets(ctx context.Context, b *bus.Bus) (stop func(), err error) {
	if s.wallets == nil {
		return func() {}, nil
	}
	return b.Watch(ctx, bus.Domain, b.Subject(bus.Domain, "coupon", ">"), func(_ context.Context, m bus.Msg) error {
		e, err := bus.DecodeEvent(m)
		if err == nil {
			s.wallets.drop(walletKey{e.TenantID, e.UserID})
		}
		return nil
	})
}
