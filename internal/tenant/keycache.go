package tenant

import (
	"sync"
	"time"
)

// maxCachedKeys bounds the key cache; it is emptied when full.
const maxCachedKeys = 10000

// keyCache remembers verified API keys for a short while (Options.KeyCacheTTL). Only successes are
// kept, with the hash of the secret that was verified: another secret for the same key id is
// checked against the database again. RevokeKey and a merchant's status change drop the entries
// concerned on this node; other nodes see the change when their entries expire. Every drop moves
// the cache's epoch, and put stores only under the epoch its read began in, so a verification that
// read the key before a revocation committed cannot store it after the drop.
type keyCache struct {
	mu    sync.Mutex
	m     map[string]cachedKey // key id → entry
	epoch uint64
}

type cachedKey struct {
	hash    string
	p       Principal
	expires time.Time
}

// get returns the principal of a key verified with this secret hash, unless it has expired.
func (c *keyCache) get(keyID, hash string, now time.Time) (Principal, bool) {
	c.mu.Lock()
	e, ok := c.m[keyID]
	c.mu.Unlock()
	if !ok || !now.Before(e.expires) || !equalHash(e.hash, hash) {
		return Principal{}, false
	}
	return e.p, true
}

// now returns the epoch a verification starts in, for put.
func (c *keyCache) now() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// put remembers a verified key, unless something was dropped since epoch.
func (c *keyCache) put(keyID, hash string, p Principal, expires time.Time, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		return
	}
	if c.m == nil || len(c.m) >= maxCachedKeys {
		c.m = map[string]cachedKey{}
	}
	c.m[keyID] = cachedKey{hash: hash, p: p, expires: expires}
}

func (c *keyCache) drop(keyID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	delete(c.m, keyID)
}

// dropTenant forgets every key of a tenant.
func (c *keyCache) dropTenant(tenantID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for id, e := range c.m {
		if e.p.TenantID == tenantID {
			delete(c.m, id)
		}
	}
}
