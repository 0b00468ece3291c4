package app

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// BenchmarkEventPipelineFloor is BenchmarkEventFloor with the bus around the rows: what one event
// of BenchmarkEventsEndToEnd costs the box when the product's own code is left out and only the
// components the event must pass through are kept. Events already encoded as ingestion encodes
// them are published durably on EVENTS in batches of 500 by four goroutines (ingestion's parsing
// and checks are left out); one exactly-once batch consumer (bus.ConsumeBatchTx, batches of 256, as
// the task consumer) decodes each event's envelope — the least it must read to know the user and
// the task — and writes the user task, its activity record and a task.claimed outbox row with one
// multi-row statement each (the consumer adds the processed markers); the outbox relay publishes
// the outbox rows on DOMAIN and marks them sent. No CEL, no task logic, no second consumer.
//
// It reports events/s from the first publish until the last event is through, the CPU time the
// process used per event (every thread: the embedded JetStream server, the SQLite engine and the Go
// runtime run in it, as in a node) and the whole machine's busy CPU time per event (which adds the
// PostgreSQL and external NATS servers; nothing else runs on the box). On this 2-core box 20,000
// events/s allows at most 100 µs of CPU per event, for everything. Sub-benchmarks stop early:
// "publish" only publishes, "consume" also consumes and acknowledges each batch with no
// transaction (bus.ConsumeBatch), "all" is the whole pipeline.
//
//	go test -run '^$' -bench BenchmarkEventPipelineFloor -benchtime 40000x ./internal/app/
func BenchmarkEventPipelineFloor(b *testing.B) {
	for _, d := range sqldbtest.Dialects {
		for _, stage := range []string{"publish", "consume", "all"} {
			b.Run(string(d)+"/"+stage, func(b *testing.B) { benchPipelineFloor(b, d, stage) })
		}
	}
}

// pipelineBatch is the size of one publish of the pipeline floor: the events run's ingest batch.
const pipelineBatch = 500

func benchPipelineFloor(b *testing.B, d sqldb.Dialect, stage string) {
	ctx := context.Background()
	db := sqldbtest.Open(b, d, Migrations())
	mode := bustest.Embedded
	if d == sqldb.Postgres {
		mode = bustest.External // as BenchmarkEventsEndToEnd's PostgreSQL node
	}
	bs := bustest.NewEnv(b, mode).Open(b, bus.Options{})
	total := (max(b.N, 20_000) + pipelineBatch - 1) / pipelineBatch * pipelineBatch
	msgs := pipelineEvents(b, bs, total)
	p := newPipelineFloor(d, bs)

	opts := bus.ConsumerOptions{Stream: bus.Events, Name: "floor", BatchSize: eventBatch,
		MaxAckPending: 4 * eventBatch}
	var consumed atomic.Int64
	var err error
	var stop func()
	switch stage {
	case "consume":
		stop, err = bs.ConsumeBatch(ctx, opts, func(_ context.Context, msgs []bus.Msg) error {
			for _, m := range msgs {
				if _, err := bus.DecodeBehaviour(m); err != nil {
					return err
				}
			}
			consumed.Add(int64(len(msgs)))
			return nil
		})
	case "all":
		runRelay(b, db, bs)
		stop, err = bs.ConsumeBatchTx(ctx, db, opts, p.apply)
	}
	require.NoError(b, err)
	if stop != nil {
		defer stop()
	}

	b.ResetTimer()
	cpu, busy, start := selfCPU(), machineBusy(b), time.Now()
	publishAll(b, bs, msgs, 4)
	published := time.Since(start)
	switch stage {
	case "consume":
		waitFor(b, func() bool { return consumed.Load() >= int64(total) })
	case "all":
		waitFor(b, func() bool { return p.onDomain(b, ctx) >= total })
	}
	elapsed, cpu, busy := time.Since(start), selfCPU()-cpu, machineBusy(b)-busy
	b.StopTimer()

	if stage == "all" {
		var tasks int64
		require.NoError(b, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM user_tasks`).Scan(&tasks))
		require.Equal(b, int64(min(total, 200_000)), tasks, "one user task per (user, task)")
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-µs/event")
	b.ReportMetric(float64(busy.Microseconds())/float64(total), "box-cpu-µs/event")
	b.ReportMetric(busy.Seconds()/elapsed.Seconds(), "box-cores")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d events in %s (published after %s), %s of CPU (%s on the box)", total,
		elapsed.Round(time.Millisecond), published.Round(time.Millisecond), cpu.Round(time.Millisecond),
		busy.Round(time.Millisecond))
}

// waitFor waits until done reports true.
func waitFor(b *testing.B, done func() bool) {
	deadline := time.Now().Add(10 * time.Minute)
	for !done() {
		require.False(b, time.Now().After(deadline), "the pipeline never got through")
		time.Sleep(5 * time.Millisecond)
	}
}

// runRelay runs an outbox relay from db to bs until the benchmark ends.
func runRelay(b *testing.B, db *sqldb.DB, bs *bus.Bus) {
	ctx, cancel := context.WithCancel(context.Background())
	relay := bus.NewRelay(db, bs, bus.RelayOptions{Logger: bustest.Logger()})
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		require.NoError(b, <-done)
	})
}

// pipelineEvents encodes total behaviour events over 10,000 users and 20 event types, spread as
// BenchmarkEventsEndToEnd spreads them.
func pipelineEvents(b *testing.B, bs *bus.Bus, total int) []bus.Message {
	now := time.Now().UTC()
	prefix := randomPrefix()
	msgs := make([]bus.Message, total)
	for k := range msgs {
		m, err := bs.BehaviourMessage(bus.Behaviour{TenantID: "t_floor", ID: fmt.Sprintf("%se%d", prefix, k),
			Source: "/bench", Type: fmt.Sprintf("act.k%02d", (k/7)%20), UserID: fmt.Sprintf("u%d", (k*7919)%10_000),
			Time: now, ReceivedAt: now, Data: json.RawMessage(fmt.Sprintf(`{"amount":%d}`, k%10_000))})
		require.NoError(b, err)
		msgs[k] = m
	}
	return msgs
}

// publishAll publishes msgs in batches of pipelineBatch from clients goroutines.
func publishAll(b *testing.B, bs *bus.Bus, msgs []bus.Message, clients int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				at := int(next.Add(pipelineBatch)) - pipelineBatch
				if at >= len(msgs) {
					return
				}
				if err := bs.PublishBatch(context.Background(), msgs[at:min(at+pipelineBatch, len(msgs))]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// pipelineFloor is the consumer side of a pipeline floor run.
type pipelineFloor struct {
	d       sqldb.Dialect
	bus     *bus.Bus
	subject string
	prefix  string
	seq     atomic.Int64
}

func newPipelineFloor(d sqldb.Dialect, bs *bus.Bus) *pipelineFloor {
	return &pipelineFloor{d: d, bus: bs, subject: bs.Subject(bus.Domain, "task", "claimed"), prefix: randomPrefix()}
}

// apply writes a batch's rows: each event claims its user's task.
func (p *pipelineFloor) apply(ctx context.Context, tx *sqldb.Tx, msgs []bus.Msg) error {
	now := time.Now().UnixMicro()
	ef := newEventFloor(p.d, len(msgs), false) // the event floor's statements, for this batch's size
	ut := make([]any, 0, 11*len(msgs))
	ac := make([]any, 0, 9*len(msgs))
	out := make([]bus.Message, 0, len(msgs))
	for _, m := range msgs {
		e, err := bus.DecodeBehaviour(m)
		if err != nil {
			return err
		}
		// Ids that grow, as the node's time-ordered ids do.
		seq := fmt.Sprintf("%s%012d", p.prefix, p.seq.Add(1))
		task := "bench-" + e.Type[len(e.Type)-2:]
		id := "ut_" + seq
		ut = append(ut, e.TenantID, e.UserID, task, "once", id, "once", 1, "claimed", 1, now, now)
		data := `{"task":"` + task + `","user_id":"` + e.UserID + `","user_task":"` + id + `"}`
		ac = append(ac, e.TenantID, e.UserID, "act_"+seq, "task.claimed", "task", task, now, now, data)
		out = append(out, bus.Message{Subject: p.subject, ID: "claimed_" + seq, Data: []byte(data)})
	}
	if _, err := tx.Exec(ctx, ef.tasks, ut...); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, ef.activity, ac...); err != nil {
		return err
	}
	return bus.Enqueue(ctx, tx, out...)
}

// onDomain is how many messages DOMAIN holds.
func (p *pipelineFloor) onDomain(b *testing.B, ctx context.Context) int {
	st, err := p.bus.Stats(ctx, bus.Domain)
	require.NoError(b, err)
	return int(st.Messages)
}
