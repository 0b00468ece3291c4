package bus_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

func TestDomainEventsThroughTheOutbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := bustest.NewEnv(t, bustest.Embedded)
	b := env.Open(t, bus.Options{})
	db := sqldbtest.Open(t, sqldb.SQLite, []sqldb.Migrations{bus.Migrations})
	relay := bus.NewRelay(db, b, bus.RelayOptions{PollInterval: 20 * time.Millisecond})
	runCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go func() { _ = relay.Run(runCtx) }()

	var mu sync.Mutex
	var got []bus.Event
	stop, err := b.Consume(ctx, bus.ConsumerOptions{Stream: bus.Domain, Name: "events-test",
		FilterSubjects: []string{b.EventSubject("grant.succeeded")}}, func(_ context.Context, m bus.Msg) error {
		e, err := bus.DecodeEvent(m)
		require.NoError(t, err)
		require.Equal(t, e.ID, m.ID)
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
		return nil
	})
	require.NoError(t, err)
	t.Cleanup(stop)

	err = db.Tx(ctx, func(tx *sqldb.Tx) error {
		return b.EnqueueEvent(ctx, tx, bus.Event{Type: "grant.succeeded", TenantID: "mch_1", UserID: "u1",
			SourceKind: "grant", SourceID: "grt_1", Data: json.RawMessage(`{"points":10}`)})
	})
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		mu.Lock()
		defer mu.Unlock()
		require.Len(c, got, 1)
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, "u1", got[0].UserID)
	require.JSONEq(t, `{"points":10}`, string(got[0].Data))
	require.False(t, got[0].Time.IsZero())

	err = db.Tx(ctx, func(tx *sqldb.Tx) error {
		return b.EnqueueEvent(ctx, tx, bus.Event{Type: "Grant Succeeded", TenantID: "mch_1"})
	})
	require.ErrorContains(t, err, "dotted lower-case")
	err = db.Tx(ctx, func(tx *sqldb.Tx) error { return b.EnqueueEvent(ctx, tx, bus.Event{Type: "a.b"}) })
	require.ErrorContains(t, err, "no tenant")
	_, err = bus.DecodeEvent(bus.Msg{ID: "x", Data: []byte(`{"id":"x"}`)})
	require.Error(t, err)
}
