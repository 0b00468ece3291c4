package idem

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStorage keeps records as Redis hashes that expire by themselves (PEXPIRE), one key per
// record: "<prefix>idem:<len>:<tenant>:<len>:<scope>:<key>". Expiry follows Redis's clock.
type RedisStorage struct {
	client redis.UniversalClient
	prefix string
}

// NewRedisStorage returns a Storage on client (standalone or Cluster) with keys under prefix.
func NewRedisStorage(client redis.UniversalClient, prefix string) *RedisStorage {
	return &RedisStorage{client: client, prefix: prefix}
}

var _ Storage = (*RedisStorage)(nil)

func (s *RedisStorage) key(k RecordKey) string {
	return fmt.Sprintf("%sidem:%d:%s:%d:%s:%s", s.prefix, len(k.Tenant), k.Tenant, len(k.Scope), k.Scope, k.Key)
}

// beginScript: ARGV = fingerprint, token, lease ms. Returns {1} when claimed, else
// {0, state, fingerprint, status, header, body}.
var beginScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  local r = redis.call('HMGET', KEYS[1], 'state', 'fp', 'status', 'header', 'body')
  return {0, r[1], r[2], r[3], r[4], r[5]}
end
redis.call('HSET', KEYS[1], 'state', 'in_flight', 'fp', ARGV[1], 'token', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1}
`)

// completeScript: ARGV = token, status, header, body, ttl ms.
var completeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'in_flight' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'completed', 'status', ARGV[2], 'header', ARGV[3], 'body', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`)

// abandonScript: ARGV = token.
var abandonScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'in_flight' then
  return 0
end
return redis.call('DEL', KEYS[1])
`)

// Begin implements Storage.
func (s *RedisStorage) Begin(ctx context.Context, c Claim, lease time.Duration) (Record, bool, error) {
	res, err := beginScript.Run(ctx, s.client, []string{s.key(c.RecordKey)}, c.Fingerprint, c.Token, ms(lease)).Slice()
	if err != nil {
		return Record{}, false, fmt.Errorf("idem: redis begin: %w", err)
	}
	if len(res) == 1 {
		return Record{}, true, nil
	}
	if len(res) != 6 {
		return Record{}, false, fmt.Errorf("idem: redis begin: unexpected reply %v", res)
	}
	rec := Record{State: State(str(res[1])), Fingerprint: str(res[2])}
	if rec.State == StateCompleted {
		rec.Response.Status, err = strconv.Atoi(str(res[3]))
		if err != nil {
			return Record{}, false, fmt.Errorf("idem: redis record status: %w", err)
		}
		if rec.Response.Header, err = decodeHeader(str(res[4])); err != nil {
			return Record{}, false, fmt.Errorf("idem: redis record header: %w", err)
		}
		rec.Response.Body = emptyNil([]byte(str(res[5])))
	}
	return rec, false, nil
}

// Complete implements Storage.
func (s *RedisStorage) Complete(ctx context.Context, c Claim, resp Response, ttl time.Duration) error {
	header, err := encodeHeader(resp.Header)
	if err != nil {
		return err
	}
	n, err := completeScript.Run(ctx, s.client, []string{s.key(c.RecordKey)},
		c.Token, resp.Status, header, resp.Body, ms(ttl)).Int64()
	if err != nil {
		return fmt.Errorf("idem: redis complete: %w", err)
	}
	if n != 1 {
		return ErrClaimLost
	}
	return nil
}

// Abandon implements Storage.
func (s *RedisStorage) Abandon(ctx context.Context, c Claim) error {
	n, err := abandonScript.Run(ctx, s.client, []string{s.key(c.RecordKey)}, c.Token).Int64()
	if err != nil {
		return fmt.Errorf("idem: redis abandon: %w", err)
	}
	if n != 1 {
		return ErrClaimLost
	}
	return nil
}

// str reads a bulk string of a script reply (nil for a missing field).
func str(x any) string {
	s, _ := x.(string)
	return s
}

// ms is d in whole milliseconds, at least 1.
func ms(d time.Duration) int64 {
	return max(1, (d + time.Millisecond - 1).Milliseconds())
}
