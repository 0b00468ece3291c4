package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/perkhq/perk/internal/platform/prom"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// RelayOptions configures a Relay. Zero fields take the defaults.
type RelayOptions struct {
	// Clock decides which rows are due and when leases end (default clock.Real).
	Clock clock.Clock
	// PollInterval is how often the relay looks for due rows when nobody wakes it (default 1s).
	PollInterval time.Duration
	// BatchSize is how many rows one claim takes (default 256).
	BatchSize int
	// MinBackoff is the delay after a row's first failed publish (default 1s); it doubles per
	// attempt, with jitter, up to MaxBackoff.
	MinBackoff time.Duration
	// MaxBackoff caps the delay between attempts (default 5m).
	MaxBackoff time.Duration
	// Lease is how long a claim keeps other relays off a batch (default 30s). It must exceed the
	// bus's PublishTimeout; if a relay dies holding a batch, another picks it up after the lease.
	Lease time.Duration
	// Retention is how long sent rows are kept before they are deleted (default 1h).
	Retention time.Duration
	// CleanupInterval is how often sent rows past Retention are deleted (default 1m).
	CleanupInterval time.Duration
	// Node names this relay in claimed_by and logs.
	Node string
	// Registerer registers the relay's metrics; nil means don't register.
	Registerer prometheus.Registerer
	// Logger receives failures (default slog.Default()).
	Logger *slog.Logger
	// AfterPublish is a test hook, called with the ids of the rows JetStream acknowledged, before
	// they are marked sent. A non-nil error makes Run return it at once, leaving the batch claimed
	// and unmarked, as if the process had died there.
	AfterPublish func(ids []string) error
}

func (o RelayOptions) withDefaults() RelayOptions {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	o.BatchSize = min(o.BatchSize, 10000)
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.Retention <= 0 {
		o.Retention = time.Hour
	}
	if o.CleanupInterval <= 0 {
		o.CleanupInterval = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Relay publishes outbox rows to the bus. Any number of relays, on any number of nodes, may run on
// one database: each claims its batch with a lease.
type Relay struct {
	db      *sqldb.DB
	bus     *Bus
	opts    RelayOptions
	log     *slog.Logger
	wake    chan struct{}
	metrics relayMetrics

	lastStats   time.Time
	lastCleanup time.Time
}

type relayMetrics struct {
	pending   prometheus.Gauge
	lag       prometheus.Gauge
	published prometheus.Counter
	failed    prometheus.Counter
}

// NewRelay returns a relay from db's outbox to b. Start it with Run.
func NewRelay(db *sqldb.DB, b *Bus, opts RelayOptions) *Relay {
	opts = opts.withDefaults()
	if minLease := 3 * b.opts.PublishTimeout; opts.Lease < minLease {
		opts.Logger.Warn("bus: relay lease raised to three publish timeouts", "lease", opts.Lease, "raised_to", minLease)
		opts.Lease = minLease
	}
	reg := opts.Registerer
	return &Relay{
		db:   db,
		bus:  b,
		opts: opts,
		log:  opts.Logger.With("component", "outbox-relay", "node", opts.Node),
		wake: make(chan struct{}, 1),
		metrics: relayMetrics{
			pending: prom.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "perk_outbox_pending", Help: "Outbox rows not yet published.",
			})),
			lag: prom.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "perk_outbox_lag_seconds", Help: "Age of the oldest outbox row not yet published.",
			})),
			published: prom.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
				Name: "perk_outbox_published_total", Help: "Outbox rows published and marked sent.",
			})),
			failed: prom.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
				Name: "perk_outbox_failed_total", Help: "Outbox publish attempts that failed and were rescheduled.",
			})),
		},
	}
}

// Wake asks the relay to look for rows now. It never blocks.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// errCrash marks the AfterPublish hook's error: Run stops at once.
type errCrash struct{ err error }

func (e errCrash) Error() string { return "bus: relay stopped by AfterPublish: " + e.err.Error() }
func (e errCrash) Unwrap() error { return e.err }

// Run relays until ctx is done, then returns nil after finishing the batch in hand. It returns an
// error only when the AfterPublish hook asks it to stop. Call it once per Relay.
func (r *Relay) Run(ctx context.Context) error {
	addRunning(r)
	defer removeRunning(r)
	// Prepared once (SQLite), the claim is not parsed again for every batch.
	if err := r.db.Prepare(ctx, claimSQL(r.db.Dialect())); err != nil {
		r.log.Warn("bus: prepare the outbox claim", "err", err)
	}
	poll := time.NewTicker(r.opts.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		r.housekeep(ctx)
		n, err := r.relayBatch(context.WithoutCancel(ctx))
		var crash errCrash
		if errors.As(err, &crash) {
			return err
		}
		if err != nil {
			r.log.Warn("bus: outbox relay", "err", err)
		}
		if err == nil && n == r.opts.BatchSize {
			continue // more may be due
		}
		select {
		case <-ctx.Done():
		case <-r.wake:
		case <-poll.C:
		}
	}
	return nil
}

// outboxRow is a claimed row.
type outboxRow struct {
	id, msgID, subject, header string
	payload                    []byte
	attempts                   int
}

// relayBatch claims due rows, publishes them and records the outcome. It returns how many it claimed.
func (r *Relay) relayBatch(ctx context.Context) (int, error) {
	rows, err := r.claim(ctx, r.opts.Clock.Now())
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	msgs := make([]Message, len(rows))
	for i, row := range rows {
		msgs[i] = Message{Subject: row.subject, ID: row.msgID, Data: row.payload}
		if err := json.Unmarshal([]byte(row.header), &msgs[i].Header); err != nil {
			r.log.Error("bus: outbox row has a bad header; sending without it", "id", row.id, "err", err)
		}
	}
	pubCtx, cancel := context.WithTimeout(ctx, 2*r.bus.opts.PublishTimeout)
	results, _ := r.bus.PublishBatchResults(pubCtx, msgs) // the failures are in results
	cancel()
	errs := make([]error, len(results))
	var sent []string
	for i, res := range results {
		errs[i] = res.Err
		if res.Err == nil {
			sent = append(sent, rows[i].id)
		}
	}
	if r.opts.AfterPublish != nil {
		if err := r.opts.AfterPublish(sent); err != nil {
			return len(rows), errCrash{err}
		}
	}
	if err := r.record(ctx, rows, errs, sent); err != nil {
		return len(rows), err
	}
	r.metrics.published.Add(float64(len(sent)))
	r.metrics.failed.Add(float64(len(rows) - len(sent)))
	return len(rows), nil
}

// claimSQL claims due rows for a relay: $1 the lease's end, $2 the node, $3 now, $4 how many.
func claimSQL(d sqldb.Dialect) string {
	return `UPDATE bus_outbox SET claimed_until = $1, claimed_by = $2 WHERE id IN (
		SELECT id FROM bus_outbox WHERE sent_at IS NULL AND next_attempt_at <= $3 AND claimed_until <= $3
		ORDER BY id LIMIT $4` + d.SkipLocked() + `)
		RETURNING id, msg_id, subject, header, payload, attempts`
}

func (r *Relay) claim(ctx context.Context, now time.Time) ([]outboxRow, error) {
	query := claimSQL(r.db.Dialect())
	var rows []outboxRow
	err := r.db.Tx(ctx, func(tx *sqldb.Tx) error {
		rows = rows[:0]
		res, err := tx.Query(ctx, query, sqldb.Micros(now.Add(r.opts.Lease)), r.opts.Node, sqldb.Micros(now), r.opts.BatchSize)
		if err != nil {
			return err
		}
		defer res.Close()
		for res.Next() {
			var row outboxRow
			if err := res.Scan(&row.id, &row.msgID, &row.subject, &row.header, &row.payload, &row.attempts); err != nil {
				return err
			}
			rows = append(rows, row)
		}
		return res.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("bus: claim outbox rows: %w", err)
	}
	slices.SortFunc(rows, func(a, b outboxRow) int { return strings.Compare(a.id, b.id) })
	return rows, nil
}

// record marks the acknowledged rows sent, in one statement, and reschedules the others.
func (r *Relay) record(ctx context.Context, rows []outboxRow, errs []error, sent []string) error {
	now := r.opts.Clock.Now()
	err := r.db.Tx(ctx, func(tx *sqldb.Tx) error {
		if len(sent) > 0 {
			args := []any{sqldb.Micros(now)}
			for _, id := range sent {
				args = append(args, id)
			}
			_, err := tx.Exec(ctx, `UPDATE bus_outbox SET sent_at = `+tx.Dialect().Placeholder(1)+`, claimed_until = 0, last_error = ''
				WHERE id IN (`+tx.Dialect().Placeholders(2, len(sent))+`)`, args...)
			if err != nil {
				return err
			}
		}
		for i, row := range rows {
			if errs[i] == nil {
				continue
			}
			next := now.Add(r.backoff(row.attempts + 1))
			_, err := tx.Exec(ctx, `UPDATE bus_outbox SET attempts = attempts + 1, next_attempt_at = $1,
				last_error = $2, claimed_until = 0 WHERE id = $3 AND sent_at IS NULL`,
				sqldb.Micros(next), truncate(errs[i].Error(), 1000), row.id)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bus: record outbox results: %w", err)
	}
	if failed := len(rows) - len(sent); failed > 0 {
		r.log.Warn("bus: outbox publish failed; will retry", "failed", failed, "of", len(rows), "err", firstErr(errs))
	}
	return nil
}

// backoff is the delay before attempt n+1 after n failures: exponential, capped, with equal jitter.
func (r *Relay) backoff(failures int) time.Duration {
	d := r.opts.MaxBackoff
	if shift := failures - 1; shift < 30 {
		d = min(r.opts.MinBackoff<<shift, r.opts.MaxBackoff)
	}
	half := d / 2
	return half + rand.N(half+1)
}

// housekeep refreshes the gauges (at most once a second) and deletes old sent rows (every
// CleanupInterval). Failures are logged: they must not stop the relay.
func (r *Relay) housekeep(ctx context.Context) {
	if time.Since(r.lastStats) >= time.Second {
		r.lastStats = time.Now()
		if err := r.refreshGauges(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("bus: outbox stats", "err", err)
		}
	}
	if time.Since(r.lastCleanup) >= r.opts.CleanupInterval {
		r.lastCleanup = time.Now()
		if err := r.deleteSent(ctx, r.opts.Clock.Now().Add(-r.opts.Retention)); err != nil && ctx.Err() == nil {
			r.log.Warn("bus: outbox cleanup", "err", err)
		}
	}
}

func (r *Relay) refreshGauges(ctx context.Context) error {
	var (
		pending int64
		oldest  int64
	)
	err := r.db.Reader().QueryRow(ctx,
		`SELECT COUNT(*), COALESCE(MIN(created_at), 0) FROM bus_outbox WHERE sent_at IS NULL`).Scan(&pending, &oldest)
	if err != nil {
		return err
	}
	r.metrics.pending.Set(float64(pending))
	lag := 0.0
	if pending > 0 {
		lag = max(r.opts.Clock.Now().Sub(sqldb.FromMicros(oldest)).Seconds(), 0)
	}
	r.metrics.lag.Set(lag)
	return nil
}

// deleteSent deletes rows sent before cutoff, a small batch per transaction.
func (r *Relay) deleteSent(ctx context.Context, cutoff time.Time) error {
	return deleteInBatches(ctx, r.db, `DELETE FROM bus_outbox WHERE id IN (
		SELECT id FROM bus_outbox WHERE sent_at IS NOT NULL AND sent_at < $1 LIMIT $2)`, sqldb.Micros(cutoff))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
