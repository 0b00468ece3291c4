package kv_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/kv"
)

// harness is one Store under test. fake is the store's clock when it can be moved (SQL); nil
// means real time (Redis), where expiry is waited for with Eventually.
type harness struct {
	store kv.Store
	fake  *clock.Fake
}

const (
	longTTL = 24 * time.Hour
	waitFor = 15 * time.Second
	tick    = 20 * time.Millisecond
)

// shortTTL is a TTL the test lets run out: moved past with the fake clock, waited for in real time.
func (h harness) shortTTL() time.Duration {
	if h.fake != nil {
		return time.Minute
	}
	return 300 * time.Millisecond
}

// expire makes a shortTTL pass (nothing to do in real time: callers wait with Eventually).
func (h harness) expire() {
	if h.fake != nil {
		h.fake.Advance(2 * time.Minute)
	}
}

// runConformance runs the Store contract against h. Subtests run one after another because
// they share the store's clock.
func runConformance(t *testing.T, h harness) {
	ctx := context.Background()
	s := h.store

	t.Run("AddAndGet", func(t *testing.T) {
		k := kv.Key("add", "n")
		v, err := s.Get(ctx, k)
		require.NoError(t, err)
		require.Zero(t, v)
		v, err = s.Add(ctx, k, 5, kv.Bounds{})
		require.NoError(t, err)
		require.EqualValues(t, 5, v)
		v, err = s.Add(ctx, k, -7, kv.Bounds{})
		require.NoError(t, err)
		require.EqualValues(t, -2, v)
		v, err = s.Add(ctx, k, 0, kv.Bounds{})
		require.NoError(t, err)
		require.EqualValues(t, -2, v)
		v, err = s.Get(ctx, k)
		require.NoError(t, err)
		require.EqualValues(t, -2, v)
	})

	t.Run("AddRefusedOutsideBounds", func(t *testing.T) {
		k := kv.Key("bounds", "n")
		require.NoError(t, s.Set(ctx, k, 10))

		v, err := s.Add(ctx, k, -11, kv.AtLeast(0))
		requireOutOfBounds(t, err, k, 10)
		require.EqualValues(t, 10, v)
		requireValue(t, s, k, 10)

		_, err = s.Add(ctx, k, 3, kv.AtMost(12))
		requireOutOfBounds(t, err, k, 10)
		v, err = s.Add(ctx, k, 2, kv.AtMost(12))
		require.NoError(t, err)
		require.EqualValues(t, 12, v)

		v, err = s.Add(ctx, k, -12, kv.Between(0, 12))
		require.NoError(t, err)
		require.Zero(t, v)
		_, err = s.Add(ctx, k, -1, kv.Between(0, 12))
		requireOutOfBounds(t, err, k, 0)

		missing := kv.Key("bounds", "missing")
		_, err = s.Add(ctx, missing, -1, kv.AtLeast(0))
		requireOutOfBounds(t, err, missing, 0)
		requireValue(t, s, missing, 0)

		_, err = s.Add(ctx, missing, 1, kv.Between(5, 3)) // empty range
		requireOutOfBounds(t, err, missing, 0)
	})

	t.Run("AddNeverOverflows", func(t *testing.T) {
		k := kv.Key("overflow", "n")
		require.NoError(t, s.Set(ctx, k, math.MaxInt64-1))
		_, err := s.Add(ctx, k, 5, kv.Bounds{})
		requireOutOfBounds(t, err, k, math.MaxInt64-1)
		v, err := s.Add(ctx, k, 1, kv.Bounds{})
		require.NoError(t, err)
		require.EqualValues(t, int64(math.MaxInt64), v)

		require.NoError(t, s.Set(ctx, k, math.MinInt64+1))
		_, err = s.Add(ctx, k, -2, kv.Bounds{})
		requireOutOfBounds(t, err, k, math.MinInt64+1)
		_, err = s.Add(ctx, k, math.MinInt64, kv.AtLeast(math.MinInt64))
		requireOutOfBounds(t, err, k, math.MinInt64+1)
	})

	t.Run("SetOverwrites", func(t *testing.T) {
		k := kv.Key("set", "n")
		require.NoError(t, s.Set(ctx, k, 7))
		requireValue(t, s, k, 7)
		require.NoError(t, s.Set(ctx, k, -3))
		requireValue(t, s, k, -3)
		require.Error(t, s.Set(ctx, "", 1))
	})

	t.Run("AddAllIsAllOrNothing", func(t *testing.T) {
		stock, user := kv.Key("cpn1", "stock"), kv.Key("cpn1", "user", "u1")
		require.NoError(t, s.Set(ctx, stock, 1))
		take := []kv.Op{
			{Key: stock, Delta: -1, Bounds: kv.AtLeast(0)},
			{Key: user, Delta: 1, Bounds: kv.AtMost(1)},
		}
		require.NoError(t, s.AddAll(ctx, take))
		requireValue(t, s, stock, 0)
		requireValue(t, s, user, 1)

		requireOutOfBounds(t, s.AddAll(ctx, take), stock, 0)
		requireValue(t, s, user, 1)

		require.NoError(t, s.Set(ctx, stock, 5))
		requireOutOfBounds(t, s.AddAll(ctx, take), user, 1)
		requireValue(t, s, stock, 5)
		requireValue(t, s, user, 1)
	})

	t.Run("AddAllSameKeyTwiceRunsInOrder", func(t *testing.T) {
		k := kv.Key("twice", "n")
		err := s.AddAll(ctx, []kv.Op{{Key: k, Delta: 1, Bounds: kv.AtMost(1)}, {Key: k, Delta: 1, Bounds: kv.AtMost(1)}})
		requireOutOfBounds(t, err, k, 1)
		requireValue(t, s, k, 0)
		require.NoError(t, s.AddAll(ctx, []kv.Op{{Key: k, Delta: 2}, {Key: k, Delta: -1, Bounds: kv.Between(1, 1)}}))
		requireValue(t, s, k, 1)
	})

	t.Run("AddAllNeedsOneHashTag", func(t *testing.T) {
		err := s.AddAll(ctx, []kv.Op{{Key: kv.Key("a", "x"), Delta: 1}, {Key: kv.Key("b", "x"), Delta: 1}})
		require.ErrorIs(t, err, kv.ErrCrossSlot)
		err = s.AddAll(ctx, []kv.Op{{Key: "plain-x", Delta: 1}, {Key: "plain-y", Delta: 1}})
		require.ErrorIs(t, err, kv.ErrCrossSlot)
		err = s.AddAll(ctx, []kv.Op{{Key: kv.Key("a", "x"), Delta: 1}, {Key: "plain", Delta: 1}})
		require.ErrorIs(t, err, kv.ErrCrossSlot)
		requireValue(t, s, kv.Key("a", "x"), 0)
		require.Error(t, s.AddAll(ctx, nil))

		require.NoError(t, s.AddAll(ctx, []kv.Op{{Key: "plain-z", Delta: 4}}))
		requireValue(t, s, "plain-z", 4)
	})

	t.Run("LockIsExclusiveUntilReleased", func(t *testing.T) {
		k := kv.Key("lock", "excl")
		l1, err := s.Lock(ctx, k, longTTL)
		require.NoError(t, err)
		require.Equal(t, k, l1.Key())
		_, err = s.Lock(ctx, k, longTTL)
		require.ErrorIs(t, err, kv.ErrLocked)

		other, err := s.Lock(ctx, kv.Key("lock", "other"), longTTL)
		require.NoError(t, err)
		require.NoError(t, other.Release(ctx))

		require.NoError(t, l1.Release(ctx))
		l2, err := s.Lock(ctx, k, longTTL)
		require.NoError(t, err)
		require.NotEqual(t, l1.Token(), l2.Token())

		require.ErrorIs(t, l1.Release(ctx), kv.ErrLockLost)
		require.ErrorIs(t, l1.Extend(ctx, longTTL), kv.ErrLockLost)
		_, err = s.Lock(ctx, k, longTTL)
		require.ErrorIs(t, err, kv.ErrLocked, "a stale Release must not free the new holder's lock")

		require.NoError(t, l2.Extend(ctx, longTTL))
		require.NoError(t, l2.Release(ctx))
	})

	t.Run("LockRefusesBadTTL", func(t *testing.T) {
		_, err := s.Lock(ctx, kv.Key("lock", "ttl"), 0)
		require.Error(t, err)
		require.NotErrorIs(t, err, kv.ErrLocked)
	})

	t.Run("ExpiredLockGoesToTheNextHolder", func(t *testing.T) {
		k := kv.Key("lock", "expiry")
		old, err := s.Lock(ctx, k, h.shortTTL())
		require.NoError(t, err)
		if h.fake != nil {
			_, err = s.Lock(ctx, k, longTTL)
			require.ErrorIs(t, err, kv.ErrLocked)
		}
		h.expire()
		var next *kv.Lock
		require.Eventually(t, func() bool {
			next, err = s.Lock(ctx, k, longTTL)
			return err == nil
		}, waitFor, tick, "the expired lock was never free again")
		require.ErrorIs(t, old.Extend(ctx, longTTL), kv.ErrLockLost)
		require.ErrorIs(t, old.Release(ctx), kv.ErrLockLost)
		_, err = s.Lock(ctx, k, longTTL)
		require.ErrorIs(t, err, kv.ErrLocked)
		require.NoError(t, next.Release(ctx))
	})

	t.Run("ExtendKeepsTheLock", func(t *testing.T) {
		k := kv.Key("lock", "extend")
		ttl := h.shortTTL()
		if h.fake == nil {
			ttl = time.Second // leaves room for a slow box between Lock and Extend
		}
		l, err := s.Lock(ctx, k, ttl)
		require.NoError(t, err)
		require.NoError(t, l.Extend(ctx, longTTL))
		h.expire()
		if h.fake == nil {
			// Real time: wait past the original TTL by watching a sibling lock of the same TTL expire.
			probe, err := s.Lock(ctx, kv.Key("lock", "extend-probe"), ttl)
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				p, err := s.Lock(ctx, probe.Key(), longTTL)
				if err == nil {
					_ = p.Release(ctx)
				}
				return err == nil
			}, waitFor, tick)
		}
		_, err = s.Lock(ctx, k, longTTL)
		require.ErrorIs(t, err, kv.ErrLocked, "Extend did not move the expiry")
		require.NoError(t, l.Release(ctx))
		require.Error(t, l.Extend(ctx, 0))
	})

	t.Run("Cache", func(t *testing.T) {
		k := kv.Key("cache", "v")
		_, ok, err := s.CacheGet(ctx, k)
		require.NoError(t, err)
		require.False(t, ok)

		require.NoError(t, s.CacheSet(ctx, k, []byte("one"), longTTL))
		v, ok, err := s.CacheGet(ctx, k)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, []byte("one"), v)

		bin := []byte{0, 1, 2, 0xff}
		require.NoError(t, s.CacheSet(ctx, k, bin, longTTL))
		v, ok, err = s.CacheGet(ctx, k)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, bin, v)
		v[0] = 9 // the caller's copy
		v, _, _ = s.CacheGet(ctx, k)
		require.Equal(t, bin, v)

		require.NoError(t, s.CacheDelete(ctx, k))
		_, ok, err = s.CacheGet(ctx, k)
		require.NoError(t, err)
		require.False(t, ok)
		require.NoError(t, s.CacheDelete(ctx, k))

		require.Error(t, s.CacheSet(ctx, k, []byte("x"), 0))

		empty := kv.Key("cache", "empty")
		require.NoError(t, s.CacheSet(ctx, empty, nil, longTTL))
		v, ok, err = s.CacheGet(ctx, empty)
		require.NoError(t, err)
		require.True(t, ok)
		require.Empty(t, v)
	})

	t.Run("CacheExpires", func(t *testing.T) {
		k := kv.Key("cache", "ttl")
		require.NoError(t, s.CacheSet(ctx, k, []byte("soon gone"), h.shortTTL()))
		if h.fake != nil {
			_, ok, err := s.CacheGet(ctx, k)
			require.NoError(t, err)
			require.True(t, ok)
		}
		h.expire()
		require.Eventually(t, func() bool {
			_, ok, err := s.CacheGet(ctx, k)
			return err == nil && !ok
		}, waitFor, tick, "the cache entry never expired")
	})

	t.Run("RaceAddNeverOversells", func(t *testing.T) {
		k := kv.Key("race", "stock")
		require.NoError(t, s.Set(ctx, k, 50))
		var ok, refused atomic.Int64
		hammer(t, 200, func(int) error {
			_, err := s.Add(ctx, k, -1, kv.AtLeast(0))
			return count(err, &ok, &refused)
		})
		require.EqualValues(t, 50, ok.Load())
		require.EqualValues(t, 150, refused.Load())
		requireValue(t, s, k, 0)
	})

	t.Run("RaceAddAllNeverOversells", func(t *testing.T) {
		stock := kv.Key("race2", "stock")
		require.NoError(t, s.Set(ctx, stock, 50))
		var ok, refused atomic.Int64
		hammer(t, 200, func(i int) error {
			user := kv.Key("race2", "user", fmt.Sprint(i%100)) // every user tries twice
			return count(s.AddAll(ctx, []kv.Op{
				{Key: stock, Delta: -1, Bounds: kv.AtLeast(0)},
				{Key: user, Delta: 1, Bounds: kv.AtMost(1)},
			}), &ok, &refused)
		})
		require.EqualValues(t, 50, ok.Load())
		requireValue(t, s, stock, 0)
		var taken int64
		for u := range 100 {
			v, err := s.Get(ctx, kv.Key("race2", "user", fmt.Sprint(u)))
			require.NoError(t, err)
			require.LessOrEqual(t, v, int64(1))
			taken += v
		}
		require.EqualValues(t, 50, taken, "per-user counts must add up to the stock taken")
	})
}

// hammer runs fn(i) for i in [0, n) on n goroutines released at once; any error fails the test.
func hammer(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- fn(i)
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// count tallies an add's outcome and passes on any other error.
func count(err error, ok, refused *atomic.Int64) error {
	switch {
	case err == nil:
		ok.Add(1)
	case errors.Is(err, kv.ErrOutOfBounds):
		refused.Add(1)
	default:
		return err
	}
	return nil
}

func requireValue(t *testing.T, s kv.Store, key string, want int64) {
	t.Helper()
	v, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	require.Equal(t, want, v, "value of %s", key)
}

func requireOutOfBounds(t *testing.T, err error, key string, current int64) {
	t.Helper()
	require.ErrorIs(t, err, kv.ErrOutOfBounds)
	var oob *kv.OutOfBoundsError
	require.ErrorAs(t, err, &oob)
	require.Equal(t, key, oob.Key)
	require.Equal(t, current, oob.Current)
}
