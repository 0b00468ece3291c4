package activity_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/perkhq/perk/internal/activity"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// BenchmarkIngest measures records per second from the DOMAIN stream (embedded JetStream, events
// published beforehand) into SQLite and PostgreSQL, with batches of 1 (one record per
// transaction), 64 (the default) and 256 events. Run it with a fixed count, e.g.
// -benchtime=20000x.
func BenchmarkIngest(b *testing.B) {
	for _, c := range []struct {
		dialect sqldb.Dialect
		batch   int
	}{{sqldb.SQLite, 1}, {sqldb.SQLite, 64}, {sqldb.SQLite, 256}, {sqldb.Postgres, 1}, {sqldb.Postgres, 256}} {
		b.Run(fmt.Sprintf("%s/batch=%d", c.dialect, c.batch), func(b *testing.B) {
			benchIngest(b, c.dialect, c.batch)
		})
	}
}

func benchIngest(b *testing.B, dialect sqldb.Dialect, batch int) {
	ctx := context.Background()
	db := sqldbtest.Open(b, dialect, sets)
	bs := bustest.NewEnv(b, bustest.Embedded).Open(b, bus.Options{})
	publishEvents(b, bs, b.N)
	svc := activity.New(db, bs, activity.Options{MaxBatch: batch, Logger: bustest.Logger()})

	b.ResetTimer()
	start := time.Now()
	stop, err := svc.Consume(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for {
		var n int
		if err := db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM activity_records`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n == b.N {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
}

func publishEvents(b *testing.B, bs *bus.Bus, n int) {
	b.Helper()
	ctx := context.Background()
	batch := make([]bus.Message, 0, 1000)
	flush := func() {
		if err := bs.PublishBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	now := time.Now().UTC()
	for i := range n {
		e := bus.Event{ID: ids.New("evt", now), Type: "grant.succeeded", TenantID: fmt.Sprint("mch_", i%10),
			UserID: fmt.Sprint("u", i%5000), SourceKind: "grant", SourceID: fmt.Sprint("grt_", i),
			Time: now.Add(time.Duration(i) * time.Microsecond), Data: json.RawMessage(`{"points":10,"flow":"checkin"}`)}
		data, err := json.Marshal(e)
		if err != nil {
			b.Fatal(err)
		}
		batch = append(batch, bus.Message{Subject: bs.EventSubject(e.Type), ID: e.ID, Data: data})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
}
