package task_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/task"
)

// Benchmark shape: 10,000 users, 20 live tasks, batches of 256 events.
const (
	benchUsers = 10_000
	benchBatch = 256
)

// benchTypes are the event types of the benchmark, with how often each occurs.
var benchTypes = []string{"checkin", "order.paid", "order.paid", "product.viewed", "product.viewed", "share", "login", "comment"}

// benchTasks publishes the three demo tasks and 17 more over the benchmark's event types: daily,
// weekly, monthly and one-off, counts, sums and distinct values, some with filters. With
// progressOnly, the 17 have targets no user reaches and the demo tasks are left out: no stage
// completes, no grant runs.
func benchTasks(t testing.TB, b *testBundle, progressOnly bool) {
	if !progressOnly {
		for key, s := range task.DemoSpecs() {
			b.publish(t, task.KindTask, key, string(s))
		}
	}
	kinds := []string{"daily", "weekly", "monthly", "one_off"}
	types := []string{"product.viewed", "share", "login", "comment", "order.paid"}
	for i := range 17 {
		typ := types[i%len(types)]
		metric := `{"type":"count"}`
		switch {
		case typ == "order.paid":
			metric = `{"type":"sum","field":"amount"}`
		case typ == "product.viewed" && i%2 == 0:
			metric = `{"type":"distinct","field":"sku"}`
		}
		target := 3 + i%5
		if typ == "order.paid" {
			target = 20000 * (1 + i%3)
		}
		if progressOnly {
			target *= 1000
			if strings.Contains(metric, "distinct") {
				target = task.MaxDistinct // 50 SKUs: never reached
			}
		}
		filter := ""
		if i%4 == 1 {
			filter = `,"filter":"event.data.channel != \"spam\""`
		}
		b.publish(t, task.KindTask, fmt.Sprintf("task-%02d", i), fmt.Sprintf(`{"kind":%q,
			"trigger":{"event_types":[%q]%s},"metric":%s,
			"stages":[{"target":%d,"rewards":[{"type":"points","amount":%d}]}],"title":{"en":"Task %d"}}`,
			kinds[i%len(kinds)], typ, filter, metric, target, 1+i, i))
	}
}

// benchEvent is a random event of a random user within the benchmark's week.
func benchEvent(r *rand.Rand, seq int) bus.Behaviour {
	user := fmt.Sprintf("u-%05d", r.IntN(benchUsers))
	typ := benchTypes[r.IntN(len(benchTypes))]
	data := fmt.Sprintf(`{"amount":%d,"sku":"sku-%d","channel":"app"}`, 1000+r.IntN(20000), r.IntN(50))
	at := start.Add(time.Duration(r.IntN(5*24*3600)) * time.Second)
	e := event(user, typ, data, at)
	e.ID = fmt.Sprintf("b-%d", seq)
	return e
}

// warmUp applies 20,480 events before the timed run (every user has started tasks) and has the
// engine analyze the tables, as autovacuum does on a running PostgreSQL: on a table it never
// analyzed, PostgreSQL keeps the plan it cached while the table was empty (a sequential scan),
// which makes a fresh table's reads by key slow down as it grows, until the first analyze. A perk
// node never analyzes SQLite (its statistics would have SQLite prepare some statements again for
// every run, see saveProgress), so neither does the benchmark.
func warmUp(b *testing.B, tb *testBundle, r *rand.Rand) {
	ctx := context.Background()
	for start := 0; start < 20_480; start += benchBatch {
		batch := make([]bus.Behaviour, benchBatch)
		for i := range batch {
			batch[i] = benchEvent(r, -(start + i + 1))
		}
		require.NoError(b, tb.db.Tx(ctx, func(tx *sqldb.Tx) error { return tb.svc.ApplyBatch(ctx, tx, batch) }))
	}
	if tb.db.Dialect() == sqldb.Postgres {
		_, err := tb.db.Writer().ExecContext(ctx, `ANALYZE`)
		require.NoError(b, err)
	}
}

// BenchmarkApplyBatch measures behaviour events applied through ApplyBatch — one transaction per
// batch of 256, as the task-progress consumer runs them, the grants of completed stages run right
// after each commit — with 10,000 users and 20 live tasks, on SQLite and PostgreSQL. It reports
// events/s and the stage completions (grants) per second. "mixed" is the 20 tasks (about one event
// in seven completes a stage); "progress-only" is 17 tasks no event completes, which measures
// ApplyBatch without the grants. Events go to the outbox in one statement per batch, like
// bus.EnqueueEvent. A warm-up (see warmUp) runs first, untimed.
//
//	go test -run '^$' -bench BenchmarkApplyBatch -benchtime 25600x ./internal/task/
func BenchmarkApplyBatch(b *testing.B) {
	for _, d := range sqldbtest.Dialects {
		for _, mix := range []string{"mixed", "progress-only"} {
			b.Run(string(d)+"/"+mix, func(b *testing.B) { benchApply(b, d, mix == "progress-only") })
		}
	}
}

func benchApply(b *testing.B, d sqldb.Dialect, progressOnly bool) {
	opts := sqldbtest.Options(b, d)
	db, err := sqldb.Open(context.Background(), opts)
	require.NoError(b, err)
	b.Cleanup(func() { _ = db.Close() })
	require.NoError(b, db.Migrate(context.Background(), sets, nil))
	tb := setup(b, db)
	benchTasks(b, tb, progressOnly)
	r := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	warmUp(b, tb, r)
	events := make([]bus.Behaviour, b.N)
	for i := range events {
		events[i] = benchEvent(r, i)
	}
	var grantsBefore int
	require.NoError(b, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM user_task_grants`).Scan(&grantsBefore))
	b.ResetTimer()
	began := time.Now()
	for start := 0; start < len(events); start += benchBatch {
		batch := events[start:min(start+benchBatch, len(events))]
		if err := db.Tx(ctx, func(tx *sqldb.Tx) error { return tb.svc.ApplyBatch(ctx, tx, batch) }); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(began)
	b.StopTimer()
	var grants int
	require.NoError(b, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM user_task_grants`).Scan(&grants))
	b.ReportMetric(float64(len(events))/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(grants-grantsBefore)/elapsed.Seconds(), "grants/s")
	b.ReportMetric(0, "ns/op")
}
