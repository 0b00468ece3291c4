package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/prom"
)

// eventually is the liveness bound of every wait in these tests: generous, the box is noisy.
const eventually = 30 * time.Second

const tick = 10 * time.Millisecond

// waitUntil polls cond until it holds, for liveness only. cond may use require on c.
func waitUntil(t *testing.T, cond func(c *assert.CollectT) bool, msgAndArgs ...any) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		if !cond(c) {
			c.Errorf("not yet")
		}
	}, eventually, tick, msgAndArgs...)
}

type testBundle struct {
	env *bustest.Env
	bus *bus.Bus
	reg *prometheus.Registry
	ctx context.Context
}

func setup(t *testing.T, env *bustest.Env, opts bus.Options) *testBundle {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	return &testBundle{env: env, bus: env.Open(t, opts), reg: reg, ctx: t.Context()}
}

// collector gathers what handlers saw, safely across goroutines.
type collector struct {
	mu   sync.Mutex
	msgs []bus.Msg
}

func (c *collector) add(m bus.Msg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, m)
}

func (c *collector) all() []bus.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

func (c *collector) ids() map[string]int {
	seen := map[string]int{}
	for _, m := range c.all() {
		seen[m.ID]++
	}
	return seen
}

// metric sums the series of a counter or gauge on reg that carry labels; 0 when there is none yet.
func metric(t require.TestingT, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	v, err := prom.Value(reg, name, labels)
	require.NoError(t, err)
	return v
}

func messages(b *bus.Bus, stream bus.Stream, n int, kind string) []bus.Message {
	msgs := make([]bus.Message, n)
	for i := range msgs {
		msgs[i] = bus.Message{
			Subject: b.Subject(stream, kind, "happened"),
			ID:      fmt.Sprintf("%s-%04d", kind, i),
			Data:    []byte(fmt.Sprintf(`{"n":%d}`, i)),
		}
	}
	return msgs
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir(), Prefix: "t1a2", Logger: bustest.Logger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })

	require.Equal(t, "t1a2.domain.grant.succeeded", b.Subject(bus.Domain, "grant", "succeeded"))
	require.Equal(t, "t1a2.events.>", b.Subject(bus.Events, ">"))
	require.Equal(t, "t1a2_EVENTS", b.StreamName(bus.Events))
	require.Empty(t, b.ClientURL(), "in-process only: no TCP listener")

	plain, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir(), Logger: bustest.Logger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = plain.Close() })
	require.Equal(t, "config.catalog.published", plain.Subject(bus.Config, "catalog", "published"))
	require.Equal(t, "CONFIG", plain.StreamName(bus.Config))

	_, err = bus.Open(ctx, bus.Options{DataDir: t.TempDir(), Prefix: "bad.prefix"})
	require.ErrorContains(t, err, "prefix")
	_, err = bus.Open(ctx, bus.Options{})
	require.ErrorContains(t, err, "DataDir")
}

func TestOpenFailsClearlyWithoutServer(t *testing.T) {
	t.Parallel()
	_, err := bus.Open(t.Context(), bus.Options{URL: "nats://user:secret@127.0.0.1:1", Logger: bustest.Logger()})
	require.ErrorContains(t, err, "bus: connect to nats://***@127.0.0.1:1")
	require.NotContains(t, err.Error(), "secret")
}

func TestPublishConsume(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		tb := setup(t, env, bus.Options{})
		b := tb.bus

		before := time.Now().Add(-time.Minute)
		require.NoError(t, b.Publish(tb.ctx, bus.Message{
			Subject: b.Subject(bus.Domain, "grant", "succeeded"),
			ID:      "m1",
			Data:    []byte("one"),
			Header:  map[string]string{"Tenant": "t1", "trace-id": "abc"},
		}))
		require.NoError(t, b.Publish(tb.ctx, bus.Message{Subject: b.Subject(bus.Domain, "grant", "failed"), ID: "m2"}))
		require.NoError(t, b.Publish(tb.ctx, bus.Message{Subject: b.Subject(bus.Events, "order", "paid"), ID: "e1"}))

		var got collector
		_, err := b.Consume(tb.ctx, bus.ConsumerOptions{
			Stream:         bus.Domain,
			Name:           "grants",
			FilterSubjects: []string{b.Subject(bus.Domain, "grant", "succeeded")},
		}, func(_ context.Context, m bus.Msg) error {
			got.add(m)
			return nil
		})
		require.NoError(t, err)
		require.Eventually(t, func() bool { return got.len() == 1 }, eventually, tick)

		m := got.all()[0]
		require.Equal(t, bus.Domain, m.Stream)
		require.Equal(t, b.Subject(bus.Domain, "grant", "succeeded"), m.Subject)
		require.Equal(t, "m1", m.ID)
		require.Equal(t, []byte("one"), m.Data)
		require.Equal(t, map[string]string{"Tenant": "t1", "trace-id": "abc"}, m.Header)
		require.Equal(t, uint64(1), m.Deliveries)
		require.Equal(t, uint64(1), m.Sequence)
		require.True(t, m.Time.After(before), "stream time %v", m.Time)

		stats, err := b.Stats(tb.ctx, bus.Domain)
		require.NoError(t, err)
		require.Equal(t, uint64(2), stats.Messages)
		require.Equal(t, 1, stats.Consumers)
		require.Equal(t, 3.0, metric(t, tb.reg, "perk_bus_published_total", nil), "every stream")
		require.Equal(t, 1.0, metric(t, tb.reg, "perk_bus_published_total", map[string]string{"stream": "EVENTS"}))
		waitUntil(t, func(c *assert.CollectT) bool {
			return metric(c, tb.reg, "perk_bus_handled_total", map[string]string{"consumer": "grants", "result": "ack"}) == 1
		})

		err = b.Publish(tb.ctx, bus.Message{Subject: "nowhere.at.all", ID: "x"})
		require.Error(t, err, "a subject outside the streams is not acknowledged")
	})
}

func TestPublishDeduplicates(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		tb := setup(t, env, bus.Options{})
		b := tb.bus
		msg := bus.Message{Subject: b.Subject(bus.Events, "page", "viewed"), ID: "evt-1", Data: []byte("x")}
		require.NoError(t, b.Publish(tb.ctx, msg))
		require.NoError(t, b.Publish(tb.ctx, msg))
		require.NoError(t, b.PublishBatch(tb.ctx, []bus.Message{msg, msg}))

		stats, err := b.Stats(tb.ctx, bus.Events)
		require.NoError(t, err)
		require.Equal(t, uint64(1), stats.Messages)
		require.Equal(t, 3.0, metric(t, tb.reg, "perk_bus_publish_duplicates_total", map[string]string{"stream": "EVENTS"}))
	})
}

func TestPublishBatch(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		tb := setup(t, env, bus.Options{MaxPendingAsync: 64})
		b := tb.bus
		const n = 1000
		msgs := messages(b, bus.Events, n, "click")
		require.NoError(t, b.PublishBatch(tb.ctx, msgs))

		stats, err := b.Stats(tb.ctx, bus.Events)
		require.NoError(t, err)
		require.Equal(t, uint64(n), stats.Messages)

		var got collector
		_, err = b.Consume(tb.ctx, bus.ConsumerOptions{Stream: bus.Events, Name: "all", BatchSize: 200},
			func(_ context.Context, m bus.Msg) error {
				got.add(m)
				return nil
			})
		require.NoError(t, err)
		require.Eventually(t, func() bool { return got.len() >= n }, eventually, tick)
		ids := got.ids()
		require.Len(t, ids, n)
		for _, m := range msgs {
			require.Equal(t, 1, ids[m.ID], m.ID)
		}

		bad := []bus.Message{msgs[0], {Subject: "nowhere.at.all", ID: "x"}, {ID: "no-subject"}}
		err = b.PublishBatch(tb.ctx, bad)
		var batchErr *bus.BatchError
		require.ErrorAs(t, err, &batchErr)
		require.Len(t, batchErr.Errs, 3)
		require.NoError(t, batchErr.Errs[0], "a duplicate is acknowledged")
		require.Error(t, batchErr.Errs[1])
		require.Error(t, batchErr.Errs[2])
	})
}

func TestConsumeRetries(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		tb := setup(t, env, bus.Options{})
		b := tb.bus
		fast := []time.Duration{time.Millisecond}

		t.Run("ErrorAndPanicAreRedelivered", func(t *testing.T) {
			require.NoError(t, b.Publish(tb.ctx, bus.Message{Subject: b.Subject(bus.Domain, "a", "fail"), ID: "fail"}))
			require.NoError(t, b.Publish(tb.ctx, bus.Message{Subject: b.Subject(bus.Domain, "a", "panic"), ID: "panic"}))
			var got collector
			_, err := b.Consume(tb.ctx, bus.ConsumerOptions{
				Stream: bus.Domain, Name: "retry", Backoff: fast,
				FilterSubjects: []string{b.Subject(bus.Domain, "a", ">")},
			}, func(_ context.Context, m bus.Msg) error {
				got.add(m)
				switch {
				case m.Deliveries > 1:
					return nil
				case m.ID == "panic":
					panic("boom")
				default:
					return errors.New("not yet")
				}
			})
			require.NoError(t, err)
			waitUntil(t, func(c *assert.CollectT) bool {
				return metric(c, tb.reg, "perk_bus_handled_total", map[string]string{"consumer": "retry", "result": "ack"}) == 2
			})
			deliveries := map[string][]uint64{}
			for _, m := range got.all() {
				deliveries[m.ID] = append(deliveries[m.ID], m.Deliveries)
			}
			require.Equal(t, map[string][]uint64{"fail": {1, 2}, "panic": {1, 2}}, deliveries)
			require.Equal(t, 1.0, metric(t, tb.reg, "perk_bus_handled_total", map[string]string{"consumer": "retry", "result": "retry"}))
			require.Equal(t, 1.0, metric(t, tb.reg, "perk_bus_handled_total", map[string]string{"consumer": "retry", "result": "panic"}))
		})

		t.Run("PermanentAndExhaustedAreTerminated", func(t *testing.T) {
			// With one message in flight at a time, the next message only comes once the failing one is
			// settled for good: had it been NAKed instead, it would block the queue.
			for _, id := range []string{"permanent", "exhausted", "last"} {
				require.NoError(t, b.Publish(tb.ctx, bus.Message{Subject: b.Subject(bus.Domain, "b", id), ID: id}))
			}
			var got collector
			_, err := b.Consume(tb.ctx, bus.ConsumerOptions{
				Stream: bus.Domain, Name: "term", Backoff: fast, MaxAckPending: 1, MaxDeliver: 3,
				FilterSubjects: []string{b.Subject(bus.Domain, "b", ">")},
			}, func(_ context.Context, m bus.Msg) error {
				got.add(m)
				switch m.ID {
				case "permanent":
					return bus.Permanent(errors.New("bad payload"))
				case "exhausted":
					return errors.New("still failing")
				}
				return nil
			})
			require.NoError(t, err)
			require.Eventually(t, func() bool { return got.ids()["last"] == 1 }, eventually, tick)
			require.Equal(t, map[string]int{"permanent": 1, "exhausted": 3, "last": 1}, got.ids())
			require.Equal(t, 2.0, metric(t, tb.reg, "perk_bus_handled_total", map[string]string{"consumer": "term", "result": "term"}))
		})
	})
}

func TestStopWaitsForHandlerAndHandsBackTheRest(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		tb := setup(t, env, bus.Options{})
		b := tb.bus
		require.NoError(t, b.PublishBatch(tb.ctx, messages(b, bus.Events, 20, "tap")))

		started, release := make(chan struct{}), make(chan struct{})
		var finished atomic.Bool
		var calls atomic.Int32
		opts := bus.ConsumerOptions{Stream: bus.Events, Name: "slow", BatchSize: 10, AckWait: time.Minute}
		stop, err := b.Consume(tb.ctx, opts, func(_ context.Context, m bus.Msg) error {
			if calls.Add(1) == 1 {
				close(started)
				<-release
				finished.Store(true)
			}
			return nil
		})
		require.NoError(t, err)
		<-started

		stopped := make(chan struct{})
		go func() {
			stop()
			close(stopped)
		}()
		// A stop that returned now would have abandoned the handler in progress. (This can only miss
		// that bug, never report it falsely.)
		select {
		case <-stopped:
			t.Fatal("stop returned while a handler was running")
		case <-time.After(200 * time.Millisecond):
		}
		close(release)
		<-stopped
		require.True(t, finished.Load())
		require.Equal(t, int32(1), calls.Load(), "messages pulled but not started are handed back, not handled")

		// What was handed back goes to the next instance at once, not after AckWait (a minute).
		var got collector
		_, err = b.Consume(tb.ctx, opts, func(_ context.Context, m bus.Msg) error {
			got.add(m)
			return nil
		})
		require.NoError(t, err)
		require.Eventually(t, func() bool { return len(got.ids()) == 19 }, eventually, tick)
	})
}

func TestCompetingConsumersShareWork(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		tb := setup(t, env, bus.Options{})
		peer := env.Open(t, bus.Options{})
		const n = 100
		require.NoError(t, tb.bus.PublishBatch(tb.ctx, messages(tb.bus, bus.Events, n, "job")))

		opts := bus.ConsumerOptions{Stream: bus.Events, Name: "workers", BatchSize: 10}
		var onA, onB collector
		bHandledOne := make(chan struct{})
		var once sync.Once
		// A takes its first batch, then holds its first message until B has handled one: the work
		// is split, whatever the scheduling.
		_, err := tb.bus.Consume(tb.ctx, opts, func(_ context.Context, m bus.Msg) error {
			if onA.len() == 0 {
				<-bHandledOne
			}
			onA.add(m)
			return nil
		})
		require.NoError(t, err)
		_, err = peer.Consume(tb.ctx, opts, func(_ context.Context, m bus.Msg) error {
			onB.add(m)
			once.Do(func() { close(bHandledOne) })
			return nil
		})
		require.NoError(t, err)

		require.Eventually(t, func() bool { return onA.len()+onB.len() >= n }, eventually, tick)
		require.NotZero(t, onA.len())
		require.NotZero(t, onB.len())
		seen := onA.ids()
		for id, k := range onB.ids() {
			seen[id] += k
		}
		require.Len(t, seen, n)
		for id, k := range seen {
			require.Equal(t, 1, k, "%s handled %d times", id, k)
		}
	})
}

func TestWatchFansOut(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		tb := setup(t, env, bus.Options{})
		peer := env.Open(t, bus.Options{})
		subject := tb.bus.Subject(bus.Config, "catalog", "published")
		require.NoError(t, tb.bus.Publish(tb.ctx, bus.Message{Subject: subject, ID: "old"}))

		var one, two collector
		for _, w := range []struct {
			b *bus.Bus
			c *collector
		}{{tb.bus, &one}, {peer, &two}} {
			_, err := w.b.Watch(tb.ctx, bus.Config, w.b.Subject(bus.Config, "catalog", ">"), func(_ context.Context, m bus.Msg) error {
				w.c.add(m)
				return nil
			})
			require.NoError(t, err)
		}
		require.NoError(t, peer.Publish(tb.ctx, bus.Message{Subject: subject, ID: "new", Data: []byte("v2")}))
		require.NoError(t, peer.Publish(tb.ctx, bus.Message{Subject: tb.bus.Subject(bus.Config, "other", "x"), ID: "filtered"}))
		require.NoError(t, peer.Publish(tb.ctx, bus.Message{Subject: subject, ID: "newer"}))

		for _, c := range []*collector{&one, &two} {
			require.Eventually(t, func() bool { return c.len() >= 2 }, eventually, tick)
			got := c.all()
			require.Equal(t, []string{"new", "newer"}, []string{got[0].ID, got[1].ID})
			require.Equal(t, []byte("v2"), got[0].Data)
		}
	})
}

func TestCloseStopsConsumers(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		tb := setup(t, env, bus.Options{})
		peer := env.Open(t, bus.Options{})
		require.NoError(t, peer.Ping(tb.ctx))
		_, err := peer.Consume(tb.ctx, bus.ConsumerOptions{Stream: bus.Events, Name: "c"}, func(context.Context, bus.Msg) error {
			return nil
		})
		require.NoError(t, err)
		_, err = peer.Watch(tb.ctx, bus.Config, "", func(context.Context, bus.Msg) error { return nil })
		require.NoError(t, err)
		require.NoError(t, peer.Close())
		require.NoError(t, peer.Close(), "Close is idempotent")
		_, err = peer.Consume(tb.ctx, bus.ConsumerOptions{Stream: bus.Events, Name: "c"}, nil)
		require.Error(t, err)
		require.False(t, peer.Connected())
		require.Error(t, peer.Ping(tb.ctx))
		require.True(t, tb.bus.Connected(), "other nodes are unaffected")
		require.NoError(t, tb.bus.Ping(tb.ctx))
	})
}

func TestEmbeddedRestartLosesNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	opts := bus.Options{DataDir: dir, Prefix: "r", Logger: bustest.Logger()}
	const n = 300

	b, err := bus.Open(ctx, opts)
	require.NoError(t, err)
	msgs := messages(b, bus.Domain, n, "grant")
	require.NoError(t, b.PublishBatch(ctx, msgs[:n/2]))
	for _, m := range msgs[n/2:] {
		require.NoError(t, b.Publish(ctx, m))
	}
	require.NoError(t, b.Close())

	b, err = bus.Open(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	requireConsumesAll(t, b, bus.Domain, msgs)
}

func TestExternalRestartLosesNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := bustest.StartProcess(t)
	b, err := bus.Open(ctx, bus.Options{URL: srv.URL(), Prefix: "r", Logger: bustest.Logger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	const n = 300
	msgs := messages(b, bus.Events, n, "visit")
	require.NoError(t, b.PublishBatch(ctx, msgs[:n/2]))
	for _, m := range msgs[n/2:] {
		require.NoError(t, b.Publish(ctx, m))
	}

	srv.Kill()
	srv.Start()
	// The same bus reconnects by itself.
	requireConsumesAll(t, b, bus.Events, msgs)
}

// requireConsumesAll consumes the stream of msgs from the start and checks every one arrives once.
func requireConsumesAll(t *testing.T, b *bus.Bus, stream bus.Stream, msgs []bus.Message) {
	t.Helper()
	var got collector
	var err error
	require.Eventually(t, func() bool {
		// Right after a restart the stream may still be recovering; retry the consumer creation.
		_, err = b.Consume(t.Context(), bus.ConsumerOptions{Stream: stream, Name: "after-restart", BatchSize: 100},
			func(_ context.Context, m bus.Msg) error {
				got.add(m)
				return nil
			})
		return err == nil
	}, eventually, 100*time.Millisecond, "consume after restart: %v", err)
	require.Eventually(t, func() bool { return got.len() >= len(msgs) }, eventually, tick)
	ids := got.ids()
	require.Len(t, ids, len(msgs))
	for _, m := range msgs {
		require.Equal(t, 1, ids[m.ID], m.ID)
	}
}

func TestConsumeDeliverNew(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		tb := setup(t, env, bus.Options{})
		b := tb.bus
		subject := b.Subject(bus.Domain, "coupon", "issued")
		require.NoError(t, b.Publish(tb.ctx, bus.Message{Subject: subject, ID: "before"}))
		var got collector
		opts := bus.ConsumerOptions{Stream: bus.Domain, Name: "late", DeliverNew: true}
		stop, err := b.Consume(tb.ctx, opts, func(_ context.Context, m bus.Msg) error {
			got.add(m)
			return nil
		})
		require.NoError(t, err)
		require.NoError(t, b.Publish(tb.ctx, bus.Message{Subject: subject, ID: "after"}))
		require.Eventually(t, func() bool { return got.len() == 1 }, eventually, tick)
		stop()

		// Re-attaching to the existing durable keeps its position, whatever DeliverNew says now.
		require.NoError(t, b.Publish(tb.ctx, bus.Message{Subject: subject, ID: "while-away"}))
		opts.DeliverNew = false
		_, err = b.Consume(tb.ctx, opts, func(_ context.Context, m bus.Msg) error {
			got.add(m)
			return nil
		})
		require.NoError(t, err)
		require.Eventually(t, func() bool { return got.len() == 2 }, eventually, tick)
		require.Equal(t, map[string]int{"after": 1, "while-away": 1}, got.ids())
	})
}

// Several filter subjects on one consumer need nats-server 2.10 or later; the external test server
// may be older, so this runs on the embedded one only.
func TestConsumeManyFilterSubjects(t *testing.T) {
	t.Parallel()
	tb := setup(t, bustest.NewEnv(t, bustest.Embedded), bus.Options{})
	b := tb.bus
	for _, kind := range []string{"grant", "coupon", "level"} {
		require.NoError(t, b.Publish(tb.ctx, bus.Message{Subject: b.Subject(bus.Domain, kind, "x"), ID: kind}))
	}
	var got collector
	_, err := b.Consume(tb.ctx, bus.ConsumerOptions{
		Stream: bus.Domain, Name: "two-kinds",
		FilterSubjects: []string{b.Subject(bus.Domain, "grant", ">"), b.Subject(bus.Domain, "level", ">")},
	}, func(_ context.Context, m bus.Msg) error {
		got.add(m)
		return nil
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return got.len() == 2 }, eventually, tick)
	require.Equal(t, map[string]int{"grant": 1, "level": 1}, got.ids())
}
