// Package kv holds perk's counters, locks and caches behind one interface, Store, with two
// implementations: Redis (standalone or Cluster, Lua scripts for every multi-step operation) and
// SQL (counters and locks in tables of the shared database, cache in process).
//
// Counters are int64 values, missing = 0, changed only through bounded adds: an add whose result
// would leave its Bounds is refused and changes nothing. AddAll applies several adds all-or-nothing.
// In Redis the keys of one AddAll must live in one Cluster slot, so they must share a hash tag:
// build them with Key(tag, parts...) and give every key of one call the same tag. Both
// implementations check this, so code that passes on SQL also passes on Redis Cluster.
package kv

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Store is the counter, lock and cache API. Every implementation is safe for concurrent use.
type Store interface {
	// Add atomically adds delta to the counter at key (missing = 0) and returns the new value. When
	// the result would fall outside b, nothing changes and the error is an *OutOfBoundsError
	// (errors.Is(err, ErrOutOfBounds)) carrying the current value, which is also returned.
	Add(ctx context.Context, key string, delta int64, b Bounds) (int64, error)
	// AddAll applies every op, in order, or none: the first op whose result would leave its bounds
	// refuses the whole call with an *OutOfBoundsError naming that op's key. Keys of one call must
	// share one hash tag (see Key) unless there is only one distinct key; else ErrCrossSlot.
	AddAll(ctx context.Context, ops []Op) error
	// Get returns the counter at key (missing = 0).
	Get(ctx context.Context, key string) (int64, error)
	// Set overwrites the counter at key, for reconciliation and resets.
	Set(ctx context.Context, key string, v int64) error

	// Lock tries once to take the lock at key for ttl. It returns ErrLocked when another holder
	// has it and it has not expired.
	Lock(ctx context.Context, key string, ttl time.Duration) (*Lock, error)

	// CacheGet returns the cached value at key and whether there was one.
	CacheGet(ctx context.Context, key string) ([]byte, bool, error)
	// CacheSet caches v at key for ttl (> 0).
	CacheSet(ctx context.Context, key string, v []byte, ttl time.Duration) error
	// CacheDelete removes the cached value at key, if any.
	CacheDelete(ctx context.Context, key string) error
}

// Bounds limits the value a counter may take after an add. A nil end is unbounded.
type Bounds struct {
	Min *int64
	Max *int64
}

// AtLeast returns Bounds with only a lower end.
func AtLeast(minimum int64) Bounds { return Bounds{Min: &minimum} }

// AtMost returns Bounds with only an upper end.
func AtMost(maximum int64) Bounds { return Bounds{Max: &maximum} }

// Between returns Bounds with both ends (inclusive).
func Between(minimum, maximum int64) Bounds { return Bounds{Min: &minimum, Max: &maximum} }

// Op is one add of an AddAll.
type Op struct {
	Key    string
	Delta  int64
	Bounds Bounds
}

var (
	// ErrOutOfBounds is matched (errors.Is) by every *OutOfBoundsError.
	ErrOutOfBounds = errors.New("kv: out of bounds")
	// ErrLocked means the lock is held by another holder.
	ErrLocked = errors.New("kv: locked by another holder")
	// ErrLockLost means the lock is no longer held with this token (expired, released or taken).
	ErrLockLost = errors.New("kv: lock no longer held")
	// ErrCrossSlot means the keys of one AddAll do not share one hash tag.
	ErrCrossSlot = errors.New("kv: keys of one AddAll must share one hash tag")
)

// OutOfBoundsError is a refused add: Key's value is Current, and Current+Delta would leave the bounds.
type OutOfBoundsError struct {
	Key     string
	Current int64
	Delta   int64
}

// Error implements error.
func (e *OutOfBoundsError) Error() string {
	return fmt.Sprintf("kv: adding %d to %q (now %d) leaves its bounds", e.Delta, e.Key, e.Current)
}

// Is makes errors.Is(err, ErrOutOfBounds) true.
func (e *OutOfBoundsError) Is(target error) bool { return target == ErrOutOfBounds }

// Key builds "{tag}:part:part…". The tag is the Redis Cluster hash tag: keys with the same tag live
// in the same slot, which AddAll requires. The tag must be non-empty and hold no braces.
func Key(tag string, parts ...string) string {
	var b strings.Builder
	b.WriteString("{")
	b.WriteString(tag)
	b.WriteString("}")
	for _, p := range parts {
		b.WriteString(":")
		b.WriteString(p)
	}
	return b.String()
}

// hashTag returns the hash tag of key as Redis Cluster computes it: the text between the first
// "{" and the next "}", when not empty.
func hashTag(key string) (string, bool) {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return "", false
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return "", false
	}
	return key[open+1 : open+1+end], true
}

// checkOps validates an AddAll: at least one op, no empty key, one shared hash tag when more than
// one distinct key.
func checkOps(ops []Op) error {
	if len(ops) == 0 {
		return errors.New("kv: AddAll needs at least one op")
	}
	first := ops[0].Key
	tag, tagged := hashTag(first)
	for _, op := range ops {
		if op.Key == "" {
			return errors.New("kv: empty key")
		}
		if op.Key == first {
			continue
		}
		t, ok := hashTag(op.Key)
		if !tagged || !ok || t != tag {
			return fmt.Errorf("%w: %q and %q", ErrCrossSlot, first, op.Key)
		}
	}
	return nil
}

// window returns the range the current value must lie in for value+delta to stay within b and
// within int64. lo > hi means no value qualifies.
func (b Bounds) window(delta int64) (lo, hi int64) {
	lo, hi = math.MinInt64, math.MaxInt64
	if delta > 0 {
		hi = math.MaxInt64 - delta
	} else if delta < 0 {
		lo = math.MinInt64 - delta
	}
	if b.Min != nil {
		lo = max(lo, subSat(*b.Min, delta))
	}
	if b.Max != nil {
		hi = min(hi, subSat(*b.Max, delta))
	}
	return lo, hi
}

// subSat returns a-d, saturated to the int64 range.
func subSat(a, d int64) int64 {
	r := a - d
	if d > 0 && r > a {
		return math.MinInt64
	}
	if d < 0 && r < a {
		return math.MaxInt64
	}
	return r
}

// plan applies ops in order to the current values and returns the new values, or the first
// refusal. Values missing from cur are 0.
func plan(ops []Op, cur map[string]int64) (map[string]int64, error) {
	next := make(map[string]int64, len(cur))
	for k, v := range cur {
		next[k] = v
	}
	for _, op := range ops {
		v := next[op.Key]
		lo, hi := op.Bounds.window(op.Delta)
		if v < lo || v > hi {
			return nil, &OutOfBoundsError{Key: op.Key, Current: v, Delta: op.Delta}
		}
		next[op.Key] = v + op.Delta
	}
	return next, nil
}

// checkTTL refuses a non-positive ttl.
func checkTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("kv: ttl must be positive, got %s", ttl)
	}
	return nil
}
