package rules_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/rules"
)

func TestCacheHitsAndMisses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := rules.NewCache(0)
	key := rules.CacheKey{Resource: "task/1", Version: 3}

	p1, err := c.Get(b.env, key, `event.a == 1`, rules.BoolType)
	require.NoError(t, err)
	p2, err := c.Get(b.env, key, `event.a == 1`, rules.BoolType)
	require.NoError(t, err)
	require.Same(t, p1, p2)
	require.Equal(t, rules.CacheStats{Hits: 1, Misses: 1, Entries: 1}, c.Stats())

	// Each part of the key is significant.
	other := setup(t)
	_, err = c.Get(b.env, rules.CacheKey{Resource: "task/1", Version: 4}, `event.a == 1`, rules.BoolType)
	require.NoError(t, err)
	_, err = c.Get(b.env, rules.CacheKey{Resource: "task/2", Version: 3}, `event.a == 1`, rules.BoolType)
	require.NoError(t, err)
	_, err = c.Get(b.env, key, `event.a == 2`, rules.BoolType)
	require.NoError(t, err)
	_, err = c.Get(other.env, key, `event.a == 1`, rules.BoolType)
	require.NoError(t, err)
	_, err = c.Get(b.env, key, `event.a == 1`, rules.DynType)
	require.NoError(t, err)
	require.Equal(t, rules.CacheStats{Hits: 1, Misses: 6, Entries: 6}, c.Stats())
}

func TestCacheDoesNotKeepErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := rules.NewCache(10)
	key := rules.CacheKey{Resource: "task/1", Version: 1}
	for range 2 {
		_, err := c.Get(b.env, key, `evnt.a == 1`, rules.BoolType)
		var ce *rules.CompileError
		require.ErrorAs(t, err, &ce)
	}
	require.Equal(t, rules.CacheStats{Misses: 2}, c.Stats())
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := rules.NewCache(2)
	get := func(v int64) *rules.Program {
		p, err := c.Get(b.env, rules.CacheKey{Resource: "r", Version: v}, `event.a == 1`, rules.BoolType)
		require.NoError(t, err)
		return p
	}
	one := get(1)
	get(2)
	require.Same(t, one, get(1)) // 1 is now the most recent
	get(3)                       // evicts 2
	require.Same(t, one, get(1))
	s := c.Stats()
	require.Equal(t, rules.CacheStats{Hits: 2, Misses: 3, Evictions: 1, Entries: 2}, s)
	get(2)
	require.Equal(t, uint64(4), c.Stats().Misses)
}

func TestCacheConcurrentCompilesOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := rules.NewCache(100)
	const workers, keys = 32, 4
	var wg sync.WaitGroup
	progs := make([][]*rules.Program, keys)
	for k := range progs {
		progs[k] = make([]*rules.Program, workers)
	}
	errs := make(chan error, workers*keys)
	for w := range workers {
		wg.Go(func() {
			for k := range keys {
				key := rules.CacheKey{Resource: fmt.Sprintf("task/%d", k), Version: 1}
				p, err := c.Get(b.env, key, `event.a == 1`, rules.BoolType)
				errs <- err
				progs[k][w] = p
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for k := range keys {
		for w := range workers {
			require.Same(t, progs[k][0], progs[k][w])
		}
	}
	require.Equal(t, rules.CacheStats{Hits: (workers - 1) * keys, Misses: keys, Entries: keys}, c.Stats())
}
