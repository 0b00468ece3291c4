// Package kvtest gives tests a Redis: the shared server at PERK_TEST_REDIS_URL (default
// redis://127.0.0.1:6379/0) with a random key prefix whose keys are deleted at cleanup, or a
// private Redis Cluster of local redis-server processes.
package kvtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/kv"
)

// DefaultRedisURL is used when PERK_TEST_REDIS_URL is not set.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// RedisURL is the server the tests use.
func RedisURL() string {
	if u := os.Getenv("PERK_TEST_REDIS_URL"); u != "" {
		return u
	}
	return DefaultRedisURL
}

var shared struct {
	once   sync.Once
	client redis.UniversalClient
	err    error
}

// Client returns a client on the shared test server, failing the test with a precise message
// when the server does not answer. The client is shared by every test of the process.
func Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	shared.once.Do(func() {
		shared.client, shared.err = kv.NewRedisClient(RedisURL(), nil)
		if shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shared.err = shared.client.Ping(ctx).Err()
	})
	if shared.err != nil {
		t.Fatalf("Redis is required for this test and did not answer at %s: %v "+
			"(start it, or set PERK_TEST_REDIS_URL)", RedisURL(), shared.err)
	}
	return shared.client
}

// Prefix returns a fresh random key prefix ("t<hex>:") and deletes every key under it from client
// when the test ends.
func Prefix(t testing.TB, client redis.UniversalClient) string {
	t.Helper()
	prefix := "t" + randomHex(8) + ":"
	t.Cleanup(func() { DeleteAll(t, client, prefix) })
	return prefix
}

// DeleteAll deletes every key starting with prefix, on every master of a Cluster.
func DeleteAll(t testing.TB, client redis.UniversalClient, prefix string) {
	ctx := context.Background()
	each := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			if err := c.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	var err error
	switch c := client.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, each)
	case *redis.Client:
		err = each(ctx, c)
	}
	if err != nil {
		t.Logf("kvtest: deleting keys under %q: %v", prefix, err)
	}
}

// Store returns a kv.Redis on the shared server with a fresh prefix, cleaned up at the end.
func Store(t testing.TB) *kv.Redis {
	t.Helper()
	client := Client(t)
	s, err := kv.NewRedis(kv.RedisOptions{Client: client, Prefix: Prefix(t, client)})
	require.NoError(t, err)
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
