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

// walletEntry is one cached wallet, prepared for evaluation. filled is false while a read is in
// flight or after a drop.
type walletEntry struct {
	gen    uint64
	filled bool
	at     time.Time
	wallet *qualify.Wallet
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
func (c *walletCache) get(k walletKey) (w *qualify.Wallet, gen uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	if e != nil && e.filled && c.now().Sub(e.at) < c.ttl {
		return e.wallet, 0, true
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
		c.held -= len(e.wallet.Coupons())
	}
	c.gen++
	e.gen, e.filled, e.wallet = c.gen, false, nil
}

// reset drops everything: crude, rare, and safe (reads in flight then fill nothing).
func (c *walletCache) reset() {
	clear(c.entries)
	c.held = 0
}

// fill stores a wallet read under generation gen, unless the entry was dropped since.
func (c *walletCache) fill(k walletKey, gen uint64, w *qualify.Wallet) {
	n := len(w.Coupons())
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	if e == nil || e.gen != gen || n > c.max {
		return
	}
	if c.held+n > c.max {
		c.reset()
		return
	}
	e.filled, e.at, e.wallet = true, c.now(), w
	c.held += n
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

// wallet is the user's usable coupons (usable(tenant, user, nil)) prepared for evaluation, through
// the wallet cache. A wallet one of whose template versions was not found is not kept: the version
// may yet arrive.
func (s *Service) wallet(ctx context.Context, tenant, user string) (*qualify.Wallet, error) {
	k := walletKey{tenant, user}
	var gen uint64
	if s.wallets != nil {
		w, g, ok := s.wallets.get(k)
		if ok {
			s.metrics.walletCache.WithLabelValues("hit").Inc()
			return w, nil
		}
		s.metrics.walletCache.WithLabelValues("miss").Inc()
		gen = g
	}
	coupons, err := s.usable(ctx, tenant, user, nil)
	if err != nil {
		return nil, err
	}
	lookup, err := s.templates.lookup(ctx, tenant, coupons)
	if err != nil {
		return nil, err
	}
	w := qualify.NewWallet(slices.Clip(coupons), lookup)
	if s.wallets != nil && w.Complete() {
		s.wallets.fill(k, gen, w)
	}
	return w, nil
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
