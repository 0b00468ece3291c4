package webhook_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/prom"
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

// TestConsumeBatches feeds the consumer events of several merchants at once: one with filtered
// endpoints (and a disabled one), one with an endpoint taking one type, one without endpoints.
// Exactly the matching deliveries are queued, and events no endpoint takes are skipped with no
// write; a copy of an event under another message id, in the same batch or a later one, queues
// nothing more; messages that are not events are terminated alone while the events around them
// are fanned out.
func TestConsumeBatches(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		reg := prometheus.NewRegistry()
		bs := bustest.NewEnv(t, bustest.Embedded).Open(t, bus.Options{Registerer: reg})
		a, c, none := setup(t, db), setup(t, db), setup(t, db)
		grants, everything, off := a.endpoint(t, "grant.*"), a.endpoint(t, "*"), a.endpoint(t, "*")
		no := false
		_, err := a.svc.UpdateEndpoint(t.Context(), webhook.UpdateEndpointParams{TenantID: a.tenant, ID: off.Endpoint.ID,
			Enabled: &no})
		require.NoError(t, err)
		ledger := c.endpoint(t, "ledger.entry_created")

		succeeded, entry, rewarded := a.event("grant.succeeded"), a.event("ledger.entry_created"), a.event("task.rewarded")
		cSucceeded, cEntry := c.event("grant.succeeded"), c.event("ledger.entry_created")
		msgs := []bus.Message{
			eventMessage(t, bs, succeeded, succeeded.ID),
			eventMessage(t, bs, cSucceeded, cSucceeded.ID),
			{Subject: bs.EventSubject("junk.thing"), ID: "junk-1", Data: []byte("{")},
			eventMessage(t, bs, entry, entry.ID),
			eventMessage(t, bs, none.event("grant.succeeded"), "none-1"),
			{Subject: bs.EventSubject("junk.thing"), ID: "junk-2", Data: []byte(`{"id":"evt_x"}`)},
			eventMessage(t, bs, succeeded, "copy-1"),
			eventMessage(t, bs, cEntry, cEntry.ID),
			eventMessage(t, bs, rewarded, rewarded.ID),
			eventMessage(t, bs, none.event("ledger.entry_created"), "none-2"),
		}
		require.NoError(t, bs.PublishBatch(t.Context(), msgs))
		stop, err := a.svc.Consume(t.Context(), bs, bus.ConsumerOptions{Backoff: []time.Duration{50 * time.Millisecond}})
		require.NoError(t, err)
		t.Cleanup(stop)

		processed := func() int {
			return count(t, db, `SELECT COUNT(*) FROM bus_processed WHERE consumer = 'DOMAIN/webhooks'`)
		}
		require.Eventually(t, func() bool {
			return handled(t, reg, "term") == 2 && handled(t, reg, "skipped") == 3 && handled(t, reg, "ack") == 5
		}, 30*time.Second, 20*time.Millisecond, "the two messages that are not events are terminated, the three "+
			"events no endpoint takes skipped, the others (the copy too) handled")
		require.Equal(t, 5, processed(), "skipped events leave no processed record")
		require.Zero(t, handled(t, reg, "retry"), "nothing is redelivered")

		require.NoError(t, bs.Publish(t.Context(), eventMessage(t, bs, succeeded, "copy-2")))
		require.Eventually(t, func() bool { return processed() == 6 }, 30*time.Second, 20*time.Millisecond)

		require.ElementsMatch(t, []string{succeeded.ID}, eventIDs(a.deliveries(t, grants.Endpoint.ID)))
		require.ElementsMatch(t, []string{succeeded.ID, entry.ID, rewarded.ID}, eventIDs(a.deliveries(t, everything.Endpoint.ID)))
		require.Empty(t, a.deliveries(t, off.Endpoint.ID))
		require.ElementsMatch(t, []string{cEntry.ID}, eventIDs(c.deliveries(t, ledger.Endpoint.ID)))
		require.Equal(t, 5, count(t, db, `SELECT COUNT(*) FROM webhook_deliveries`), "nothing for the merchant without endpoints")
	})
}

// TestFanoutManyAtOnce fans out more deliveries and more merchants than one statement takes.
func TestFanoutManyAtOnce(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		first, second, grants := b.endpoint(t, "*"), b.endpoint(t, "*"), b.endpoint(t, "grant.*")
		var events []bus.Event
		for i := range 300 {
			events = append(events, b.event([]string{"grant.succeeded", "ledger.entry_created"}[i%2]))
		}
		require.Equal(t, 300+300+150, b.fanout(t, events...))
		require.Zero(t, b.fanout(t, events...), "the same events again queue nothing")
		require.Len(t, b.deliveries(t, first.Endpoint.ID), 200, "a page of them")
		require.Equal(t, 300, count(t, db, `SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1`, second.Endpoint.ID))
		require.Equal(t, 150, count(t, db, `SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1`, grants.Endpoint.ID))

		last := setup(t, db)
		only := last.endpoint(t, "*")
		var strangers []bus.Event
		for range 600 {
			strangers = append(strangers, setup(t, db).event("grant.succeeded"))
		}
		require.Equal(t, 1, b.fanout(t, append(strangers, last.event("grant.succeeded"))...))
		require.Len(t, last.deliveries(t, only.Endpoint.ID), 1)
	})
}

// eventMessage is e as the relay publishes it, under message id id.
func eventMessage(t *testing.T, bs *bus.Bus, e bus.Event, id string) bus.Message {
	t.Helper()
	raw, err := json.Marshal(e)
	require.NoError(t, err)
	return bus.Message{Subject: bs.EventSubject(e.Type), ID: id, Data: raw}
}

func eventIDs(ds []webhook.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.EventID)
	}
	return out
}

// handled is the fan-out consumer's perk_bus_handled_total for result.
func handled(t testing.TB, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	v, err := prom.Value(reg, "perk_bus_handled_total", map[string]string{"consumer": webhook.ConsumerName, "result": result})
	require.NoError(t, err)
	return v
}
