package ingest_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ingest"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/clock"
)

// BenchmarkAccept measures events per second through Service.Accept into the embedded JetStream:
// batches of 100 and 1000 realistic events (about 230 bytes each, 10,000 users), sent by 1 and by
// 4 concurrent callers. Each op is one batch; every event is new and every one must be accepted.
//
//	go test -run '^$' -bench BenchmarkAccept -benchtime 100x ./internal/ingest/
func BenchmarkAccept(b *testing.B) {
	env := bustest.NewEnv(b, bustest.Embedded)
	bs := env.Open(b, bus.Options{})
	svc := ingest.New(bs, ingest.Options{Clock: clock.NewFake(start)})
	run := 0
	for _, size := range []int{100, 1000} {
		for _, callers := range []int{1, 4} {
			b.Run(fmt.Sprintf("batch-%d/callers-%d", size, callers), func(b *testing.B) {
				run++
				bodies := make([][]byte, b.N)
				for i := range bodies {
					bodies[i] = benchBatch(fmt.Sprintf("r%d-%d-", run, i), size)
				}
				var next, accepted atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				var wg sync.WaitGroup
				for range callers {
					wg.Go(func() {
						for {
							i := int(next.Add(1)) - 1
							if i >= len(bodies) {
								return
							}
							res, err := svc.Accept(context.Background(), "mch_bench", ingest.ContentTypeBatch, bodies[i])
							if err != nil {
								b.Error(err)
								return
							}
							accepted.Add(int64(res.Accepted))
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				require.EqualValues(b, b.N*size, accepted.Load())
				b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/event")
			})
		}
	}
}

// benchBatch is a batch of n new events with ids prefix0 … prefix(n-1).
func benchBatch(prefix string, n int) []byte {
	body := make([]byte, 0, n*240)
	body = append(body, '[')
	for i := range n {
		if i > 0 {
			body = append(body, ',')
		}
		id := prefix + strconv.Itoa(i)
		body = append(body, `{"specversion":"1.0","id":"`...)
		body = append(body, id...)
		body = append(body, `","source":"/shop/orders","type":"order.paid","subject":"user-`...)
		body = strconv.AppendInt(body, int64(i*7919%10_000), 10)
		body = append(body, `","time":"`...)
		body = append(body, "2026-03-10T09:00:00.000Z"...)
		body = append(body, `","data":{"amount":`...)
		body = strconv.AppendInt(body, int64(100+i%5000), 10)
		body = append(body, `,"order_id":"`...)
		body = append(body, id...)
		body = append(body, `","channel":"app"}}`...)
	}
	return append(body, ']')
}
