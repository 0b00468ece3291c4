package webhook_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/webhook"
)

// TestFromTheBus runs the whole path: events written to the outbox, relayed to DOMAIN, fanned out
// by the consumer, sent by a running dispatcher and verified by the receiver. A copy of one event
// republished under another message id (as after a relay crash outside the de-duplication window)
// and a message that is not an event change nothing.
func TestFromTheBus(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		env := bustest.NewEnv(t, bustest.Embedded)
		bs := env.Open(t, bus.Options{})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		t.Cleanup(func() {
			cancel()
			wg.Wait()
		})
		wg.Go(func() { _ = bus.NewRelay(db, bs, bus.RelayOptions{PollInterval: 20 * time.Millisecond}).Run(ctx) })
		stop, err := b.svc.Consume(ctx, bs, bus.ConsumerOptions{Backoff: []time.Duration{50 * time.Millisecond}})
		require.NoError(t, err)
		t.Cleanup(stop)
		// The dispatcher runs on the wall clock so that what it signs is fresh for the library.
		disp := webhook.New(db, webhook.Options{}).NewDispatcher(webhook.DispatcherOptions{AllowPrivateNetworks: true,
			PollInterval: 20 * time.Millisecond})
		wg.Go(func() { _ = disp.Run(ctx) })

		grants := b.endpoint(t, "grant.*")
		everything := b.endpoint(t, "*")
		stranger := setup(t, db)
		strangerAll := stranger.endpoint(t, "*")

		succeeded, entry := b.event("grant.succeeded"), b.event("ledger.entry_created")
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			return bs.EnqueueEvent(ctx, tx, succeeded, entry)
		}))
		raw, err := json.Marshal(succeeded)
		require.NoError(t, err)
		require.NoError(t, bs.Publish(ctx, bus.Message{Subject: bs.EventSubject(succeeded.Type), ID: "republished-1", Data: raw}))
		require.NoError(t, bs.Publish(ctx, bus.Message{Subject: bs.EventSubject("junk.thing"), ID: "junk-1", Data: []byte("{")}))

		require.Eventually(t, func() bool {
			return count(t, db, `SELECT COUNT(*) FROM bus_processed WHERE consumer = 'DOMAIN/webhooks'`) == 3 &&
				count(t, db, `SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'`) == 3
		}, 30*time.Second, 20*time.Millisecond, "the two events and the republished copy are processed and sent")

		require.Len(t, b.deliveries(t, grants.Endpoint.ID), 1, "one delivery per endpoint and event, copies or not")
		require.Len(t, b.deliveries(t, everything.Endpoint.ID), 2)
		require.Empty(t, stranger.deliveries(t, strangerAll.Endpoint.ID))
		secrets := map[string]string{} // the receiver cannot tell endpoints apart; try both secrets
		for _, ne := range []webhook.NewEndpoint{grants, everything} {
			secrets[ne.Endpoint.ID] = ne.Secret
		}
		got := b.recv.requests()
		require.Len(t, got, 3)
		ids := map[string]int{}
		for _, r := range got {
			ids[r.header.Get("webhook-id")]++
			ok := false
			for _, s := range secrets {
				ok = ok || verifier(t, s).Verify(r.body, r.header) == nil
			}
			require.True(t, ok, "signed with one of the endpoints' secrets")
		}
		require.Equal(t, map[string]int{succeeded.ID: 2, entry.ID: 1}, ids)
		require.Equal(t, http.StatusOK, b.deliveries(t, grants.Endpoint.ID)[0].LastStatus)
	})
}
