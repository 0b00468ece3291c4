package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// The domain events the ledger emits.
const (
	// EventEntryPosted is emitted for every committed entry; its data is the Entry.
	EventEntryPosted = "ledger.entry_posted"
	// EventPointsExpired is emitted once per lot the expiry sweep expires (in addition to the
	// expire entry's EventEntryPosted); its data is the Entry.
	EventPointsExpired = "ledger.points_expired"
)

// DefaultLinger is the group committer's default Linger.
const DefaultLinger = 200 * time.Microsecond

// Options configures a Service. Every field is optional.
type Options struct {
	// Clock tells the time; nil means the wall clock.
	Clock clock.Clock
	// Events, when set, receives a domain event for each entry, in the entry's transaction.
	Events bus.EventsFunc
	// Registerer registers the service's metrics; nil registers none.
	Registerer prometheus.Registerer
	// MaxBatch bounds the grants of one group commit (default 512).
	MaxBatch int
	// Committers is how many group-commit transactions may run at once (default 1: on SQLite there
	// is one writer; on PostgreSQL, one committer with Linger made the largest batches and the
	// highest throughput on a 2-core box, and every node runs its own).
	Committers int
	// Linger is how long the group committer may wait for more grants before committing a batch
	// smaller than the recent concurrency (default 200µs; negative disables it). See
	// GroupCommitOptions.Linger.
	Linger time.Duration
	// ExpiringWindow is the window of Account.ExpiringSoon (default 30 days).
	ExpiringWindow time.Duration
}

// Service posts to and reads from the ledger. Every method is scoped to one tenant and returns
// problem errors for anything a client should see. Close it to stop the group committer.
type Service struct {
	db        *sqldb.DB
	clock     clock.Clock
	events    bus.EventsFunc
	metrics   *metrics
	window    time.Duration
	committer *GroupCommitter[grantRequest, grantResult]

	assetsMu sync.RWMutex
	assets   map[string]bool // "tenant\x00asset" of defined assets (never removed)
}

// New returns a Service on db and starts its group committer.
func New(db *sqldb.DB, opts Options) (*Service, error) {
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Service{db: db, clock: opts.Clock, events: opts.Events, metrics: m, window: opts.ExpiringWindow,
		assets: map[string]bool{}}
	if s.clock == nil {
		s.clock = clock.Real{}
	}
	if err := db.Prepare(context.Background(), preparedStatements(db.Dialect())...); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	if s.window <= 0 {
		s.window = 30 * 24 * time.Hour
	}
	workers := max(opts.Committers, 1)
	linger := opts.Linger
	if linger == 0 {
		linger = DefaultLinger
	}
	s.committer = NewGroupCommitter(GroupCommitOptions{MaxBatch: opts.MaxBatch, Workers: workers, Linger: linger,
		OnBatch: func(size int, took time.Duration) {
			m.batchSize.Observe(float64(size))
			m.commit.Observe(took.Seconds())
		}}, s.flushGrants)
	return s, nil
}

// Close stops the group committer after flushing what is queued. Later Grant calls fail.
func (s *Service) Close() error {
	s.committer.Close()
	return nil
}

// DefineAssetParams names a merchant-defined asset.
type DefineAssetParams struct {
	TenantID string
	// Asset is a slug: a lower-case letter, then up to 31 of a-z 0-9 _.
	Asset string
	Name  string
}

// DefineAsset registers an asset for a tenant. Defining an asset again is a no-op (its name is
// kept); the built-in assets cannot be defined.
func (s *Service) DefineAsset(ctx context.Context, p DefineAssetParams) (Asset, error) {
	var fs problem.Fields
	checkTenant(&fs, p.TenantID)
	switch {
	case !assetPattern.MatchString(p.Asset):
		fs.Add("asset", "must be a lower-case letter followed by up to 31 of a-z, 0-9 and _")
	case builtIn(p.Asset):
		fs.Add("asset", "%q is built in", p.Asset)
	}
	if len(p.Name) > 100 {
		fs.Add("name", "must be at most 100 characters")
	}
	if err := fs.Err("the asset is invalid"); err != nil {
		return Asset{}, err
	}
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO ledger_assets (tenant_id, asset, name, created_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant_id, asset) DO NOTHING`, p.TenantID, p.Asset, p.Name, sqldb.Micros(s.clock.Now()))
		return err
	})
	if err != nil {
		return Asset{}, fmt.Errorf("ledger: define asset: %w", err)
	}
	s.rememberAsset(p.TenantID, p.Asset)
	var name string
	err = s.db.Reader().QueryRow(ctx, `SELECT name FROM ledger_assets WHERE tenant_id = $1 AND asset = $2`,
		p.TenantID, p.Asset).Scan(&name)
	return Asset{Asset: p.Asset, Name: name}, err
}

// Assets lists the tenant's assets: the built-in ones, then its own by slug.
func (s *Service) Assets(ctx context.Context, tenantID string) ([]Asset, error) {
	out := []Asset{{Asset: AssetPoints, BuiltIn: true}, {Asset: AssetGrowth, BuiltIn: true}}
	rows, err := s.db.Reader().Query(ctx, `SELECT asset, name FROM ledger_assets WHERE tenant_id = $1 ORDER BY asset`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("ledger: list assets: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a Asset
		if err := rows.Scan(&a.Asset, &a.Name); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func builtIn(asset string) bool { return asset == AssetPoints || asset == AssetGrowth }

func (s *Service) rememberAsset(tenantID, asset string) {
	s.assetsMu.Lock()
	s.assets[tenantID+"\x00"+asset] = true
	s.assetsMu.Unlock()
}

// knownAsset tells whether the tenant may post in asset. Defined assets are cached forever (they
// are never removed); a miss asks the database, so an asset defined on another node is found.
func (s *Service) knownAsset(ctx context.Context, tenantID, asset string) (bool, error) {
	if builtIn(asset) {
		return true, nil
	}
	if !assetPattern.MatchString(asset) {
		return false, nil
	}
	s.assetsMu.RLock()
	ok := s.assets[tenantID+"\x00"+asset]
	s.assetsMu.RUnlock()
	if ok {
		return true, nil
	}
	var one int
	err := s.db.Reader().QueryRow(ctx, `SELECT 1 FROM ledger_assets WHERE tenant_id = $1 AND asset = $2`,
		tenantID, asset).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ledger: look up asset: %w", err)
	}
	s.rememberAsset(tenantID, asset)
	return true, nil
}

// checkAsset adds a field problem when asset is not one the tenant may post in.
func (s *Service) checkAsset(ctx context.Context, fs *problem.Fields, tenantID, asset string) error {
	if asset == "" {
		fs.Add("asset", "is required")
		return nil
	}
	ok, err := s.knownAsset(ctx, tenantID, asset)
	if err != nil {
		return err
	}
	if !ok {
		fs.Add("asset", "unknown asset %q (built in: points, growth; others must be defined first)", asset)
	}
	return nil
}

func checkTenant(fs *problem.Fields, tenantID string) {
	if tenantID == "" || len(tenantID) > 64 {
		fs.Add("tenant_id", "is required (at most 64 characters)")
	}
}

func checkUser(fs *problem.Fields, userID string) {
	switch {
	case userID == "" || len(userID) > 128:
		fs.Add("user_id", "is required (at most 128 characters)")
	case strings.HasPrefix(userID, SystemPrefix):
		fs.Add("user_id", "ids starting with %q are reserved for system accounts", SystemPrefix)
	}
}

func checkKey(fs *problem.Fields, path, key string) {
	switch {
	case !keyPattern.MatchString(key):
		fs.Add(path, "is required: 1 to 200 printable ASCII characters without spaces")
	case strings.HasPrefix(key, internalKeyPrefix):
		fs.Add(path, "keys starting with %q are reserved", internalKeyPrefix)
	}
}

// MaxAmount bounds the amount of one entry, so that no sum of entries can overflow int64.
const MaxAmount = 1_000_000_000_000_000

func checkAmount(fs *problem.Fields, amount int64) {
	switch {
	case amount <= 0:
		fs.Add("amount", "must be a positive integer")
	case amount > MaxAmount:
		fs.Add("amount", "must be at most %d", int64(MaxAmount))
	}
}

func checkSource(fs *problem.Fields, kind, id string) {
	if len(kind) > 64 {
		fs.Add("source_kind", "must be at most 64 characters")
	}
	if len(id) > 200 {
		fs.Add("source_id", "must be at most 200 characters")
	}
}

// shardOf spreads a user's writes to system accounts over the shards.
func shardOf(userID string) int {
	h := uint32(2166136261)
	for i := 0; i < len(userID); i++ {
		h ^= uint32(userID[i])
		h *= 16777619
	}
	return int(h % systemShards)
}
