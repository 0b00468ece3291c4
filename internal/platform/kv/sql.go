package kv

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

//go:embed migrations
var migrationsFS embed.FS

// Migrations creates the SQL store's tables (kv_counters, kv_locks) on both engines.
var Migrations = sqldb.Migrations{Module: "kv", FS: migrationsFS, Dir: "migrations"}

// DefaultCacheEntries bounds the SQL store's in-process cache when SQLOptions.CacheEntries is 0.
const DefaultCacheEntries = 10_000

// SQLOptions configures NewSQL.
type SQLOptions struct {
	// Clock tells lock expiry and cache expiry (default clock.Real).
	Clock clock.Clock
	// CacheEntries bounds the in-process cache (default DefaultCacheEntries).
	CacheEntries int
	// Registerer receives the store's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// SQL is the Store for deployments without Redis: counters and locks live in the shared database
// (so several perk nodes stay correct), the cache lives in this process only (a CacheDelete does
// not reach other nodes).
type SQL struct {
	db      *sqldb.DB
	clock   clock.Clock
	cache   *memCache
	metrics *metrics
}

// NewSQL returns a Store on db, which must be migrated with Migrations.
func NewSQL(db *sqldb.DB, opts SQLOptions) (*SQL, error) {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.CacheEntries <= 0 {
		opts.CacheEntries = DefaultCacheEntries
	}
	m, err := newMetrics(opts.Registerer, "sql")
	if err != nil {
		return nil, err
	}
	return &SQL{db: db, clock: opts.Clock, cache: newMemCache(opts.CacheEntries, opts.Clock), metrics: m}, nil
}

var _ Store = (*SQL)(nil)

// Add implements Store.
func (s *SQL) Add(ctx context.Context, key string, delta int64, b Bounds) (int64, error) {
	if key == "" {
		return 0, errors.New("kv: empty key")
	}
	next, err := s.apply(ctx, []Op{{Key: key, Delta: delta, Bounds: b}})
	s.metrics.observe("add", err)
	if oob := (*OutOfBoundsError)(nil); errors.As(err, &oob) {
		return oob.Current, err
	}
	return next[key], err
}

// AddAll implements Store.
func (s *SQL) AddAll(ctx context.Context, ops []Op) error {
	if err := checkOps(ops); err != nil {
		return err
	}
	_, err := s.apply(ctx, ops)
	s.metrics.observe("add_all", err)
	return err
}

// apply locks the rows of every key (creating missing ones at 0, undone if the transaction rolls
// back), plans the adds in Go and writes the new values, all in one transaction.
func (s *SQL) apply(ctx context.Context, ops []Op) (map[string]int64, error) {
	var next map[string]int64
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		keys := distinctKeys(ops)
		cur, err := s.lockCounters(ctx, tx, keys)
		if err != nil {
			return err
		}
		next, err = plan(ops, cur)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if next[k] == cur[k] {
				continue
			}
			if _, err := tx.Exec(ctx, `UPDATE kv_counters SET value = $2 WHERE key = $1`, k, next[k]); err != nil {
				return err
			}
		}
		return nil
	})
	return next, err
}

// lockCounters reads and locks the counters of keys (sorted), first inserting missing ones at 0
// so that PostgreSQL has rows to lock.
func (s *SQL) lockCounters(ctx context.Context, tx *sqldb.Tx, keys []string) (map[string]int64, error) {
	cur, err := s.selectForUpdate(ctx, tx, keys)
	if err != nil || len(cur) == len(keys) {
		return cur, err
	}
	var missing []any
	for _, k := range keys {
		if _, ok := cur[k]; !ok {
			missing = append(missing, k)
		}
	}
	values := make([]string, len(missing))
	for i := range missing {
		values[i] = "(" + tx.Dialect().Placeholder(i+1) + ", 0)"
	}
	if _, err := tx.Exec(ctx, `INSERT INTO kv_counters (key, value) VALUES `+strings.Join(values, ", ")+
		` ON CONFLICT (key) DO NOTHING`, missing...); err != nil {
		return nil, err
	}
	return s.selectForUpdate(ctx, tx, keys)
}

func (s *SQL) selectForUpdate(ctx context.Context, tx *sqldb.Tx, keys []string) (map[string]int64, error) {
	q := `SELECT key, value FROM kv_counters WHERE key IN (` + tx.Dialect().Placeholders(1, len(keys)) +
		`) ORDER BY key` + tx.Dialect().ForUpdate()
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cur := make(map[string]int64, len(keys))
	for rows.Next() {
		var (
			k string
			v int64
		)
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		cur[k] = v
	}
	return cur, rows.Err()
}

// distinctKeys returns the keys of ops, sorted and without repeats: the order rows are locked in.
func distinctKeys(ops []Op) []string {
	keys := make([]string, 0, len(ops))
	for _, op := range ops {
		keys = append(keys, op.Key)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// Get implements Store.
func (s *SQL) Get(ctx context.Context, key string) (int64, error) {
	var v int64
	err := s.db.Reader().QueryRow(ctx, `SELECT value FROM kv_counters WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	s.metrics.observe("get", err)
	return v, err
}

// Set implements Store.
func (s *SQL) Set(ctx context.Context, key string, v int64) error {
	if key == "" {
		return errors.New("kv: empty key")
	}
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO kv_counters (key, value) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, key, v)
		return err
	})
	s.metrics.observe("set", err)
	return err
}

// Lock implements Store. The lock row is taken over in one statement when it has expired.
func (s *SQL) Lock(ctx context.Context, key string, ttl time.Duration) (*Lock, error) {
	if err := checkTTL(ttl); err != nil {
		return nil, err
	}
	token := ids.Secret(16)
	now := s.clock.Now()
	var taken bool
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO kv_locks (key, token, expires_us) VALUES ($1, $2, $3)
			ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, expires_us = EXCLUDED.expires_us
			WHERE kv_locks.expires_us <= $4`,
			key, token, sqldb.Micros(now.Add(ttl)), sqldb.Micros(now))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		taken = n == 1
		return err
	})
	if err == nil && !taken {
		err = ErrLocked
	}
	s.metrics.observe("lock", err)
	if err != nil {
		return nil, err
	}
	return &Lock{key: key, token: token, backend: s}, nil
}

func (s *SQL) release(ctx context.Context, key, token string) (bool, error) {
	ok, err := s.execOne(ctx, `DELETE FROM kv_locks WHERE key = $1 AND token = $2 AND expires_us > $3`,
		key, token, sqldb.Micros(s.clock.Now()))
	s.metrics.observe("lock_release", lostErr(ok, err))
	return ok, err
}

func (s *SQL) extend(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	now := s.clock.Now()
	ok, err := s.execOne(ctx, `UPDATE kv_locks SET expires_us = $3 WHERE key = $1 AND token = $2 AND expires_us > $4`,
		key, token, sqldb.Micros(now.Add(ttl)), sqldb.Micros(now))
	s.metrics.observe("lock_extend", lostErr(ok, err))
	return ok, err
}

// execOne runs one write statement and reports whether it touched a row.
func (s *SQL) execOne(ctx context.Context, query string, args ...any) (bool, error) {
	var ok bool
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		ok = n > 0
		return err
	})
	return ok, err
}

func lostErr(ok bool, err error) error {
	if err == nil && !ok {
		return ErrLockLost
	}
	return err
}

// CacheGet implements Store (in-process).
func (s *SQL) CacheGet(_ context.Context, key string) ([]byte, bool, error) {
	v, ok := s.cache.get(key)
	s.metrics.observeCache(ok, nil)
	return v, ok, nil
}

// CacheSet implements Store (in-process).
func (s *SQL) CacheSet(_ context.Context, key string, v []byte, ttl time.Duration) error {
	if err := checkTTL(ttl); err != nil {
		return err
	}
	s.cache.set(key, v, ttl)
	return nil
}

// CacheDelete implements Store (in-process).
func (s *SQL) CacheDelete(_ context.Context, key string) error {
	s.cache.delete(key)
	return nil
}
