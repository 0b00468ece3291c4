package ingest_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ingest"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/problem"
)

func decode(t *testing.T, m bus.Msg) bus.Behaviour {
	t.Helper()
	ev, err := bus.DecodeBehaviour(m)
	require.NoError(t, err)
	return ev
}

func TestEveryAcceptedEventIsOnTheStreamOnce(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		b := setup(t, env)
		const batches, size = 5, 60
		sent := map[string]bool{}
		for i := range batches {
			events := make([]string, size)
			for j := range events {
				id := fmt.Sprintf("ord-%d-%d", i, j)
				events[j] = event(id, "subject", fmt.Sprint("user-", j%7), "type", []string{"order.paid", "checkin"}[j%2],
					"data", map[string]any{"amount": 100 * j, "sku": "S" + id})
				sent[id] = true
			}
			res := b.accept(t, ingest.ContentTypeBatch, batchOf(events...))
			require.Equal(t, size, res.Accepted)
		}
		res := b.accept(t, ingest.ContentTypeEvent, event("single", "source", "https://shop.example/app", "subject", "alice@shop",
			"time", "2026-03-10T08:00:00Z", "data", nil, "dataschema", "https://shop.example/s.json", "shopext", "x"))
		require.Equal(t, 1, res.Accepted)
		sent["single"] = true
		// another tenant's event with the same source and id is another event
		res, err := b.svc.Accept(b.ctx, other, ingest.ContentTypeEvent, []byte(event("single", "source", "https://shop.example/app")))
		require.NoError(t, err)
		require.Equal(t, 1, res.Accepted)

		msgs := b.readAll(t, batches*size+2)
		seen := map[string]int{}
		for _, m := range msgs {
			ev := decode(t, m)
			seen[ev.TenantID+"/"+ev.ID]++
			require.Equal(t, b.bus.BehaviourSubject(ev.TenantID, ev.Type), m.Subject)
			require.Equal(t, ev.Key(), m.ID, "the message id de-duplicates on (tenant, source, id)")
			require.Equal(t, ev.Type, m.Header["Perk-Event-Type"])
			require.Equal(t, ev.TenantID, m.Header["Perk-Tenant"])
			require.Equal(t, start, ev.ReceivedAt)
			if ev.TenantID == other {
				continue
			}
			require.True(t, sent[ev.ID], ev.ID)
			if ev.ID == "single" {
				require.Equal(t, "https://shop.example/app", ev.Source)
				require.Equal(t, "alice@shop", ev.UserID)
				require.Equal(t, "order.paid", ev.Type)
				require.Equal(t, start.Add(-time.Hour), ev.Time)
				require.Empty(t, ev.Data, "absent data stays absent")
				continue
			}
			var i, j int
			_, err := fmt.Sscanf(ev.ID, "ord-%d-%d", &i, &j)
			require.NoError(t, err)
			require.Equal(t, "/shop/orders", ev.Source)
			require.Equal(t, fmt.Sprint("user-", j%7), ev.UserID)
			require.Equal(t, []string{"order.paid", "checkin"}[j%2], ev.Type)
			require.Equal(t, start, ev.Time)
			var data map[string]any
			require.NoError(t, json.Unmarshal(ev.Data, &data))
			require.Equal(t, map[string]any{"amount": float64(100 * j), "sku": "S" + ev.ID}, data)
		}
		require.Len(t, seen, batches*size+2)
		for k, n := range seen {
			require.Equal(t, 1, n, k)
		}
	})
}

func TestDuplicatesInsideABatch(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		b := setup(t, env)
		res := b.accept(t, ingest.ContentTypeBatch, batchOf(
			event("a"),
			event("a", "subject", "u-2"), // same source and id: a repeat, whatever else differs
			event("a", "source", "/shop/app"),
			event("b"),
			event("a", "subject", "bad user"), // invalid: rejected, not a duplicate
			event("b"),
		))
		require.Equal(t, []ingest.Status{ingest.StatusAccepted, ingest.StatusDuplicate, ingest.StatusAccepted,
			ingest.StatusAccepted, ingest.StatusRejected, ingest.StatusDuplicate}, statuses(res))
		require.Contains(t, res.Results[1].Detail, "index 0")
		require.Contains(t, res.Results[5].Detail, "index 3")
		require.Equal(t, 3, res.Accepted)
		require.Equal(t, 2, res.Duplicates)
		require.Equal(t, 1, res.Rejected)

		msgs := b.readAll(t, 3)
		for _, m := range msgs {
			ev := decode(t, m)
			if ev.ID == "a" && ev.Source == "/shop/orders" {
				require.Equal(t, "u-1", ev.UserID, "the first occurrence is the one kept")
			}
		}
	})
}

func TestResendInsideTheWindowIsADuplicate(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		b := setup(t, env)
		body := numbered("r-", 20)
		first := b.accept(t, ingest.ContentTypeBatch, body)
		require.Equal(t, 20, first.Accepted)

		again := b.accept(t, ingest.ContentTypeBatch, body)
		require.Equal(t, 20, again.Duplicates)
		require.Zero(t, again.Accepted)
		for _, r := range again.Results {
			require.Equal(t, ingest.StatusDuplicate, r.Status)
			require.Empty(t, r.Reason)
		}

		// 20 sent before and 10 new; then one event resent alone
		mixed := b.accept(t, ingest.ContentTypeBatch, numbered("r-", 30))
		require.Equal(t, 20, mixed.Duplicates)
		require.Equal(t, 10, mixed.Accepted)
		for i, r := range mixed.Results {
			require.Equal(t, map[bool]ingest.Status{true: ingest.StatusDuplicate, false: ingest.StatusAccepted}[i < 20], r.Status, i)
		}
		single := b.accept(t, ingest.ContentTypeEvent, event("r-0", "subject", "u-0"))
		require.Equal(t, ingest.StatusDuplicate, single.Results[0].Status)
		require.EqualValues(t, 30, b.stored(t))
		require.EqualValues(t, 41, b.counted(ingest.StatusDuplicate, ""))
		require.EqualValues(t, 30, b.counted(ingest.StatusAccepted, ""))
	})
}

func TestBusClosedIsUnavailable(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		b := setup(t, env)
		require.NoError(t, b.bus.Close())
		for _, tc := range []struct{ contentType, body string }{
			{ingest.ContentTypeEvent, event("e1")},
			{ingest.ContentTypeBatch, numbered("c-", 10)},
			{ingest.ContentTypeBatch, batchOf(event("c-x"), event("bad", "type", "Bad"))},
		} {
			p := b.refused(t, tc.contentType, tc.body, problem.KindUnavailable)
			require.NotZero(t, p.Extensions["failed"])
		}
		require.EqualValues(t, 12, b.counted(ingest.StatusFailed, ingest.ReasonUnavailable))
		require.Zero(t, b.counted(ingest.StatusAccepted, ""), "nothing was claimed accepted")

		// the events are on no stream: a new bus on the same server finds EVENTS empty
		if env.Mode == bustest.External {
			fresh := env.Open(t, bus.Options{})
			st, err := fresh.Stats(b.ctx, bus.Events)
			require.NoError(t, err)
			require.Zero(t, st.Messages)
		}
	})
}

// TestFullStreamFailsTheEventsItCannotStore fills a small EVENTS stream. It runs on the embedded
// server only: the external test server (nats-server 2.9.10) acknowledges pipelined publishes that
// carry headers and a Nats-Msg-Id beyond MaxBytes and drops the oldest messages instead, despite
// DiscardNew (a server bug; 2.15 refuses them as it should).
func TestFullStreamFailsTheEventsItCannotStore(t *testing.T) {
	t.Parallel()
	func(t *testing.T, env *bustest.Env) {
		b := setupBus(t, env, bus.Options{Streams: map[bus.Stream]bus.StreamOptions{bus.Events: {MaxBytes: 4096}}})
		const n = 40
		events := make([]string, 0, n+1)
		for i := range n {
			events = append(events, event(fmt.Sprint("f-", i)))
		}
		events = append(events, event(fmt.Sprint("f-", n-1))) // a repeat of the last, which cannot fit
		res := b.accept(t, ingest.ContentTypeBatch, batchOf(events...))
		require.Positive(t, res.Accepted)
		require.Positive(t, res.Failed)
		require.Equal(t, n+1, res.Accepted+res.Failed)
		last := res.Results[n]
		require.Equal(t, ingest.StatusFailed, last.Status, "a repeat of a failed event failed too")
		require.Equal(t, ingest.ReasonUnavailable, last.Reason)

		accepted := map[string]bool{}
		for _, r := range res.Results {
			if r.Status == ingest.StatusAccepted {
				accepted[r.ID] = true
			} else {
				require.Equal(t, ingest.StatusFailed, r.Status)
				require.Equal(t, ingest.ReasonUnavailable, r.Reason)
			}
		}
		for _, m := range b.readAll(t, res.Accepted) {
			require.True(t, accepted[decode(t, m).ID], "only accepted events are on the stream")
		}

		// when none fits, the request is refused as unavailable
		p := b.refused(t, ingest.ContentTypeBatch, numbered("g-", 5), problem.KindUnavailable)
		require.Equal(t, 5, p.Extensions["failed"])
	}(t, bustest.NewEnv(t, bustest.Embedded))
}

func TestRejectedSingleEventNeverReachesTheBus(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		b := setup(t, env)
		b.refused(t, ingest.ContentTypeJSON, event("x", "subject", nil), problem.KindInvalid)
		res := b.accept(t, ingest.ContentTypeJSON, batchOf(event("x", "subject", nil)))
		require.Equal(t, 1, res.Rejected, "in a batch the same event is a rejected result, not a problem")
		require.Zero(t, b.stored(t))
	})
}
