package app

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// loadResult is what one load run measured.
type loadResult struct {
	ops      int
	elapsed  time.Duration
	p50, p99 time.Duration
	// cpu is the CPU time this process used during the run, busy the whole machine's (see
	// machineBusy).
	cpu, busy time.Duration
}

func (r loadResult) perSecond() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// runLoad calls op total times from clients goroutines and measures throughput and latency.
func runLoad(tb testing.TB, clients, total int, op func(ctx context.Context, i int) error) loadResult {
	tb.Helper()
	ctx := context.Background()
	latencies := make([]time.Duration, total)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	cpu, busy, start := selfCPU(), machineBusy(tb), time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				t0 := time.Now()
				if err := op(ctx, i); err != nil {
					failed.Store(err)
					return
				}
				latencies[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu, busy = selfCPU()-cpu, machineBusy(tb)-busy
	if err, ok := failed.Load().(error); ok {
		tb.Fatalf("load run failed: %v", err)
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	return loadResult{ops: total, elapsed: elapsed, p50: latencies[total/2], p99: latencies[total*99/100],
		cpu: cpu, busy: busy}
}

func (r loadResult) report(b *testing.B, unit string) {
	b.ReportMetric(r.perSecond(), unit+"/s")
	b.ReportMetric(float64(r.p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// BenchmarkPgbenchReference prints the TPC-B-like tps of the test PostgreSQL, the ceiling the
// PostgreSQL figures are read against (8 clients, 2 threads, 10 s, scale 10).
func BenchmarkPgbenchReference(b *testing.B) {
	url := sqldbtest.FreshDatabase(b)
	if out, err := exec.Command("pgbench", "-i", "-q", "-s", "10", url).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	out, err := exec.Command("pgbench", "-n", "-c", "8", "-j", "2", "-T", "10", "-b", "tpcb-like", url).CombinedOutput()
	require.NoError(b, err, string(out))
	m := tpsLine.FindStringSubmatch(string(out))
	require.NotNil(b, m, string(out))
	tps, err := strconv.ParseFloat(m[1], 64)
	require.NoError(b, err)
	b.ReportMetric(tps, "pgbench-tps")
	b.ReportMetric(0, "ns/op")
	fmt.Printf("pgbench tpcb-like, 8 clients, 10 s: %.0f tps\n", tps)
}
