package ledger_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// benchUsers is how many users the benchmark's grants are spread over.
const benchUsers = 10_000

// BenchmarkGrant measures durable grants through the group committer (Service.Grant) with 8 and 32
// concurrent callers on SQLite and PostgreSQL. Every tenth call repeats the previous call's
// business key (a client retry). It reports grants/s and the p50/p99 latency of one call, and
// checks exactly-once after each run: one entry per distinct key, and a clean Verify.
//
//	go test -run '^$' -bench BenchmarkGrant -benchtime 20000x ./internal/ledger/
//
// PERK_BENCH_COMMITTERS and PERK_BENCH_LINGER (a duration, e.g. 500us; -1ns turns it off) override
// the service's group-commit options, for tuning.
func BenchmarkGrant(b *testing.B) {
	for _, d := range sqldbtest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			opts := sqldbtest.Options(b, d)
			if d == sqldb.Postgres {
				opts.MaxOpenConns = 16
			}
			db, err := sqldb.Open(context.Background(), opts)
			require.NoError(b, err)
			b.Cleanup(func() { _ = db.Close() })
			require.NoError(b, db.Migrate(context.Background(), sets, nil))
			reg := prometheus.NewRegistry()
			o := ledger.Options{Registerer: reg}
			if v := os.Getenv("PERK_BENCH_COMMITTERS"); v != "" {
				o.Committers, _ = strconv.Atoi(v)
			}
			if v := os.Getenv("PERK_BENCH_LINGER"); v != "" {
				o.Linger, _ = time.ParseDuration(v)
			}
			svc, err := ledger.New(db, o)
			require.NoError(b, err)
			b.Cleanup(func() { _ = svc.Close() })
			run := 0
			for _, callers := range []int{8, 32} {
				b.Run(fmt.Sprintf("callers-%d", callers), func(b *testing.B) {
					run++
					before := batchStats(b, reg)
					benchGrants(b, db, svc, callers, fmt.Sprintf("r%d-", run))
					after := batchStats(b, reg)
					if n := after[0] - before[0]; n > 0 {
						b.ReportMetric((after[1]-before[1])/n, "grants/batch")
						b.ReportMetric((after[2]-before[2])/n*1000, "batch-ms")
					}
				})
			}
		})
	}
}

// batchStats reads the group committer's histograms: batches, grants, seconds.
func batchStats(b *testing.B, reg *prometheus.Registry) [3]float64 {
	var out [3]float64
	mfs, err := reg.Gather()
	require.NoError(b, err)
	for _, mf := range mfs {
		switch mf.GetName() {
		case "perk_ledger_grant_batch_size":
			h := mf.GetMetric()[0].GetHistogram()
			out[0], out[1] = float64(h.GetSampleCount()), h.GetSampleSum()
		case "perk_ledger_grant_commit_seconds":
			out[2] = mf.GetMetric()[0].GetHistogram().GetSampleSum()
		}
	}
	return out
}

func benchGrants(b *testing.B, db *sqldb.DB, svc *ledger.Service, callers int, prefix string) {
	ctx := context.Background()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Int32
	b.ResetTimer()
	begin := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				k := i
				if i%10 == 9 {
					k = i - 1 // a retry of the previous call
				}
				t0 := time.Now()
				_, _, err := svc.Grant(ctx, ledger.GrantParams{TenantID: shop, UserID: fmt.Sprintf("u-%d", k%benchUsers),
					Asset: ledger.AssetPoints, Amount: 10, BusinessKey: fmt.Sprintf("%s%d", prefix, k),
					Expiry: ledger.Expiry{Policy: ledger.ExpireEndOfYear}})
				lat[i] = time.Since(t0)
				if err != nil && failed.Add(1) == 1 {
					b.Errorf("grant: %v", err)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "grants/s")
	b.ReportMetric(float64(lat[b.N/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[b.N*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")

	// Exactly once: one entry per distinct key.
	distinct := b.N - b.N/10
	var entries int
	require.NoError(b, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM ledger_entries WHERE business_key LIKE $1`,
		prefix+"%").Scan(&entries))
	require.Equal(b, distinct, entries, "entries != distinct business keys")
	r, err := svc.Verify(ctx)
	require.NoError(b, err)
	require.True(b, r.OK(), "%v", r.Mismatches)
}
