package activity_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/activity"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/prom"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

var sets = []sqldb.Migrations{bus.Migrations, activity.Migrations}

// testBundle is one test's world: a database, an embedded bus with a relay, and the service.
type testBundle struct {
	db  *sqldb.DB
	bus *bus.Bus
	svc *activity.Service
	reg *prometheus.Registry
}

// setup builds a bundle on db; with consume it also runs the relay and the service's consumer.
func setup(t *testing.T, db *sqldb.DB, opts activity.Options, consume bool) *testBundle {
	t.Helper()
	reg := prometheus.NewRegistry()
	b := bustest.NewEnv(t, bustest.Embedded).Open(t, bus.Options{Registerer: reg})
	opts.Registerer = reg
	if opts.Logger == nil {
		opts.Logger = bustest.Logger()
	}
	tb := &testBundle{db: db, bus: b, svc: activity.New(db, b, opts), reg: reg}
	if !consume {
		return tb
	}
	ctx, cancel := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() {
		relayDone <- bus.NewRelay(db, b, bus.RelayOptions{PollInterval: 20 * time.Millisecond, Logger: bustest.Logger()}).Run(ctx)
	}()
	runDone := make(chan error, 1)
	go func() { runDone <- tb.svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-runDone)
		require.NoError(t, <-relayDone)
	})
	return tb
}

// enqueue writes events through the outbox, as producers do.
func (tb *testBundle) enqueue(t *testing.T, events ...bus.Event) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, tb.db.Tx(ctx, func(tx *sqldb.Tx) error { return tb.bus.EnqueueEvent(ctx, tx, events...) }))
}

// publish puts a raw message on the DOMAIN stream, bypassing the outbox.
func (tb *testBundle) publish(t *testing.T, eventType, msgID string, data []byte) {
	t.Helper()
	require.NoError(t, tb.bus.Publish(context.Background(),
		bus.Message{Subject: tb.bus.EventSubject(eventType), ID: msgID, Data: data}))
}

// all walks every page of a search and returns the records, checking each page's order.
func (tb *testBundle) all(t require.TestingT, p activity.ListParams) []activity.Record {
	var out []activity.Record
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10000, "the walk does not end")
		page, err := tb.svc.List(context.Background(), p)
		require.NoError(t, err)
		out = append(out, page.Items...)
		if page.Next == "" {
			return out
		}
		require.Len(t, page.Items, max(p.Limit, 1), "only the last page may be short")
		p.Cursor = page.Next
	}
}

// waitFor waits until the tenant's log holds n records and returns them.
func (tb *testBundle) waitFor(t *testing.T, tenantID string, n int) []activity.Record {
	t.Helper()
	var got []activity.Record
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got = tb.all(c, activity.ListParams{TenantID: tenantID, Limit: 200})
		require.Len(c, got, n)
	}, 20*time.Second, 20*time.Millisecond)
	return got
}

func (tb *testBundle) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	v, err := prom.Value(tb.reg, name, want)
	require.NoError(t, err)
	return v
}

func event(tenantID, userID, eventType string, at time.Time) bus.Event {
	data, _ := json.Marshal(map[string]string{"user": userID})
	return bus.Event{ID: ids.New("evt", at), TenantID: tenantID, UserID: userID, Type: eventType, SourceKind: "grant",
		SourceID: "grt_" + strings.ReplaceAll(eventType, ".", "_"), Time: at, Data: data}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestEnqueuedEventsAppearInTheLog(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		tb := setup(t, db, activity.Options{}, true)
		at := time.Now().UTC().Add(-time.Minute).Truncate(time.Microsecond).Add(789 * time.Nanosecond)
		events := []bus.Event{
			{ID: "evt_1", Type: "grant.succeeded", TenantID: "mch_a", UserID: "u1", SourceKind: "grant", SourceID: "grt_1",
				Time: at, Data: json.RawMessage(`{"points": 10, "reason": "check-in"}`)},
			{ID: "evt_2", Type: "ledger.entry_posted", TenantID: "mch_a", UserID: "u1", SourceKind: "ledger_entry",
				SourceID: "ent_1", Time: at.Add(time.Second)},
			{ID: "evt_3", Type: "campaign.published", TenantID: "mch_a", Time: at.Add(2 * time.Second)}, // merchant-level
		}
		tb.enqueue(t, events[:2]...)
		tb.enqueue(t, events[2])

		got := tb.waitFor(t, "mch_a", 3)
		require.Equal(t, []string{"evt_3", "evt_2", "evt_1"}, idsOf(got), "newest first")
		r := got[2]
		require.Equal(t, "grant.succeeded", r.Type)
		require.Equal(t, "u1", r.UserID)
		require.Equal(t, "grant", r.SourceKind)
		require.Equal(t, "grt_1", r.SourceID)
		require.Equal(t, at.Truncate(time.Microsecond), r.OccurredAt, "the event time, to the microsecond")
		require.JSONEq(t, `{"points":10,"reason":"check-in"}`, string(r.Data))
		require.False(t, r.RecordedAt.Before(r.OccurredAt))
		require.Empty(t, got[0].UserID)
		require.Nil(t, got[1].Data)

		require.Equal(t, 3.0, tb.counter(t, "perk_activity_records_written_total"))
		lag := tb.counter(t, "perk_activity_lag_seconds")
		require.Greater(t, lag, 0.0)
		require.Less(t, lag, 3600.0)
	})
}

func TestSameEventTwiceMakesOneRecord(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		tb := setup(t, db, activity.Options{}, true)
		e := event("mch_a", "u1", "grant.succeeded", time.Now().UTC())
		e.ID = "evt_twice"
		data, err := json.Marshal(e)
		require.NoError(t, err)
		// Two message ids, so neither JetStream's window nor a processed-id table catches the copy:
		// only the record's key does.
		tb.publish(t, e.Type, "copy-1", data)
		tb.publish(t, e.Type, "copy-2", data)
		tb.enqueue(t, event("mch_a", "u2", "grant.failed", time.Now().UTC())) // a marker after both

		require.EventuallyWithT(t, func(c *assert.CollectT) {
			require.Equal(c, 1.0, tb.counter(t, "perk_activity_skipped_total", "reason", "duplicate"))
			require.Equal(c, 2.0, tb.counter(t, "perk_activity_records_written_total"))
		}, 20*time.Second, 20*time.Millisecond)
		got := tb.waitFor(t, "mch_a", 2)
		require.Contains(t, idsOf(got), "evt_twice")

		n, err := tb.svc.Write(context.Background(), e)
		require.NoError(t, err)
		require.Zero(t, n, "writing it again adds nothing")
		twin := event("mch_a", "u3", "grant.succeeded", time.Now().UTC())
		n, err = tb.svc.Write(context.Background(), twin, twin)
		require.NoError(t, err)
		require.Equal(t, 1, n, "twice in one batch is once too")
		tb.waitFor(t, "mch_a", 3)
	})
}

func TestMalformedMessagesDoNotStopLaterOnes(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		tb := setup(t, db, activity.Options{}, true)
		now := time.Now().UTC()
		tb.publish(t, "grant.succeeded", "bad-json", []byte(`{not json`))
		tb.publish(t, "grant.succeeded", "not-envelope", []byte(`{"id":"x"}`))
		bad := event("mch_a", "u1", "grant.succeeded", now)
		bad.ID, bad.Type = "evt_bad_type", "Grant Succeeded"
		raw, err := json.Marshal(bad)
		require.NoError(t, err)
		tb.publish(t, "grant.succeeded", "bad-type", raw)
		nul := event("mch_a", "u\x001", "grant.succeeded", now)
		nul.ID = "evt_nul"
		raw, err = json.Marshal(nul)
		require.NoError(t, err)
		tb.publish(t, "grant.succeeded", "nul-user", raw)
		tb.enqueue(t, event("mch_a", "u1", "grant.succeeded", now))

		got := tb.waitFor(t, "mch_a", 1)
		require.Equal(t, "u1", got[0].UserID)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			require.Equal(c, 2.0, tb.counter(t, "perk_activity_skipped_total", "reason", "undecodable"))
			require.Equal(c, 2.0, tb.counter(t, "perk_activity_skipped_total", "reason", "malformed"))
			require.Equal(c, 2.0, tb.counter(t, "perk_bus_handled_total", "consumer", "activity", "result", "term"),
				"undecodable messages are terminated, not redelivered")
		}, 20*time.Second, 20*time.Millisecond)
		require.Zero(t, tb.counter(t, "perk_bus_handled_total", "consumer", "activity", "result", "retry"))
	})
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		tb := setup(t, db, activity.Options{}, false)
		ctx := context.Background()
		a := event("mch_a", "u1", "grant.succeeded", t0)
		a.ID = "evt_same"
		b := a
		b.TenantID = "mch_b"
		n, err := tb.svc.Write(ctx, a, b, event("mch_b", "u1", "grant.failed", t0.Add(time.Second)))
		require.NoError(t, err)
		require.Equal(t, 3, n, "an id is only unique within its tenant and user")

		gotA := tb.all(t, activity.ListParams{TenantID: "mch_a", UserID: "u1", Limit: 1})
		require.Len(t, gotA, 1)
		require.Equal(t, "mch_a", gotA[0].TenantID)
		gotB := tb.all(t, activity.ListParams{TenantID: "mch_b", Limit: 1})
		require.Len(t, gotB, 2)
		for _, r := range gotB {
			require.Equal(t, "mch_b", r.TenantID)
		}
		empty, err := tb.svc.List(ctx, activity.ListParams{TenantID: "mch_c"})
		require.NoError(t, err)
		require.Empty(t, empty.Items)
		require.NotNil(t, empty.Items, "an empty page still has an items array")
	})
}

func TestRetention(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		tb := setup(t, db, activity.Options{}, false)
		ctx := context.Background()
		now := time.Now().UTC()
		days := func(n int) time.Time { return now.Add(-time.Duration(n) * 24 * time.Hour) }
		var events []bus.Event
		for i, at := range []time.Time{days(400), days(100), days(91), days(89), days(1), now} {
			e := event("mch_a", fmt.Sprint("u", i%2), "grant.succeeded", at)
			e.ID = fmt.Sprintf("evt_%d", i)
			events = append(events, e)
		}
		_, err := tb.svc.Write(ctx, events...)
		require.NoError(t, err)

		n, err := tb.svc.Prune(ctx, 0, 10)
		require.NoError(t, err)
		require.Zero(t, n, "0 keeps forever")
		n, err = tb.svc.Prune(ctx, 90*24*time.Hour, 1) // one per transaction: the loop must go on
		require.NoError(t, err)
		require.Equal(t, 3, n)
		require.Equal(t, []string{"evt_5", "evt_4", "evt_3"}, idsOf(tb.all(t, activity.ListParams{TenantID: "mch_a"})))
		n, err = tb.svc.Prune(ctx, 90*24*time.Hour, 1)
		require.NoError(t, err)
		require.Zero(t, n)
		require.Equal(t, 3.0, tb.counter(t, "perk_activity_pruned_total"))
	})
}

func TestRunPrunesAndSkipsExpiredEvents(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		retention := 30 * 24 * time.Hour
		now := time.Now().UTC()
		old := event("mch_a", "u1", "grant.succeeded", now.Add(-retention-time.Hour))
		recent := event("mch_a", "u1", "grant.failed", now.Add(-retention+time.Hour))
		// Written before the service runs: Run prunes at once.
		_, err := activity.New(db, nil, activity.Options{}).Write(context.Background(), old, recent)
		require.NoError(t, err)

		tb := setup(t, db, activity.Options{Retention: retention}, true)
		tb.enqueue(t, event("mch_a", "u2", "grant.succeeded", now.Add(-retention-time.Minute))) // expired on arrival
		tb.enqueue(t, event("mch_a", "u2", "grant.succeeded", now))

		require.EventuallyWithT(t, func(c *assert.CollectT) {
			got := tb.all(c, activity.ListParams{TenantID: "mch_a"})
			require.Len(c, got, 2)
			require.Equal(c, "u2", got[0].UserID)
			require.Equal(c, recent.Time.Truncate(time.Microsecond), got[1].OccurredAt)
			require.Equal(c, 1.0, tb.counter(t, "perk_activity_skipped_total", "reason", "expired"))
		}, 20*time.Second, 20*time.Millisecond)
		require.Equal(t, 1.0, tb.counter(t, "perk_activity_pruned_total"))
	})
}

func TestPruneOnManyNodesAtOnce(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		svc := activity.New(db, nil, activity.Options{})
		const old, young = 1200, 50
		var events []bus.Event
		for i := range old + young {
			at := time.Now().UTC().Add(-time.Duration(i) * time.Minute)
			if i >= young {
				at = at.Add(-48 * time.Hour)
			}
			e := event("mch_a", fmt.Sprint("u", i%7), "grant.succeeded", at)
			e.ID = fmt.Sprintf("evt_%05d", i)
			events = append(events, e)
		}
		_, err := svc.Write(ctx, events...)
		require.NoError(t, err)

		const nodes = 4
		results := make(chan int, nodes)
		errs := make(chan error, nodes)
		for range nodes {
			go func() {
				n, err := activity.New(db, nil, activity.Options{}).Prune(ctx, 24*time.Hour, 50)
				results <- n
				errs <- err
			}()
		}
		total := 0
		for range nodes {
			total += <-results
			require.NoError(t, <-errs)
		}
		require.Equal(t, old, total, "every old record deleted once")
		left := (&testBundle{svc: svc}).all(t, activity.ListParams{TenantID: "mch_a", Limit: 200})
		require.Len(t, left, young)
	})
}

func idsOf(recs []activity.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}
