package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ingest"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/prom"
)

const (
	shop  = "mch_shop"
	other = "mch_other"
)

// start is the fake clock's start: 2026-03-10 09:00 UTC.
var start = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)

// readers numbers the durable consumers readAll creates.
var readers atomic.Int64

type testBundle struct {
	ctx   context.Context
	env   *bustest.Env
	bus   *bus.Bus
	svc   *ingest.Service
	clock *clock.Fake
	reg   *prometheus.Registry
}

// setup opens a bus in env and an ingest Service on it with a fake clock and a metrics registry;
// opts may change the service's options.
func setup(t *testing.T, env *bustest.Env, opts ...func(*ingest.Options)) *testBundle {
	t.Helper()
	return setupBus(t, env, bus.Options{}, opts...)
}

// setupBus is setup with bus options.
func setupBus(t *testing.T, env *bustest.Env, busOpts bus.Options, opts ...func(*ingest.Options)) *testBundle {
	t.Helper()
	b := &testBundle{ctx: context.Background(), env: env, clock: clock.NewFake(start), reg: prometheus.NewRegistry()}
	b.bus = env.Open(t, busOpts)
	o := ingest.Options{Clock: b.clock, Registerer: b.reg, Logger: bustest.Logger()}
	for _, fn := range opts {
		fn(&o)
	}
	b.svc = ingest.New(b.bus, o)
	return b
}

// accept sends body and requires no error.
func (b *testBundle) accept(t *testing.T, contentType, body string) ingest.Result {
	t.Helper()
	res, err := b.svc.Accept(b.ctx, shop, contentType, []byte(body))
	require.NoError(t, err)
	require.Len(t, res.Results, res.Accepted+res.Duplicates+res.Rejected+res.Failed, "every event has one result")
	return res
}

// refused sends body and requires a problem of kind, returning it.
func (b *testBundle) refused(t *testing.T, contentType, body string, kind problem.Kind) *problem.Error {
	t.Helper()
	res, err := b.svc.Accept(b.ctx, shop, contentType, []byte(body))
	require.Error(t, err)
	require.Empty(t, res.Results)
	p, ok := problem.As(err)
	require.True(t, ok, "want a problem, got %v", err)
	require.Equal(t, kind, p.Kind, p.Error())
	return p
}

// stored is how many messages EVENTS holds.
func (b *testBundle) stored(t *testing.T) uint64 {
	t.Helper()
	st, err := b.bus.Stats(b.ctx, bus.Events)
	require.NoError(t, err)
	return st.Messages
}

// readAll consumes EVENTS from the start with a fresh durable consumer until it has n messages,
// and checks the stream holds exactly n.
func (b *testBundle) readAll(t *testing.T, n int) []bus.Msg {
	t.Helper()
	require.Equal(t, uint64(n), b.stored(t))
	var mu sync.Mutex
	var got []bus.Msg
	stop, err := b.bus.Consume(b.ctx, bus.ConsumerOptions{Stream: bus.Events, Name: fmt.Sprint("read-", readers.Add(1)),
		BatchSize: 256}, func(_ context.Context, m bus.Msg) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m)
		return nil
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= n
	}, 20*time.Second, 5*time.Millisecond)
	stop()
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, n)
	return got
}

// event is a valid CloudEvent as JSON, with fields overridden or removed (a nil value removes).
func event(id string, fields ...any) string {
	e := map[string]any{"specversion": "1.0", "id": id, "source": "/shop/orders", "type": "order.paid",
		"subject": "u-1", "data": map[string]any{"amount": 1299}}
	for i := 0; i+1 < len(fields); i += 2 {
		k := fields[i].(string)
		if fields[i+1] == nil {
			delete(e, k)
		} else {
			e[k] = fields[i+1]
		}
	}
	raw, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	return string(raw)
}

// batchOf joins events into a JSON array.
func batchOf(events ...string) string { return "[" + strings.Join(events, ",") + "]" }

// numbered is n valid events with ids prefix0 … prefix(n-1), as a JSON array.
func numbered(prefix string, n int) string {
	events := make([]string, n)
	for i := range events {
		events[i] = event(fmt.Sprint(prefix, i), "subject", fmt.Sprint("u-", i%50))
	}
	return batchOf(events...)
}

// statuses lists the results' statuses in order.
func statuses(res ingest.Result) []ingest.Status {
	out := make([]ingest.Status, len(res.Results))
	for i, r := range res.Results {
		out[i] = r.Status
	}
	return out
}

// counted reads perk_ingest_events_total for a status and reason.
func (b *testBundle) counted(status ingest.Status, reason string) float64 {
	return b.metric("perk_ingest_events_total", map[string]string{"status": string(status), "reason": reason})
}

// metric reads the counter name with these labels (0 when absent).
func (b *testBundle) metric(name string, want map[string]string) float64 {
	v, err := prom.Value(b.reg, name, want)
	if err != nil {
		panic(err)
	}
	return v
}
