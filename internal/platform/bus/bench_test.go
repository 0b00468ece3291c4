package bus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

var payload = []byte(`{"specversion":"1.0","type":"order.paid","source":"shop","id":"x","data":{"amount":1299}}`)

// BenchmarkPublish measures acknowledged publishes per second, one at a time (sync) and pipelined
// (batch), on the embedded and the external server.
func BenchmarkPublish(b *testing.B) {
	for _, mode := range bustest.Modes {
		env := bustest.NewEnv(b, mode)
		bs := env.Open(b, bus.Options{})
		subject := bs.Subject(bus.Events, "order", "paid")
		b.Run(string(mode)+"/sync", func(b *testing.B) {
			ctx := context.Background()
			start := time.Now()
			for i := 0; b.Loop(); i++ {
				if err := bs.Publish(ctx, bus.Message{Subject: subject, ID: fmt.Sprint("s", i), Data: payload}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
		b.Run(string(mode)+"/batch", func(b *testing.B) {
			ctx := context.Background()
			const size = 1000
			batch := make([]bus.Message, 0, size)
			n := 0
			flush := func() {
				if err := bs.PublishBatch(ctx, batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
			start := time.Now()
			for b.Loop() {
				batch = append(batch, bus.Message{Subject: subject, ID: fmt.Sprint("b", n), Data: payload})
				n++
				if len(batch) == size {
					flush()
				}
			}
			flush()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// BenchmarkOutboxRelay measures rows per second through the relay, from a SQLite outbox into the
// embedded JetStream, rows enqueued beforehand.
func BenchmarkOutboxRelay(b *testing.B) {
	db := sqldbtest.Open(b, sqldb.SQLite, sets)
	env := bustest.NewEnv(b, bustest.Embedded)
	bs := env.Open(b, bus.Options{})
	subject := bs.Subject(bus.Domain, "grant", "succeeded")
	ctx := context.Background()

	msgs := make([]bus.Message, b.N)
	for i := range msgs {
		msgs[i] = bus.Message{Subject: subject, Data: payload}
	}
	for i := 0; i < len(msgs); i += 1000 {
		err := db.Tx(ctx, func(tx *sqldb.Tx) error { return bus.Enqueue(ctx, tx, msgs[i:min(i+1000, len(msgs))]...) })
		if err != nil {
			b.Fatal(err)
		}
	}
	relay := bus.NewRelay(db, bs, bus.RelayOptions{BatchSize: 500, Logger: bustest.Logger()})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)

	b.ResetTimer()
	start := time.Now()
	go func() { done <- relay.Run(runCtx) }()
	for {
		var left int
		if err := db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM bus_outbox WHERE sent_at IS NULL`).Scan(&left); err != nil {
			b.Fatal(err)
		}
		if left == 0 {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rows/s")
}

// BenchmarkConsumeExactlyOnce measures messages per second through the exactly-once consumers,
// one transaction per message (ConsumeTx) and per batch (ConsumeBatchTx), on both SQL engines,
// messages published beforehand on the embedded server.
func BenchmarkConsumeExactlyOnce(b *testing.B) {
	for _, d := range sqldbtest.Dialects {
		for _, batched := range []bool{false, true} {
			name := string(d) + "/single"
			if batched {
				name = string(d) + "/batch"
			}
			b.Run(name, func(b *testing.B) {
				db := sqldbtest.Open(b, d, sets)
				bs := bustest.NewEnv(b, bustest.Embedded).Open(b, bus.Options{})
				ctx := context.Background()
				msgs := make([]bus.Message, b.N)
				for i := range msgs {
					msgs[i] = bus.Message{Subject: bs.Subject(bus.Events, "t1", "order", "paid"), ID: fmt.Sprint("m", i), Data: payload}
				}
				for i := 0; i < len(msgs); i += 1000 {
					if err := bs.PublishBatch(ctx, msgs[i:min(i+1000, len(msgs))]); err != nil {
						b.Fatal(err)
					}
				}
				opts := bus.ConsumerOptions{Stream: bus.Events, Name: "bench", BatchSize: 256, MaxAckPending: 4096}
				b.ResetTimer()
				start := time.Now()
				var stop func()
				var err error
				if batched {
					stop, err = bs.ConsumeBatchTx(ctx, db, opts, func(context.Context, *sqldb.Tx, []bus.Msg) error { return nil })
				} else {
					stop, err = bs.ConsumeTx(ctx, db, opts, func(context.Context, *sqldb.Tx, bus.Msg) error { return nil })
				}
				if err != nil {
					b.Fatal(err)
				}
				for processed := 0; processed < b.N; time.Sleep(2 * time.Millisecond) {
					if err := db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM bus_processed`).Scan(&processed); err != nil {
						b.Fatal(err)
					}
				}
				elapsed := time.Since(start)
				b.StopTimer()
				stop()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			})
		}
	}
}
