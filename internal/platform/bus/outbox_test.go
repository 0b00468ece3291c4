package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

var sets = []sqldb.Migrations{bus.Migrations}

// runStores runs fn for every bus mode on every SQL engine: four parallel subtests, each with its own
// prefix and database. The database also gets an "effects" table for counting applied effects.
func runStores(t *testing.T, fn func(t *testing.T, env *bustest.Env, db *sqldb.DB)) {
	t.Helper()
	for _, d := range sqldbtest.Dialects {
		for _, m := range bustest.Modes {
			t.Run(string(d)+"/"+string(m), func(t *testing.T) {
				t.Parallel()
				db := sqldbtest.Open(t, d, sets)
				require.NoError(t, db.Tx(t.Context(), func(tx *sqldb.Tx) error {
					_, err := tx.Exec(t.Context(), `CREATE TABLE effects (msg_id TEXT NOT NULL)`)
					return err
				}))
				fn(t, bustest.NewEnv(t, m), db)
			})
		}
	}
}

// effects counts applied effects: all of them and distinct message ids.
func effects(t require.TestingT, db *sqldb.DB) (total, distinct int) {
	require.NoError(t, db.Reader().QueryRow(context.Background(),
		`SELECT COUNT(*), COUNT(DISTINCT msg_id) FROM effects`).Scan(&total, &distinct))
	return total, distinct
}

func applyEffect(ctx context.Context, tx *sqldb.Tx, msg bus.Msg) error {
	_, err := tx.Exec(ctx, `INSERT INTO effects (msg_id) VALUES ($1)`, msg.ID)
	return err
}

// pending counts unsent outbox rows.
func pending(t require.TestingT, db *sqldb.DB) int {
	var n int
	require.NoError(t, db.Reader().QueryRow(context.Background(), `SELECT COUNT(*) FROM bus_outbox WHERE sent_at IS NULL`).Scan(&n))
	return n
}

func enqueue(t *testing.T, db *sqldb.DB, msgs ...bus.Message) {
	t.Helper()
	require.NoError(t, db.Tx(t.Context(), func(tx *sqldb.Tx) error { return bus.Enqueue(t.Context(), tx, msgs...) }))
}

func runRelay(t *testing.T, r *bus.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

func TestOutboxEndToEnd(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		tb := setup(t, env, bus.Options{})
		b := tb.bus
		ctx := tb.ctx
		subject := b.Subject(bus.Domain, "grant", "succeeded")

		rolledBack := errors.New("changed my mind")
		err := db.Tx(ctx, func(tx *sqldb.Tx) error {
			require.NoError(t, bus.Enqueue(ctx, tx, bus.Message{Subject: subject, ID: "never"}))
			return rolledBack
		})
		require.ErrorIs(t, err, rolledBack)

		// Only Enqueue's wake-up can get these out: the relay does not poll within the test.
		runRelay(t, bus.NewRelay(db, b, bus.RelayOptions{PollInterval: time.Hour, Node: "n1", Logger: bustest.Logger()}))
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			return bus.Enqueue(ctx, tx,
				bus.Message{Subject: subject, Data: []byte("a"), Header: map[string]string{"Tenant": "t1"}},
				bus.Message{Subject: subject, Data: []byte("b")},
				bus.Message{Subject: subject, ID: "chosen-id", Data: []byte("c")})
		}))

		var got collector
		_, err = b.Consume(ctx, bus.ConsumerOptions{Stream: bus.Domain, Name: "sink"}, func(_ context.Context, m bus.Msg) error {
			got.add(m)
			return nil
		})
		require.NoError(t, err)
		require.Eventually(t, func() bool { return got.len() >= 3 }, eventually, tick)
		waitUntil(t, func(c *assert.CollectT) bool { return pending(c, db) == 0 }, "marked sent after the acks")

		rows, err := db.Reader().Query(ctx, `SELECT id, msg_id, sent_at FROM bus_outbox ORDER BY id`)
		require.NoError(t, err)
		defer rows.Close()
		var outboxIDs []string
		for rows.Next() {
			var id, msgID string
			var sentAt *int64
			require.NoError(t, rows.Scan(&id, &msgID, &sentAt))
			require.True(t, ids.Valid(bus.OutboxPrefix, id), id)
			require.NotNil(t, sentAt, "row %s marked sent", id)
			if msgID != "chosen-id" {
				require.Equal(t, id, msgID, "the message id defaults to the outbox id")
			}
			outboxIDs = append(outboxIDs, msgID)
		}
		require.NoError(t, rows.Err())
		require.Len(t, outboxIDs, 3, "the rolled-back message never reached the outbox")

		msgs := got.all()
		require.Equal(t, outboxIDs, []string{msgs[0].ID, msgs[1].ID, msgs[2].ID}, "published once each, in order")
		require.Equal(t, []byte("a"), msgs[0].Data)
		require.Equal(t, map[string]string{"Tenant": "t1"}, msgs[0].Header)
		stats, err := b.Stats(ctx, bus.Domain)
		require.NoError(t, err)
		require.Equal(t, uint64(3), stats.Messages)
	})
}

func TestRelayCrashBeforeMarkSent(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		tb := setup(t, env, bus.Options{})
		b := tb.bus
		ctx := tb.ctx
		clk := clock.NewFake(time.Now())
		const n = 20
		enqueue(t, db, messages(b, bus.Domain, n, "grant")...)
		for i := range 5 {
			enqueue(t, db, bus.Message{Subject: b.Subject(bus.Domain, "level", "up"), Data: []byte{byte(i)}})
		}

		crash := errors.New("power cut")
		var published []string
		first := bus.NewRelay(db, b, bus.RelayOptions{
			Clock: clk, Lease: 30 * time.Second, Node: "doomed", Logger: bustest.Logger(),
			AfterPublish: func(ids []string) error {
				published = append(published, ids...)
				return crash
			},
		})
		require.ErrorIs(t, first.Run(ctx), crash)
		require.NotEmpty(t, published)
		require.Equal(t, n+5, pending(t, db), "nothing was marked sent")

		_, err := b.ConsumeTx(ctx, db, bus.ConsumerOptions{Stream: bus.Domain, Name: "apply"}, applyEffect)
		require.NoError(t, err)

		// The claim holds until its lease ends; then a fresh relay republishes the batch.
		clk.Advance(31 * time.Second)
		runRelay(t, bus.NewRelay(db, b, bus.RelayOptions{Clock: clk, Node: "fresh", Logger: bustest.Logger()}))
		waitUntil(t, func(c *assert.CollectT) bool { return pending(c, db) == 0 })
		waitUntil(t, func(c *assert.CollectT) bool {
			total, _ := effects(c, db)
			return total >= n+5
		})

		total, distinct := effects(t, db)
		require.Equal(t, n+5, total)
		require.Equal(t, n+5, distinct)
		stats, err := b.Stats(ctx, bus.Domain)
		require.NoError(t, err)
		require.Equal(t, uint64(n+5), stats.Messages, "JetStream dropped the republished copies")
		require.Equal(t, float64(len(published)), metric(t, tb.reg, "perk_bus_publish_duplicates_total", map[string]string{"stream": "DOMAIN"}))
	})
}

func TestConsumeTxAppliesOnceOutsideDedupeWindow(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		// A tiny window (tests only) lets the same id reach the stream twice, as a republish days
		// later would.
		tb := setup(t, env, bus.Options{Streams: map[bus.Stream]bus.StreamOptions{bus.Domain: {Duplicates: 100 * time.Millisecond}}})
		b := tb.bus
		ctx := tb.ctx
		msg := bus.Message{Subject: b.Subject(bus.Domain, "order", "paid"), ID: "obx_same", Data: []byte("x")}
		require.NoError(t, b.Publish(ctx, msg))
		waitUntil(t, func(c *assert.CollectT) bool {
			require.NoError(c, b.Publish(ctx, msg))
			stats, err := b.Stats(ctx, bus.Domain)
			require.NoError(c, err)
			return stats.Messages == 2
		})

		var calls atomic.Int32
		_, err := b.ConsumeTx(ctx, db, bus.ConsumerOptions{Stream: bus.Domain, Name: "apply"},
			func(ctx context.Context, tx *sqldb.Tx, m bus.Msg) error {
				calls.Add(1)
				return applyEffect(ctx, tx, m)
			})
		require.NoError(t, err)
		handled := func(c require.TestingT, result string) float64 {
			return metric(c, tb.reg, "perk_bus_handled_total", map[string]string{"consumer": "apply", "result": result})
		}
		waitUntil(t, func(c *assert.CollectT) bool { return handled(c, "ack")+handled(c, "duplicate") == 2 })
		require.Equal(t, 1.0, handled(t, "duplicate"))
		require.Equal(t, int32(1), calls.Load())
		total, _ := effects(t, db)
		require.Equal(t, 1, total)
	})
}

func TestConsumeTxRollsBackFailedHandler(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		tb := setup(t, env, bus.Options{})
		b := tb.bus
		require.NoError(t, b.Publish(tb.ctx, bus.Message{Subject: b.Subject(bus.Domain, "x", "y"), ID: "m1"}))
		_, err := b.ConsumeTx(tb.ctx, db, bus.ConsumerOptions{Stream: bus.Domain, Name: "flaky", Backoff: []time.Duration{time.Millisecond}},
			func(ctx context.Context, tx *sqldb.Tx, m bus.Msg) error {
				if err := applyEffect(ctx, tx, m); err != nil {
					return err
				}
				if m.Deliveries == 1 {
					return errors.New("after the effect, before the commit")
				}
				return nil
			})
		require.NoError(t, err)
		waitUntil(t, func(c *assert.CollectT) bool {
			return metric(c, tb.reg, "perk_bus_handled_total", map[string]string{"consumer": "flaky", "result": "ack"}) == 1
		})
		total, _ := effects(t, db)
		require.Equal(t, 1, total, "the first attempt's effect was rolled back with its processed record")
		var processed int
		require.NoError(t, db.Reader().QueryRow(tb.ctx, `SELECT COUNT(*) FROM bus_processed`).Scan(&processed))
		require.Equal(t, 1, processed)
	})
}

func TestConsumeTxCompetingInstancesApplyOnce(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		tb := setup(t, env, bus.Options{})
		peer := env.Open(t, bus.Options{})
		const n = 200
		require.NoError(t, tb.bus.PublishBatch(tb.ctx, messages(tb.bus, bus.Events, n, "task")))

		opts := bus.ConsumerOptions{Stream: bus.Events, Name: "progress", BatchSize: 8, Backoff: []time.Duration{time.Millisecond}}
		var onA, onB atomic.Int32
		var bApplied atomic.Bool
		// A refuses work until B has applied something, so the work is split whatever the scheduling.
		// (It must not wait inside its transaction: on SQLite that would hold the only writer.)
		_, err := tb.bus.ConsumeTx(tb.ctx, db, opts, func(ctx context.Context, tx *sqldb.Tx, m bus.Msg) error {
			if !bApplied.Load() {
				return errors.New("not before B")
			}
			onA.Add(1)
			return applyEffect(ctx, tx, m)
		})
		require.NoError(t, err)
		_, err = peer.ConsumeTx(tb.ctx, db, opts, func(ctx context.Context, tx *sqldb.Tx, m bus.Msg) error {
			onB.Add(1)
			tx.AfterCommit(func() { bApplied.Store(true) })
			return applyEffect(ctx, tx, m)
		})
		require.NoError(t, err)

		waitUntil(t, func(c *assert.CollectT) bool {
			total, _ := effects(c, db)
			return total >= n
		})
		total, distinct := effects(t, db)
		require.Equal(t, n, total)
		require.Equal(t, n, distinct)
		require.NotZero(t, onA.Load())
		require.NotZero(t, onB.Load())
	})
}

func TestConsumeTxPrunesOldRecords(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		clk := clock.NewFake(time.Now())
		tb := setup(t, env, bus.Options{Clock: clk})
		b := tb.bus
		require.NoError(t, b.Publish(tb.ctx, bus.Message{Subject: b.Subject(bus.Domain, "x", "old"), ID: "old"}))
		_, err := b.ConsumeTx(tb.ctx, db, bus.ConsumerOptions{
			Stream: bus.Domain, Name: "pruned", ProcessedRetention: time.Hour, PruneInterval: 10 * time.Millisecond,
		}, applyEffect)
		require.NoError(t, err)
		count := func(c require.TestingT) int {
			var n int
			require.NoError(c, db.Reader().QueryRow(tb.ctx, `SELECT COUNT(*) FROM bus_processed WHERE consumer = 'DOMAIN/pruned'`).Scan(&n))
			return n
		}
		waitUntil(t, func(c *assert.CollectT) bool { return count(c) == 1 })

		clk.Advance(2 * time.Hour)
		require.NoError(t, b.Publish(tb.ctx, bus.Message{Subject: b.Subject(bus.Domain, "x", "new"), ID: "new"}))
		waitUntil(t, func(c *assert.CollectT) bool {
			var id string
			err := db.Reader().QueryRow(tb.ctx, `SELECT msg_id FROM bus_processed WHERE consumer = 'DOMAIN/pruned'`).Scan(&id)
			return err == nil && id == "new" && count(c) == 1
		}, "the old record is pruned, the new one kept")
	})
}

func TestRelaysOnOneDatabaseShareWithoutDoubles(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		tb := setup(t, env, bus.Options{})
		peer := env.Open(t, bus.Options{})
		const n = 600
		msgs := make([]bus.Message, n)
		for i := range msgs {
			msgs[i] = bus.Message{Subject: tb.bus.Subject(bus.Domain, "coupon", "issued"), Data: []byte(fmt.Sprint(i))}
		}
		regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
		for i, b := range []*bus.Bus{tb.bus, peer} {
			runRelay(t, bus.NewRelay(db, b, bus.RelayOptions{
				BatchSize: 16, PollInterval: 5 * time.Millisecond, Node: fmt.Sprint("node", i),
				Registerer: regs[i], Logger: bustest.Logger(),
			}))
		}
		for i := 0; i < n; i += 50 {
			enqueue(t, db, msgs[i:i+50]...)
		}
		waitUntil(t, func(c *assert.CollectT) bool { return pending(c, db) == 0 })

		published := func(c require.TestingT) (sum float64) {
			for _, reg := range regs {
				sum += metric(c, reg, "perk_outbox_published_total", nil)
			}
			return sum
		}
		// The counters move just after the rows are marked sent.
		waitUntil(t, func(c *assert.CollectT) bool { return published(c) >= n })
		require.Equal(t, float64(n), published(t), "every row published by exactly one relay")
		require.Zero(t, metric(t, tb.reg, "perk_bus_publish_duplicates_total", map[string]string{"stream": "DOMAIN"}))
		stats, err := tb.bus.Stats(tb.ctx, bus.Domain)
		require.NoError(t, err)
		require.Equal(t, uint64(n), stats.Messages)
	})
}

func TestRelayDeletesSentRowsAfterRetention(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		tb := setup(t, env, bus.Options{})
		clk := clock.NewFake(time.Now())
		runRelay(t, bus.NewRelay(db, tb.bus, bus.RelayOptions{
			Clock: clk, Retention: time.Hour, CleanupInterval: time.Millisecond, PollInterval: 5 * time.Millisecond,
			Logger: bustest.Logger(),
		}))
		enqueue(t, db, messages(tb.bus, bus.Domain, 3, "sent")...)
		waitUntil(t, func(c *assert.CollectT) bool { return pending(c, db) == 0 })
		rows := func(c require.TestingT) int {
			var n int
			require.NoError(c, db.Reader().QueryRow(tb.ctx, `SELECT COUNT(*) FROM bus_outbox`).Scan(&n))
			return n
		}
		require.Equal(t, 3, rows(t), "sent rows are kept for the retention")

		clk.Advance(2 * time.Hour)
		enqueue(t, db, bus.Message{Subject: tb.bus.Subject(bus.Domain, "x", "y")})
		waitUntil(t, func(c *assert.CollectT) bool { return rows(c) == 1 && pending(c, db) == 0 })
	})
}

func TestRelayRetriesWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := t.Context()
		srv := bustest.StartProcess(t)
		b, err := bus.Open(ctx, bus.Options{URL: srv.URL(), Prefix: "down", PublishTimeout: 300 * time.Millisecond, Logger: bustest.Logger()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		reg := prometheus.NewRegistry()
		runRelay(t, bus.NewRelay(db, b, bus.RelayOptions{
			PollInterval: 10 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
			Lease: 5 * time.Second, Registerer: reg, Logger: bustest.Logger(),
		}))

		srv.Kill()
		const n = 50
		msgs := messages(b, bus.Domain, n, "while-down")
		enqueue(t, db, msgs...)
		waitUntil(t, func(c *assert.CollectT) bool { return metric(c, reg, "perk_outbox_pending", nil) == n })
		waitUntil(t, func(c *assert.CollectT) bool {
			var failed int
			require.NoError(c, db.Reader().QueryRow(ctx,
				`SELECT COUNT(*) FROM bus_outbox WHERE attempts > 1 AND last_error <> ''`).Scan(&failed))
			return failed == n
		}, "the relay keeps trying while NATS is down")
		require.Equal(t, n, pending(t, db))

		srv.Start()
		waitUntil(t, func(c *assert.CollectT) bool { return pending(c, db) == 0 })
		waitUntil(t, func(c *assert.CollectT) bool { return metric(c, reg, "perk_outbox_pending", nil) == 0 })
		requireConsumesAll(t, b, bus.Domain, msgs)
		stats, err := b.Stats(ctx, bus.Domain)
		require.NoError(t, err)
		require.Equal(t, uint64(n), stats.Messages, "copies buffered during the outage were de-duplicated")
	})
}

func TestRelayFinishesBatchInHandOnStop(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		tb := setup(t, env, bus.Options{})
		enqueue(t, db, messages(tb.bus, bus.Domain, 10, "shutdown")...)
		ctx, cancel := context.WithCancel(tb.ctx)
		relay := bus.NewRelay(db, tb.bus, bus.RelayOptions{Logger: bustest.Logger(), AfterPublish: func([]string) error {
			cancel() // the node is told to stop while the batch is out
			return nil
		}})
		require.NoError(t, relay.Run(ctx))
		require.Zero(t, pending(t, db), "the published batch was still marked sent")
	})
}
