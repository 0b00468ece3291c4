package kv_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/kv"
	"github.com/perkhq/perk/internal/platform/kv/kvtest"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestSQL(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, []sqldb.Migrations{kv.Migrations}, func(t *testing.T, db *sqldb.DB) {
		fake := clock.NewFake(epoch)
		s, err := kv.NewSQL(db, kv.SQLOptions{Clock: fake})
		require.NoError(t, err)
		runConformance(t, harness{store: s, fake: fake})
	})
}

func TestRedis(t *testing.T) {
	t.Parallel()
	runConformance(t, harness{store: kvtest.Store(t)})
}

func TestRedisCluster(t *testing.T) {
	t.Parallel()
	addrs := kvtest.StartCluster(t)
	s, err := kv.NewRedis(kv.RedisOptions{ClusterAddrs: addrs, Prefix: "perk:"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.Ping(context.Background()))
	runConformance(t, harness{store: s})
}

func TestRedisRefusesBracesInPrefix(t *testing.T) {
	t.Parallel()
	_, err := kv.NewRedis(kv.RedisOptions{URL: kvtest.RedisURL(), Prefix: "perk:{x}:"})
	require.Error(t, err)
}

func TestKey(t *testing.T) {
	t.Parallel()
	require.Equal(t, "{cpn_1}:user:u_9", kv.Key("cpn_1", "user", "u_9"))
	require.Equal(t, "{cpn_1}", kv.Key("cpn_1"))
}

func TestSQLCacheEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The cache needs no tables; a store on an unmigrated SQLite file is enough.
	db, err := sqldb.Open(ctx, sqldbtest.Options(t, sqldb.SQLite))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	s, err := kv.NewSQL(db, kv.SQLOptions{CacheEntries: 2})
	require.NoError(t, err)

	require.NoError(t, s.CacheSet(ctx, "a", []byte("1"), time.Hour))
	require.NoError(t, s.CacheSet(ctx, "b", []byte("2"), time.Hour))
	_, ok, _ := s.CacheGet(ctx, "a") // a is now the most recently used
	require.True(t, ok)
	require.NoError(t, s.CacheSet(ctx, "c", []byte("3"), time.Hour))

	_, ok, _ = s.CacheGet(ctx, "b")
	require.False(t, ok, "b was least recently used and should be evicted")
	for _, k := range []string{"a", "c"} {
		_, ok, _ = s.CacheGet(ctx, k)
		require.True(t, ok, k)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewPedanticRegistry()
	client := kvtest.Client(t)
	prefix := kvtest.Prefix(t, client)
	s, err := kv.NewRedis(kv.RedisOptions{Client: client, Prefix: prefix, Registerer: reg})
	require.NoError(t, err)
	// A second store on the same registry shares the collector instead of failing.
	s2, err := kv.NewRedis(kv.RedisOptions{Client: client, Prefix: prefix, Registerer: reg})
	require.NoError(t, err)

	_, err = s.Add(ctx, "m", 1, kv.AtMost(1))
	require.NoError(t, err)
	_, err = s2.Add(ctx, "m", 1, kv.AtMost(1))
	require.ErrorIs(t, err, kv.ErrOutOfBounds)
	_, _, err = s.CacheGet(ctx, "nothing")
	require.NoError(t, err)

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP perk_kv_operations_total kv operations by op and result (ok, refused, hit, miss, error).
# TYPE perk_kv_operations_total counter
perk_kv_operations_total{backend="redis",op="add",result="ok"} 1
perk_kv_operations_total{backend="redis",op="add",result="refused"} 1
perk_kv_operations_total{backend="redis",op="cache_get",result="miss"} 1
`), "perk_kv_operations_total"))
}

func BenchmarkAdd(b *testing.B) {
	b.Run("redis", func(b *testing.B) {
		benchAdd(b, kvtest.Store(b))
	})
	for _, d := range sqldbtest.Dialects {
		b.Run("sql-"+string(d), func(b *testing.B) {
			db := sqldbtest.Open(b, d, []sqldb.Migrations{kv.Migrations})
			s, err := kv.NewSQL(db, kv.SQLOptions{})
			require.NoError(b, err)
			benchAdd(b, s)
		})
	}
}

func benchAdd(b *testing.B, s kv.Store) {
	ctx := context.Background()
	k := kv.Key("bench", "n")
	for b.Loop() {
		if _, err := s.Add(ctx, k, 1, kv.AtMost(1<<50)); err != nil {
			b.Fatal(err)
		}
	}
}
