package kv

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/perkhq/perk/internal/platform/ids"
)

// RedisOptions configures NewRedis. Exactly one of Client, URL and ClusterAddrs is used, in that
// order of preference.
type RedisOptions struct {
	// Client is an existing client to share (not closed by Close).
	Client redis.UniversalClient
	// URL is a redis:// or rediss:// URL of a standalone server.
	URL string
	// ClusterAddrs are host:port seeds of a Redis Cluster.
	ClusterAddrs []string
	// Prefix starts every key this store writes (e.g. "perk:"); it must hold no braces, so that
	// the hash tags of keys built with Key decide the Cluster slot.
	Prefix string
	// Registerer receives the store's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// NewRedisClient returns a standalone client for url, or a Cluster client when clusterAddrs is
// not empty.
func NewRedisClient(url string, clusterAddrs []string) (redis.UniversalClient, error) {
	off := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if len(clusterAddrs) > 0 {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: clusterAddrs, MaintNotificationsConfig: off}), nil
	}
	if url == "" {
		return nil, errors.New("kv: a Redis URL or cluster addresses are required")
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("kv: redis url: %w", err)
	}
	opts.MaintNotificationsConfig = off
	return redis.NewClient(opts), nil
}

// Redis is the Store on Redis (standalone or Cluster). Keys are "<prefix>n:<key>" for counters,
// "<prefix>l:<key>" for locks and "<prefix>c:<key>" for cache entries.
type Redis struct {
	client  redis.UniversalClient
	owned   bool
	prefix  string
	metrics *metrics
}

// NewRedis returns a Store on Redis. It does not dial; call Ping to check the server.
func NewRedis(opts RedisOptions) (*Redis, error) {
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("kv: redis prefix %q must hold no braces", opts.Prefix)
	}
	m, err := newMetrics(opts.Registerer, "redis")
	if err != nil {
		return nil, err
	}
	client, owned := opts.Client, false
	if client == nil {
		client, err = NewRedisClient(opts.URL, opts.ClusterAddrs)
		if err != nil {
			return nil, err
		}
		owned = true
	}
	return &Redis{client: client, owned: owned, prefix: opts.Prefix, metrics: m}, nil
}

var _ Store = (*Redis)(nil)

// Ping checks that the server answers.
func (r *Redis) Ping(ctx context.Context) error { return r.client.Ping(ctx).Err() }

// Close closes the client if NewRedis created it.
func (r *Redis) Close() error {
	if r.owned {
		return r.client.Close()
	}
	return nil
}

func (r *Redis) counter(key string) string { return r.prefix + "n:" + key }
func (r *Redis) lockKey(key string) string { return r.prefix + "l:" + key }
func (r *Redis) cacheKey(key string) string {
	return r.prefix + "c:" + key
}

// luaCmp compares two canonical decimal int64 strings exactly (Lua numbers are doubles).
const luaCmp = `
local function cmp(a, b)
  if a == b then return 0 end
  local an, bn = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if an ~= bn then if an then return -1 else return 1 end end
  local r
  if #a ~= #b then
    if #a < #b then r = -1 else r = 1 end
  else
    if a < b then r = -1 else r = 1 end
  end
  if an then return -r end
  return r
end
`

// addScript: ARGV = delta, lo, hi. Returns {1, new} or {0, current}, values as strings (an
// integer reply would pass through a Lua double).
var addScript = redis.NewScript(luaCmp + `
local v = redis.call('GET', KEYS[1]) or '0'
if cmp(v, ARGV[2]) < 0 or cmp(v, ARGV[3]) > 0 then return {0, v} end
redis.call('INCRBY', KEYS[1], ARGV[1])
return {1, redis.call('GET', KEYS[1])}
`)

// addAllScript: ARGV = (delta, lo, hi) per key. Checks every op against the running values, then
// applies them all. Returns {0, ”} or {index of the refused op, its current value}. A key's value
// stays an exact string until a second op on the same key needs the running sum (doubles).
var addAllScript = redis.NewScript(luaCmp + `
local cur = {}
for i = 1, #KEYS do
  local k = KEYS[i]
  if cur[k] == nil then cur[k] = redis.call('GET', k) or '0' end
  if cmp(cur[k], ARGV[3*i-1]) < 0 or cmp(cur[k], ARGV[3*i]) > 0 then return {i, cur[k]} end
  cur[k] = string.format('%.0f', tonumber(cur[k]) + tonumber(ARGV[3*i-2]))
end
for i = 1, #KEYS do redis.call('INCRBY', KEYS[i], ARGV[3*i-2]) end
return {0, ''}
`)

// Add implements Store with one Lua script; bounds are compared exactly.
func (r *Redis) Add(ctx context.Context, key string, delta int64, b Bounds) (int64, error) {
	if key == "" {
		return 0, errors.New("kv: empty key")
	}
	lo, hi := b.window(delta)
	v, err := r.add(ctx, key, delta, lo, hi)
	r.metrics.observe("add", err)
	return v, err
}

func (r *Redis) add(ctx context.Context, key string, delta, lo, hi int64) (int64, error) {
	if lo > hi { // no value qualifies
		lo, hi = 1, 0
	}
	res, err := addScript.Run(ctx, r.client, []string{r.counter(key)}, delta, lo, hi).Slice()
	if err != nil {
		return 0, fmt.Errorf("kv: redis add: %w", err)
	}
	ok, v, err := pair(res)
	if err != nil {
		return 0, err
	}
	if !ok {
		return v, &OutOfBoundsError{Key: key, Current: v, Delta: delta}
	}
	return v, nil
}

// AddAll implements Store with one Lua script.
func (r *Redis) AddAll(ctx context.Context, ops []Op) error {
	if err := checkOps(ops); err != nil {
		return err
	}
	err := r.addAll(ctx, ops)
	r.metrics.observe("add_all", err)
	return err
}

func (r *Redis) addAll(ctx context.Context, ops []Op) error {
	keys := make([]string, len(ops))
	args := make([]any, 0, 3*len(ops))
	for i, op := range ops {
		keys[i] = r.counter(op.Key)
		lo, hi := op.Bounds.window(op.Delta)
		if lo > hi { // no value qualifies
			lo, hi = 1, 0
		}
		args = append(args, op.Delta, lo, hi)
	}
	res, err := addAllScript.Run(ctx, r.client, keys, args...).Slice()
	if err != nil {
		return fmt.Errorf("kv: redis add all: %w", err)
	}
	if len(res) != 2 {
		return fmt.Errorf("kv: redis add all: unexpected reply %v", res)
	}
	idx, ok := res[0].(int64)
	if !ok || idx < 0 || idx > int64(len(ops)) {
		return fmt.Errorf("kv: redis add all: unexpected reply %v", res)
	}
	if idx == 0 {
		return nil
	}
	cur, err := toInt(res[1])
	if err != nil {
		return err
	}
	op := ops[idx-1]
	return &OutOfBoundsError{Key: op.Key, Current: cur, Delta: op.Delta}
}

// pair reads a {flag, value} script reply.
func pair(res []any) (bool, int64, error) {
	if len(res) != 2 {
		return false, 0, fmt.Errorf("kv: redis: unexpected reply %v", res)
	}
	v, err := toInt(res[1])
	return res[0] == int64(1), v, err
}

func toInt(x any) (int64, error) {
	switch v := x.(type) {
	case int64:
		return v, nil
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("kv: redis: counter holds %q, not an integer", v)
		}
		return n, nil
	}
	return 0, fmt.Errorf("kv: redis: unexpected value %v", x)
}

// Get implements Store.
func (r *Redis) Get(ctx context.Context, key string) (int64, error) {
	v, err := r.client.Get(ctx, r.counter(key)).Int64()
	if errors.Is(err, redis.Nil) {
		v, err = 0, nil
	}
	r.metrics.observe("get", err)
	return v, err
}

// Set implements Store.
func (r *Redis) Set(ctx context.Context, key string, v int64) error {
	if key == "" {
		return errors.New("kv: empty key")
	}
	err := r.client.Set(ctx, r.counter(key), v, 0).Err()
	r.metrics.observe("set", err)
	return err
}

// releaseScript deletes the lock only if it still holds this token.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// extendScript moves the lock's expiry only if it still holds this token.
var extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)

// Lock implements Store with SET NX PX.
func (r *Redis) Lock(ctx context.Context, key string, ttl time.Duration) (*Lock, error) {
	if err := checkTTL(ttl); err != nil {
		return nil, err
	}
	token := ids.Secret(16)
	ok, err := r.client.SetNX(ctx, r.lockKey(key), token, millis(ttl)).Result()
	if err == nil && !ok {
		err = ErrLocked
	}
	r.metrics.observe("lock", err)
	if err != nil {
		return nil, err
	}
	return &Lock{key: key, token: token, backend: r}, nil
}

func (r *Redis) release(ctx context.Context, key, token string) (bool, error) {
	n, err := releaseScript.Run(ctx, r.client, []string{r.lockKey(key)}, token).Int64()
	r.metrics.observe("lock_release", lostErr(n == 1, err))
	return n == 1, err
}

func (r *Redis) extend(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	n, err := extendScript.Run(ctx, r.client, []string{r.lockKey(key)}, token, millis(ttl).Milliseconds()).Int64()
	r.metrics.observe("lock_extend", lostErr(n == 1, err))
	return n == 1, err
}

// millis rounds ttl up to whole milliseconds, Redis's finest expiry.
func millis(ttl time.Duration) time.Duration {
	return (ttl + time.Millisecond - 1).Truncate(time.Millisecond)
}

// CacheGet implements Store.
func (r *Redis) CacheGet(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := r.client.Get(ctx, r.cacheKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		r.metrics.observeCache(false, nil)
		return nil, false, nil
	}
	r.metrics.observeCache(err == nil, err)
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

// CacheSet implements Store.
func (r *Redis) CacheSet(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if err := checkTTL(ttl); err != nil {
		return err
	}
	return r.client.Set(ctx, r.cacheKey(key), v, millis(ttl)).Err()
}

// CacheDelete implements Store.
func (r *Redis) CacheDelete(ctx context.Context, key string) error {
	return r.client.Del(ctx, r.cacheKey(key)).Err()
}
