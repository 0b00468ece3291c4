// Package activity is perk's activity log: every domain event on the DOMAIN stream (a grant, a
// ledger entry, a task or coupon state change) becomes a record, written asynchronously by a
// consumer and never on the request path. Records are searchable by user, type, source and time
// range with cursor pagination, and pruned after a configurable retention.
package activity

import (
	"embed"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

//go:embed migrations
var migrationFiles embed.FS

// Migrations is the activity log's migration set (module "activity"), for sqldb.DB.Migrate.
var Migrations = sqldb.Migrations{Module: "activity", FS: migrationFiles, Dir: "migrations"}

// Record is one entry of the activity log: a domain event as it was recorded.
type Record struct {
	// ID is the event's id (unique; a redelivered event adds no second record).
	ID string `json:"id"`
	// TenantID is the merchant.
	TenantID string `json:"tenant_id"`
	// UserID is the user concerned; empty for merchant-level events.
	UserID string `json:"user_id,omitempty"`
	// Type is the event type, e.g. "grant.succeeded".
	Type string `json:"type"`
	// SourceKind and SourceID name the object the event is about, e.g. "grant", "grt_…".
	SourceKind string `json:"source_kind,omitempty"`
	SourceID   string `json:"source_id,omitempty"`
	// OccurredAt is the event's time (UTC, microsecond precision).
	OccurredAt time.Time `json:"occurred_at"`
	// RecordedAt is when the log wrote the record.
	RecordedAt time.Time `json:"recorded_at"`
	// Data is the event's payload, JSON, as the producer wrote it.
	Data json.RawMessage `json:"data,omitempty"`
}

// Page is one page of records, newest first.
type Page struct {
	Items []Record `json:"items"`
	// Next is the cursor of the following page; empty on the last page.
	Next string `json:"next_cursor,omitempty"`
}

// Defaults of Options.
const (
	// DefaultRetention is the retention perk's configuration uses unless told otherwise.
	DefaultRetention = 90 * 24 * time.Hour
	// DefaultPruneInterval is how often Run prunes.
	DefaultPruneInterval = time.Hour
	// DefaultPruneBatch is how many records one prune transaction deletes.
	DefaultPruneBatch = 500
	// DefaultMaxBatch bounds the records written in one transaction.
	DefaultMaxBatch = 64
	// ConsumerName is the durable consumer's name on the DOMAIN stream.
	ConsumerName = "activity"
)

// Options configures a Service. Zero fields take the defaults, except Retention.
type Options struct {
	// Retention is how long records are kept, by the time their event occurred. Zero keeps them
	// forever (perk's configuration defaults to DefaultRetention, 90 days). Events older than the
	// retention when they arrive are not recorded.
	Retention time.Duration
	// PruneInterval is how often Run deletes records past Retention (default 1h).
	PruneInterval time.Duration
	// PruneBatch is how many records one prune transaction deletes (default 500).
	PruneBatch int
	// MaxBatch bounds the events recorded in one transaction, and so the messages the consumer
	// pulls at once (default 64). Larger batches record faster but, on SQLite, hold the one writer
	// longer, which delays the transactions of the request path behind them.
	MaxBatch int
	// Clock stamps recorded_at and decides what is old (default clock.Real).
	Clock clock.Clock
	// Logger receives skipped messages and prune failures (default slog.Default()).
	Logger *slog.Logger
	// Registerer registers the log's metrics; nil means don't register.
	Registerer prometheus.Registerer
}

func (o Options) withDefaults() Options {
	if o.Retention < 0 {
		o.Retention = 0
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = DefaultPruneInterval
	}
	if o.PruneBatch <= 0 {
		o.PruneBatch = DefaultPruneBatch
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Service writes and searches the activity log. It is safe for concurrent use.
type Service struct {
	db      *sqldb.DB
	bus     *bus.Bus
	opts    Options
	clock   clock.Clock
	log     *slog.Logger
	metrics *metrics
}

// New returns a Service on db that consumes from b. b may be nil for a Service that only searches
// and prunes.
func New(db *sqldb.DB, b *bus.Bus, opts Options) *Service {
	opts = opts.withDefaults()
	return &Service{db: db, bus: b, opts: opts, clock: opts.Clock,
		log: opts.Logger.With("component", "activity"), metrics: newMetrics(opts.Registerer)}
}
