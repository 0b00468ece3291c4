package bus_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// waitApplied waits until n effects are written, then requires them to be n distinct ones.
func waitApplied(t *testing.T, db *sqldb.DB, n int) {
	t.Helper()
	waitUntil(t, func(c *assert.CollectT) bool {
		total, _ := effects(c, db)
		return total == n
	})
	total, distinct := effects(t, db)
	require.Equal(t, n, total)
	require.Equal(t, n, distinct)
}

// applyEffects writes one effect row per message.
func applyEffects(ctx context.Context, tx *sqldb.Tx, msgs []bus.Msg) error {
	for _, m := range msgs {
		if err := applyEffect(ctx, tx, m); err != nil {
			return err
		}
	}
	return nil
}

func TestConsumeBatchTxAppliesEachOnceInBatches(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		tb := setup(t, env, bus.Options{})
		const n = 500
		require.NoError(t, tb.bus.PublishBatch(tb.ctx, messages(tb.bus, bus.Events, n, "task")))

		var mu sync.Mutex
		var sizes []int
		_, err := tb.bus.ConsumeBatchTx(tb.ctx, db, bus.ConsumerOptions{Stream: bus.Events, Name: "batched", BatchSize: 64},
			func(ctx context.Context, tx *sqldb.Tx, msgs []bus.Msg) error {
				mu.Lock()
				sizes = append(sizes, len(msgs))
				mu.Unlock()
				return applyEffects(ctx, tx, msgs)
			})
		require.NoError(t, err)
		waitApplied(t, db, n)
		mu.Lock()
		defer mu.Unlock()
		require.Less(t, len(sizes), n, "messages pulled together are handled together")
		for _, s := range sizes {
			require.LessOrEqual(t, s, 64)
		}
		waitUntil(t, func(c *assert.CollectT) bool {
			return metric(c, tb.reg, "perk_bus_handled_total", map[string]string{"consumer": "batched", "result": "ack"}) == n
		})
	})
}

func TestConsumeBatchTxSkipsProcessedMessages(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		// A tiny window (tests only) lets the same id reach the stream twice.
		tb := setup(t, env, bus.Options{Streams: map[bus.Stream]bus.StreamOptions{bus.Events: {Duplicates: 100 * time.Millisecond}}})
		b := tb.bus
		msg := bus.Message{Subject: b.Subject(bus.Events, "t1", "checkin"), ID: "bev_same", Data: []byte("x")}
		require.NoError(t, b.Publish(tb.ctx, msg))
		waitUntil(t, func(c *assert.CollectT) bool {
			require.NoError(c, b.Publish(tb.ctx, msg))
			stats, err := b.Stats(tb.ctx, bus.Events)
			require.NoError(c, err)
			return stats.Messages == 2
		})
		require.NoError(t, b.Publish(tb.ctx, bus.Message{Subject: msg.Subject, ID: "bev_other"}))

		var seen atomic.Int32
		_, err := b.ConsumeBatchTx(tb.ctx, db, bus.ConsumerOptions{Stream: bus.Events, Name: "dedupe"},
			func(ctx context.Context, tx *sqldb.Tx, msgs []bus.Msg) error {
				seen.Add(int32(len(msgs)))
				return applyEffects(ctx, tx, msgs)
			})
		require.NoError(t, err)
		handled := func(c require.TestingT, result string) float64 {
			return metric(c, tb.reg, "perk_bus_handled_total", map[string]string{"consumer": "dedupe", "result": result})
		}
		waitUntil(t, func(c *assert.CollectT) bool { return handled(c, "ack")+handled(c, "duplicate") == 3 })
		require.Equal(t, 1.0, handled(t, "duplicate"))
		require.Equal(t, int32(2), seen.Load(), "the handler saw only fresh messages")
		total, distinct := effects(t, db)
		require.Equal(t, 2, total)
		require.Equal(t, 2, distinct)
	})
}

func TestConsumeBatchTxIsolatesAPoisonMessage(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		tb := setup(t, env, bus.Options{})
		b := tb.bus
		msgs := messages(b, bus.Events, 20, "task")
		poison := msgs[7].ID
		require.NoError(t, b.PublishBatch(tb.ctx, msgs))

		_, err := b.ConsumeBatchTx(tb.ctx, db, bus.ConsumerOptions{Stream: bus.Events, Name: "poison", BatchSize: 32},
			func(ctx context.Context, tx *sqldb.Tx, msgs []bus.Msg) error {
				if err := applyEffects(ctx, tx, msgs); err != nil {
					return err
				}
				for _, m := range msgs {
					if m.ID == poison {
						return bus.Permanent(errors.New("cannot apply " + m.ID))
					}
				}
				return nil
			})
		require.NoError(t, err)
		handled := func(c require.TestingT, result string) float64 {
			return metric(c, tb.reg, "perk_bus_handled_total", map[string]string{"consumer": "poison", "result": result})
		}
		waitUntil(t, func(c *assert.CollectT) bool { return handled(c, "ack")+handled(c, "term") == 20 })
		require.Equal(t, 19.0, handled(t, "ack"))
		require.Equal(t, 1.0, handled(t, "term"))
		total, distinct := effects(t, db)
		require.Equal(t, 19, total, "the failed batch rolled back; the others were applied one by one")
		require.Equal(t, 19, distinct)
		var n int
		require.NoError(t, db.Reader().QueryRow(tb.ctx, `SELECT COUNT(*) FROM effects WHERE msg_id = $1`, poison).Scan(&n))
		require.Zero(t, n)
	})
}

func TestConsumeBatchTxStopSettlesWhatItPulled(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		tb := setup(t, env, bus.Options{})
		b := tb.bus
		const n = 300
		require.NoError(t, b.PublishBatch(tb.ctx, messages(b, bus.Events, n, "task")))
		opts := bus.ConsumerOptions{Stream: bus.Events, Name: "stopper", BatchSize: 16}
		var applied atomic.Int32
		stop, err := b.ConsumeBatchTx(tb.ctx, db, opts, func(ctx context.Context, tx *sqldb.Tx, msgs []bus.Msg) error {
			applied.Add(int32(len(msgs)))
			return applyEffects(ctx, tx, msgs)
		})
		require.NoError(t, err)
		require.Eventually(t, func() bool { return applied.Load() > 0 }, eventually, tick)
		stop()
		stop() // idempotent

		// A second instance finishes the work: nothing pulled by the first is lost or applied twice.
		_, err = b.ConsumeBatchTx(tb.ctx, db, opts, applyEffects)
		require.NoError(t, err)
		waitApplied(t, db, n)
	})
}

func TestConsumeBatchTxSkipsIrrelevantMessages(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		tb := setup(t, env, bus.Options{})
		const n = 300
		require.NoError(t, tb.bus.PublishBatch(tb.ctx, messages(tb.bus, bus.Events, n, "task")))

		var handled atomic.Int64
		opts := bus.ConsumerOptions{Stream: bus.Events, Name: "relevant", BatchSize: 64,
			// Every third message matters; the rest are acknowledged without a trace.
			Relevant: func(ctx context.Context, msgs []bus.Msg) ([]bool, error) {
				out := make([]bool, len(msgs))
				for i, m := range msgs {
					out[i] = m.Sequence%3 == 0
				}
				return out, nil
			}}
		_, err := tb.bus.ConsumeBatchTx(tb.ctx, db, opts, func(ctx context.Context, tx *sqldb.Tx, msgs []bus.Msg) error {
			for _, m := range msgs {
				if m.Sequence%3 != 0 {
					return errors.New("an irrelevant message reached the handler")
				}
			}
			handled.Add(int64(len(msgs)))
			return applyEffects(ctx, tx, msgs)
		})
		require.NoError(t, err)
		labels := func(result string) map[string]string {
			return map[string]string{"consumer": "relevant", "result": result}
		}
		waitUntil(t, func(c *assert.CollectT) bool {
			return metric(c, tb.reg, "perk_bus_handled_total", labels("skipped"))+
				metric(c, tb.reg, "perk_bus_handled_total", labels("ack")) == n
		})
		require.EqualValues(t, n/3, handled.Load())
		total, distinct := effects(t, db)
		require.Equal(t, n/3, total)
		require.Equal(t, n/3, distinct)
		require.EqualValues(t, n-n/3, metric(t, tb.reg, "perk_bus_handled_total", labels("skipped")))
		var processed int
		require.NoError(t, db.Reader().QueryRow(tb.ctx, `SELECT COUNT(*) FROM bus_processed
			WHERE consumer = 'EVENTS/relevant'`).Scan(&processed))
		require.Equal(t, n/3, processed, "only relevant messages are recorded")
	})
}

func TestConsumeBatchTxRetriesWhenRelevantFails(t *testing.T) {
	t.Parallel()
	runStores(t, func(t *testing.T, env *bustest.Env, db *sqldb.DB) {
		tb := setup(t, env, bus.Options{})
		const n = 20
		require.NoError(t, tb.bus.PublishBatch(tb.ctx, messages(tb.bus, bus.Events, n, "task")))
		var calls atomic.Int64
		opts := bus.ConsumerOptions{Stream: bus.Events, Name: "flaky-relevant", BatchSize: 64,
			Backoff: []time.Duration{10 * time.Millisecond},
			Relevant: func(ctx context.Context, msgs []bus.Msg) ([]bool, error) {
				if calls.Add(1) <= 2 {
					return nil, errors.New("store unavailable")
				}
				out := make([]bool, len(msgs))
				for i := range out {
					out[i] = true
				}
				return out, nil
			}}
		_, err := tb.bus.ConsumeBatchTx(tb.ctx, db, opts, func(ctx context.Context, tx *sqldb.Tx, msgs []bus.Msg) error {
			return applyEffects(ctx, tx, msgs)
		})
		require.NoError(t, err)
		waitApplied(t, db, n)
	})
}

// TestConsumeBatchHandsOverBatchesAndIsolatesAPoisonMessage: ConsumeBatch (no processed records)
// hands messages over in batches; a batch that fails is retried message by message, so the poison
// one is terminated alone and every other one is handled; a panic counts as a failure too.
func TestConsumeBatchHandsOverBatchesAndIsolatesAPoisonMessage(t *testing.T) {
	t.Parallel()
	for _, mode := range []bustest.Mode{bustest.Embedded, bustest.External} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			tb := setup(t, bustest.NewEnv(t, mode), bus.Options{})
			b := tb.bus
			const n = 200
			msgs := messages(b, bus.Events, n, "plain")
			poison, panicky := msgs[17].ID, msgs[150].ID
			require.NoError(t, b.PublishBatch(tb.ctx, msgs))

			var (
				mu    sync.Mutex
				sizes []int
				seen  = map[string]int{}
			)
			_, err := b.ConsumeBatch(tb.ctx, bus.ConsumerOptions{Stream: bus.Events, Name: "plain", BatchSize: 64},
				func(ctx context.Context, msgs []bus.Msg) error {
					mu.Lock()
					defer mu.Unlock()
					sizes = append(sizes, len(msgs))
					for _, m := range msgs {
						switch m.ID {
						case poison:
							return bus.Permanent(errors.New("cannot handle " + m.ID))
						case panicky:
							if len(msgs) > 1 {
								panic("a batch with " + m.ID)
							}
						}
					}
					for _, m := range msgs {
						seen[m.ID]++
					}
					return nil
				})
			require.NoError(t, err)
			handled := func(c require.TestingT, result string) float64 {
				return metric(c, tb.reg, "perk_bus_handled_total", map[string]string{"consumer": "plain", "result": result})
			}
			waitUntil(t, func(c *assert.CollectT) bool { return handled(c, "ack")+handled(c, "term") == n })
			require.Equal(t, float64(n-1), handled(t, "ack"))
			require.Equal(t, 1.0, handled(t, "term"))
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, seen, n-1, "every message but the poison one was handled")
			require.NotContains(t, seen, poison)
			require.Less(t, len(sizes), n, "messages pulled together are handed over together")
		})
	}
}
