package kv

import (
	"container/list"
	"sync"
	"time"

	"github.com/perkhq/perk/internal/platform/clock"
)

// memCache is a bounded in-process cache with per-entry expiry, evicting the least recently used
// entry when full.
type memCache struct {
	mu    sync.Mutex
	max   int
	clock clock.Clock
	order *list.List // front = most recently used
	items map[string]*list.Element
}

type cacheEntry struct {
	key     string
	value   []byte
	expires time.Time
}

func newMemCache(maxEntries int, c clock.Clock) *memCache {
	return &memCache{max: maxEntries, clock: c, order: list.New(), items: map[string]*list.Element{}}
}

func (c *memCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !c.clock.Now().Before(e.expires) {
		c.remove(el)
		return nil, false
	}
	c.order.MoveToFront(el)
	return clone(e.value), true
}

func (c *memCache) set(key string, v []byte, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &cacheEntry{key: key, value: clone(v), expires: c.clock.Now().Add(ttl)}
	if el, ok := c.items[key]; ok {
		el.Value = e
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(e)
	for c.order.Len() > c.max {
		c.remove(c.order.Back())
	}
}

func (c *memCache) delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.remove(el)
	}
}

func (c *memCache) remove(el *list.Element) {
	c.order.Remove(el)
	delete(c.items, el.Value.(*cacheEntry).key)
}

func clone(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return append([]byte(nil), b...)
}
