package coupon_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// batchSize is how many users one Issue call of the benchmark serves.
const batchSize = 1000

// BenchmarkIssueBatch measures batched issuance: each iteration is one Issue call for 1,000 new
// users of a template with a quantity and a per-user limit of 1, on SQLite and PostgreSQL, with
// the counters in SQL and in Redis. Every coupon writes its coupon.issued event to the outbox. It
// reports coupons/s and checks, after the run, that every user got exactly one coupon.
//
//	go test -run '^$' -bench BenchmarkIssueBatch -benchtime 20x ./internal/coupon/
func BenchmarkIssueBatch(b *testing.B) {
	for _, d := range sqldbtest.Dialects {
		for _, mode := range allCounters {
			b.Run(fmt.Sprintf("%s/%s", d, mode), func(b *testing.B) {
				db := sqldbtest.Open(b, d, sets)
				tb := setup(b, db, mode)
				tb.template(b, "bench", limited(1_000_000_000, 1))
				ctx := context.Background()
				users := make([]string, batchSize)
				b.ResetTimer()
				for i := range b.N {
					for j := range users {
						users[j] = fmt.Sprintf("b%d-u%d", i, j)
					}
					out, err := tb.svc.Issue(ctx, coupon.IssueParams{TenantID: tenantA, Template: "bench", UserIDs: users})
					if err != nil || out.Created != batchSize {
						b.Fatalf("batch %d: created %d: %v", i, out.Created, err)
					}
				}
				b.StopTimer()
				elapsed := b.Elapsed()
				b.ReportMetric(float64(b.N*batchSize)/elapsed.Seconds(), "coupons/s")
				b.ReportMetric(float64(elapsed.Microseconds())/float64(b.N*batchSize), "µs/coupon")
				require.Equal(b, b.N*batchSize, tb.count(b, "coupons", ""))
			})
		}
	}
}
