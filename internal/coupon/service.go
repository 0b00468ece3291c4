package coupon

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/kv"
	"github.com/perkhq/perk/internal/platform/rules"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// Options configures a Service. Catalog or Snapshot is required; every other field is optional.
type Options struct {
	// Clock tells the time; nil means the wall clock.
	Clock clock.Clock
	// Catalog reads pinned template versions that are no longer live (and live ones when there is
	// no Snapshot).
	Catalog *catalog.Service
	// Snapshot serves the live templates and issue rules from memory. Register the kinds
	// (RegisterKinds) on its registry.
	Snapshot *catalog.Snapshot
	// KV holds the issuance counters and the per-coupon lock guards when it is a shared store such
	// as Redis. nil or a *kv.SQL keeps the counters in the module's own table, updated inside the
	// issuing transaction (see the package's limits documentation in limits.go).
	KV kv.Store
	// Events writes domain events in the changing transaction; nil writes none.
	Events bus.EventsFunc
	// Registerer registers the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger logs what cannot be returned; nil means slog.Default().
	Logger *slog.Logger
	// RollbackPolicy is what Rollback does with the coupons (default RestoreIfValid).
	RollbackPolicy RollbackPolicy
	// ArchiveAfter is how long an ended coupon stays in the wallet table before Archive moves it
	// (default 90 days).
	ArchiveAfter time.Duration
	// SweepInterval is how often Run sweeps (default 30s); SweepBatch bounds each sweep's rows
	// (default 500).
	SweepInterval time.Duration
	SweepBatch    int
	// WalletCacheTTL keeps each qualified user's usable coupons in memory for qualification, at
	// most this long (see walletcache.go); 0 turns the cache off. WalletCacheCoupons bounds the
	// coupons held, all wallets together (default 500,000).
	WalletCacheTTL     time.Duration
	WalletCacheCoupons int
}

// Service issues, holds, qualifies, redeems and retires coupons. Every method is scoped to one
// tenant and returns problem errors for anything a client should see.
type Service struct {
	db        *sqldb.DB
	opts      Options
	clock     clock.Clock
	log       *slog.Logger
	metrics   *metrics
	templates *templates
	limits    limits
	guard     kv.Store // per-coupon lock guards (a shared store only)
	dialect   sqldb.Dialect
	programs  *rules.Cache
	wallets   *walletCache // nil: off
}

// New returns a Service on db, which must be migrated with Migrations.
func New(db *sqldb.DB, opts Options) (*Service, error) {
	if opts.Catalog == nil && opts.Snapshot == nil {
		return nil, errors.New("coupon: Options.Catalog or Options.Snapshot is required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RollbackPolicy == "" {
		opts.RollbackPolicy = RestoreIfValid
	}
	if !opts.RollbackPolicy.valid() {
		return nil, fmt.Errorf("coupon: unknown rollback policy %q", opts.RollbackPolicy)
	}
	if opts.ArchiveAfter <= 0 {
		opts.ArchiveAfter = 90 * 24 * time.Hour
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = 30 * time.Second
	}
	if opts.SweepBatch <= 0 {
		opts.SweepBatch = 500
	}
	if opts.WalletCacheCoupons <= 0 {
		opts.WalletCacheCoupons = 500_000
	}
	s := &Service{db: db, opts: opts, clock: opts.Clock, log: opts.Logger.With("module", "coupon"),
		metrics: newMetrics(opts.Registerer), templates: newTemplates(opts.Catalog, opts.Snapshot),
		programs: rules.NewCache(0), dialect: db.Dialect()}
	s.wallets = newWalletCache(opts.WalletCacheTTL, opts.WalletCacheCoupons, opts.Clock.Now)
	if shared(opts.KV) {
		s.limits = newKVLimits(opts.KV, opts.Clock, s.log)
		s.guard = opts.KV
	} else {
		s.limits = sqlLimits{dialect: db.Dialect()}
	}
	return s, nil
}

// shared reports whether store is a kv store outside the database (Redis): the SQL store runs its
// own transactions on the database, which an issuing transaction must not wait for.
func shared(store kv.Store) bool {
	if store == nil {
		return false
	}
	_, isSQL := store.(*kv.SQL)
	return !isSQL
}

// now is the clock's time at the stored (microsecond) precision.
func (s *Service) now() time.Time { return sqldb.FromMicros(sqldb.Micros(s.clock.Now())) }

// emit writes events in tx, if an event sink is configured. Every change of a coupon's state
// passes here, so it also drops the owners' cached wallets once tx has committed.
func (s *Service) emit(ctx context.Context, tx *sqldb.Tx, events []bus.Event) error {
	if s.wallets != nil && len(events) > 0 {
		keys := walletKeys(events)
		tx.AfterCommit(func() { s.wallets.drop(keys...) })
	}
	if s.opts.Events == nil {
		return nil
	}
	if len(events) == 0 {
		return nil
	}
	if err := s.opts.Events(ctx, tx, events...); err != nil {
		return fmt.Errorf("coupon: enqueue %s: %w", events[0].Type, err)
	}
	return nil
}

// couponEvent is the payload of the coupon.* events: the coupon, where it came from (source_kind,
// source_id), and the redemption or reason of the change.
type couponEvent struct {
	CouponID        string `json:"coupon_id"`
	Template        string `json:"template"`
	TemplateVersion int    `json:"template_version"`
	State           State  `json:"state"`
	SourceKind      string `json:"source_kind,omitempty"`
	SourceID        string `json:"source_id,omitempty"`
	ExpiresAt       string `json:"expires_at"`
	RedemptionID    string `json:"redemption_id,omitempty"`
	OrderID         string `json:"order_id,omitempty"`
	Discount        int64  `json:"discount,omitempty"`
	Reason          string `json:"reason,omitempty"`
}

// couponEvents builds one event of type typ per coupon; detail fills the optional fields.
func (s *Service) couponEvents(typ string, now time.Time, cs []Coupon, detail func(c Coupon, e *couponEvent)) []bus.Event {
	if s.opts.Events == nil && s.wallets == nil {
		return nil
	}
	out := make([]bus.Event, len(cs))
	for i, c := range cs {
		data := couponEvent{CouponID: c.ID, Template: c.Template, TemplateVersion: c.TemplateVersion, State: c.State,
			SourceKind: c.SourceKind, SourceID: c.SourceID, ExpiresAt: c.ExpiresAt.Format(time.RFC3339Nano),
			RedemptionID: c.RedemptionID, Discount: c.Discount}
		if detail != nil {
			detail(c, &data)
		}
		out[i] = bus.Event{ID: ids.New("evt", now), Type: typ, TenantID: c.TenantID, UserID: c.UserID,
			SourceKind: "coupon", SourceID: c.ID, Time: now, Data: mustJSON(data)}
	}
	return out
}

// redemptionEventData is the payload of the redemption.* events (the redemption without its cart).
type redemptionEventData struct {
	ID            string          `json:"redemption_id"`
	OrderID       string          `json:"order_id"`
	CouponIDs     []string        `json:"coupon_ids"`
	Discount      int64           `json:"discount"`
	State         RedemptionState `json:"state"`
	ReleaseReason string          `json:"release_reason,omitempty"`
	Restored      []string        `json:"restored,omitempty"`
}

// redemptionEvent builds a redemption.* event about r as it stands after the change.
func (s *Service) redemptionEvent(typ string, r Redemption) []bus.Event {
	if s.opts.Events == nil {
		return nil
	}
	data := redemptionEventData{ID: r.ID, OrderID: r.OrderID, CouponIDs: r.CouponIDs, Discount: r.Discount,
		State: r.State, ReleaseReason: r.ReleaseReason, Restored: r.Restored}
	return []bus.Event{{ID: ids.New("evt", r.UpdatedAt), Type: typ, TenantID: r.TenantID, UserID: r.UserID,
		SourceKind: "redemption", SourceID: r.ID, Time: r.UpdatedAt, Data: mustJSON(data)}}
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
