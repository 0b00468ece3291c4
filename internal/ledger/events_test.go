package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// TestEventsThroughTheOutbox: every committed entry reaches the DOMAIN stream exactly once, through
// the outbox written in the entry's transaction; rolled-back entries emit nothing.
func TestEventsThroughTheOutbox(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, []sqldb.Migrations{bus.Migrations, ledger.Migrations}, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		bs := bustest.NewEnv(t, bustest.Embedded).Open(t, bus.Options{})
		b := setup(t, db, func(o *ledger.Options) { o.Events = bs.EnqueueEvent })
		runCtx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		relay := bus.NewRelay(db, bs, bus.RelayOptions{PollInterval: 20 * time.Millisecond})
		go func() { _ = relay.Run(runCtx) }()

		var (
			mu  sync.Mutex
			got = map[string][]bus.Event{} // by type
		)
		stop, err := bs.Consume(ctx, bus.ConsumerOptions{Stream: bus.Domain, Name: "ledger-events-test",
			FilterSubjects: []string{bs.EventSubject("ledger.>")}}, func(_ context.Context, m bus.Msg) error {
			e, err := bus.DecodeEvent(m)
			if err != nil {
				return bus.Permanent(err)
			}
			mu.Lock()
			got[e.Type] = append(got[e.Type], e)
			mu.Unlock()
			return nil
		})
		require.NoError(t, err)
		t.Cleanup(stop)

		b.grant(t, alice, 50, "g-1", days(1))
		b.grant(t, alice, 50, "g-2", never)
		_, created, err := b.svc.Grant(ctx, ledger.GrantParams{TenantID: shop, UserID: alice, Asset: "points", Amount: 50, BusinessKey: "g-2"})
		require.NoError(t, err)
		require.False(t, created) // a repeat emits nothing
		rollback := errors.New("rolled back")
		require.ErrorIs(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			_, _, err := b.svc.GrantTx(ctx, tx, ledger.GrantParams{TenantID: shop, UserID: bob, Asset: "points", Amount: 5, BusinessKey: "g-3"})
			require.NoError(t, err)
			return rollback
		}), rollback)
		b.spend(t, alice, 20, "s-1")
		h := b.hold(t, alice, 10, "order-1", time.Hour)
		_, _, err = b.svc.Capture(ctx, ledger.CaptureParams{TenantID: shop, HoldID: h.ID})
		require.NoError(t, err)
		_, _, err = b.svc.Adjust(ctx, ledger.AdjustParams{TenantID: shop, UserID: alice, Asset: "points", Amount: 3,
			Reason: "goodwill", BusinessKey: "a-1"})
		require.NoError(t, err)
		b.clock.Advance(72 * time.Hour)
		n, err := b.svc.ExpireDue(ctx, 10)
		require.NoError(t, err)
		require.Equal(t, 1, n)

		page, err := b.svc.Entries(ctx, ledger.ListEntriesParams{TenantID: shop, UserID: alice})
		require.NoError(t, err)
		require.Len(t, page.Items, 6) // two grants, spend, capture, adjust, expire
		want := map[string]ledger.Entry{}
		for _, e := range page.Items {
			want[e.ID] = e
		}
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			mu.Lock()
			defer mu.Unlock()
			require.Len(c, got[ledger.EventEntryPosted], len(want))
			require.Len(c, got[ledger.EventPointsExpired], 1)
		}, 15*time.Second, 20*time.Millisecond)

		mu.Lock()
		defer mu.Unlock()
		for _, ev := range got[ledger.EventEntryPosted] {
			var e ledger.Entry
			require.NoError(t, json.Unmarshal(ev.Data, &e))
			w, ok := want[e.ID]
			require.True(t, ok, "event for unknown entry %s", e.ID)
			require.Equal(t, w.Kind, e.Kind)
			require.Equal(t, w.Delta, e.Delta)
			require.Equal(t, shop, ev.TenantID)
			require.Equal(t, alice, ev.UserID)
			require.Equal(t, "ledger_entry", ev.SourceKind)
			require.Equal(t, e.ID, ev.SourceID)
			delete(want, e.ID) // each entry once
		}
		var expired ledger.Entry
		require.NoError(t, json.Unmarshal(got[ledger.EventPointsExpired][0].Data, &expired))
		require.Equal(t, ledger.KindExpire, expired.Kind)
		require.EqualValues(t, 20, expired.Amount) // 50 minus the 20 spent and the 10 captured (earliest lot first)
	})
}
