package reward_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/reward"
)

// BenchmarkCreateInline measures durable point grants through the Go API on the synchronous path:
// Create with one inline points reward, answered once the grant is delivered (ledger entry, step
// row, grant.succeeded in the outbox), with 8 and 32 concurrent clients, and
// without group commit for comparison. It
// reports grants/s and the p50/p99 latency, and checks exactly-once after the run.
func BenchmarkCreateInline(b *testing.B) {
	for _, d := range sqldbtest.Dialects {
		for _, clients := range []int{8, 32} {
			b.Run(fmt.Sprintf("%s/clients=%d", d, clients), func(b *testing.B) { benchCreate(b, d, clients, 0) })
		}
		// The step-by-step path, for comparison: no group commit.
		b.Run(fmt.Sprintf("%s/clients=8/no-batch", d), func(b *testing.B) { benchCreate(b, d, 8, 1) })
	}
}

func benchCreate(b *testing.B, d sqldb.Dialect, clients, batch int) {
	ctx := context.Background()
	db := sqldbtest.Open(b, d, sets)
	led, err := ledger.New(db, ledger.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = led.Close() })
	svc, err := reward.New(db, reward.Options{Ledger: led, Events: outboxEvents, MaxBatch: batch,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(svc.Close)
	var (
		seq   atomic.Int64
		fails atomic.Int64
		mu    sync.Mutex
		took  []time.Duration
	)
	b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			i := seq.Add(1)
			start := time.Now()
			g, _, err := svc.Create(ctx, pointsParams(fmt.Sprintf("u%d", i%1000), fmt.Sprintf("b-%d", i), 1))
			if err != nil || g.State != reward.StateSucceeded {
				fails.Add(1)
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		took = append(took, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	if fails.Load() > 0 {
		b.Fatalf("%d grants did not succeed", fails.Load())
	}
	var entries int64
	if err := db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM ledger_entries WHERE tenant_id = $1`, tenantA).Scan(&entries); err != nil {
		b.Fatal(err)
	}
	if entries != seq.Load() {
		b.Fatalf("%d ledger entries for %d grants", entries, seq.Load())
	}
	slices.Sort(took)
	b.ReportMetric(float64(len(took))/b.Elapsed().Seconds(), "grants/s")
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}
