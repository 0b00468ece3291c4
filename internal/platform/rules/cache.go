package rules

import (
	"container/list"
	"sync"
)

// DefaultCacheSize is the number of programs a Cache keeps when NewCache is
// given no size.
const DefaultCacheSize = 10_000

// CacheKey names the config version an expression belongs to. Published
// config is immutable, so an expression compiled for one version stays
// valid for as long as that version exists.
type CacheKey struct {
	// Resource identifies the config resource, e.g. "task/7f3c".
	Resource string
	// Version is the resource's published version.
	Version int64
}

// CacheStats counts a Cache's lookups.
type CacheStats struct {
	// Hits counts lookups answered by a cached program or by a compile
	// already in flight for the same key.
	Hits uint64
	// Misses counts lookups that compiled.
	Misses uint64
	// Evictions counts programs dropped to stay within the size.
	Evictions uint64
	// Entries is the number of programs held now.
	Entries int
}

// Cache holds compiled programs by environment (its identity: declare each
// Env once), config version, expression and wanted type, least recently
// used first out. Concurrent lookups of the
// same missing key compile once and share the result. Compile errors are
// not cached: the failing lookup and the lookups waiting on it get the
// error, and the next lookup compiles again. A Cache is safe for concurrent
// use.
type Cache struct {
	mu      sync.Mutex
	size    int
	order   *list.List // of *cacheEntry, most recent first
	entries map[cacheID]*list.Element
	stats   CacheStats
}

type cacheID struct {
	env  *Env
	key  CacheKey
	expr string
	want string
}

type cacheEntry struct {
	id   cacheID
	done chan struct{} // closed when prog or err is set
	prog *Program
	err  error
}

// NewCache returns a cache of at most size programs; size <= 0 means
// DefaultCacheSize.
func NewCache(size int) *Cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &Cache{size: size, order: list.New(), entries: map[cacheID]*list.Element{}}
}

// Get returns the program for expr compiled in env with result type want,
// compiling it on the first lookup for key.
func (c *Cache) Get(env *Env, key CacheKey, expr string, want Type) (*Program, error) {
	id := cacheID{env: env, key: key, expr: expr, want: want.String()}
	entry, found := c.lookup(id)
	if found {
		<-entry.done
		return entry.prog, entry.err
	}
	entry.prog, entry.err = env.Compile(expr, want)
	c.mu.Lock()
	if entry.err != nil {
		c.remove(entry)
	}
	close(entry.done)
	c.mu.Unlock()
	return entry.prog, entry.err
}

// lookup finds the entry for id, or adds an empty one that the caller must
// fill.
func (c *Cache) lookup(id cacheID) (*cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[id]; ok {
		c.stats.Hits++
		c.order.MoveToFront(el)
		return el.Value.(*cacheEntry), true
	}
	c.stats.Misses++
	entry := &cacheEntry{id: id, done: make(chan struct{})}
	c.entries[id] = c.order.PushFront(entry)
	for c.order.Len() > c.size {
		c.remove(c.order.Back().Value.(*cacheEntry))
		c.stats.Evictions++
	}
	return entry, false
}

// remove drops entry if it is still cached. c.mu must be held.
func (c *Cache) remove(entry *cacheEntry) {
	if el, ok := c.entries[entry.id]; ok && el.Value == entry {
		c.order.Remove(el)
		delete(c.entries, entry.id)
	}
}

// Stats returns the counters and the current number of entries.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Entries = c.order.Len()
	return s
}
