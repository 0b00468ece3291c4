package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/webhook"
)

// verifier checks a request with the official Standard Webhooks library.
func verifier(t *testing.T, secret string) *standardwebhooks.Webhook {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	return wh
}

// dispatchCases each get their own databases: a dispatcher sends every due delivery it finds, so
// cases sharing a database would take each other's.
var dispatchCases = []struct {
	name string
	fn   func(t *testing.T, db *sqldb.DB, b *testBundle)
}{
	{"DeleteTakesTheLogAlong", func(t *testing.T, db *sqldb.DB, b *testBundle) {
		ne := b.endpoint(t, "*")
		other := b.endpoint(t, "*")
		require.Equal(t, 2, b.fanout(t, b.event("grant.succeeded")))
		require.Equal(t, 2, b.dispatch(t), "both deliveries sent")
		require.NoError(t, b.svc.DeleteEndpoint(t.Context(), b.tenant, ne.Endpoint.ID))
		_, err := b.svc.GetEndpoint(t.Context(), b.tenant, ne.Endpoint.ID)
		requireProblem(t, err, problem.KindNotFound, webhook.CodeEndpointNotFound)
		require.Zero(t, count(t, db, `SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1`, ne.Endpoint.ID))
		require.Equal(t, 1, count(t, db, `SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1`, other.Endpoint.ID))
		require.Equal(t, 1, count(t, db, `SELECT COUNT(*) FROM webhook_attempts WHERE tenant_id = $1`, b.tenant),
			"only the other endpoint's log is left")
		requireProblem(t, b.svc.DeleteEndpoint(t.Context(), b.tenant, ne.Endpoint.ID), problem.KindNotFound,
			webhook.CodeEndpointNotFound)
	}},
	{"SignedPerStandardWebhooks", func(t *testing.T, db *sqldb.DB, b *testBundle) {
		ne := b.endpoint(t, "grant.*")
		ev := b.event("grant.succeeded")
		require.Equal(t, 1, b.fanout(t, ev))
		require.Equal(t, 1, b.dispatch(t))

		got := b.recv.requests()
		require.Len(t, got, 1)
		req := got[0]
		require.NoError(t, verifier(t, ne.Secret).Verify(req.body, req.header), "the official library accepts it")
		require.Equal(t, ev.ID, req.header.Get("webhook-id"))
		require.Equal(t, strconv.FormatInt(b.clock.Now().Unix(), 10), req.header.Get("webhook-timestamp"))
		require.Equal(t, "application/json", req.header.Get("Content-Type"))
		require.Len(t, strings.Fields(req.header.Get("webhook-signature")), 1)
		var body map[string]any
		require.NoError(t, json.Unmarshal(req.body, &body))
		require.Equal(t, map[string]any{"id": ev.ID, "type": "grant.succeeded", "tenant_id": b.tenant, "user_id": "u-1",
			"source_kind": "grant", "source_id": "grt_1", "time": ev.Time.Format(time.RFC3339Nano),
			"data": map[string]any{"amount": float64(100)}}, body)

		other, err := webhook.Sign(ne.Secret, ev.ID, b.clock.Now(), req.body)
		require.NoError(t, err)
		libSig, err := verifier(t, ne.Secret).Sign(ev.ID, b.clock.Now(), req.body)
		require.NoError(t, err)
		require.Equal(t, libSig, other, "Sign agrees with the library")

		tampered := append([]byte(nil), req.body...)
		tampered[len(tampered)-2] = '9'
		require.ErrorIs(t, verifier(t, ne.Secret).Verify(tampered, req.header), standardwebhooks.ErrNoMatchingSignature)
		require.Error(t, verifier(t, "whsec_"+strings.Repeat("A", 43)+"=").Verify(req.body, req.header))

		d := b.deliveries(t, ne.Endpoint.ID)[0]
		require.Equal(t, webhook.StateDelivered, d.State)
		require.Equal(t, 1, d.AttemptCount)
		require.Equal(t, http.StatusOK, d.LastStatus)
		require.Nil(t, d.NextAttemptAt)
		detail := b.delivery(t, d.ID)
		require.JSONEq(t, string(req.body), string(detail.Payload))
		require.Len(t, detail.Attempts, 1)
		require.Equal(t, http.StatusOK, detail.Attempts[0].StatusCode)
		require.Equal(t, "ok", detail.Attempts[0].ResponseBody)
		require.Equal(t, b.clock.Now(), detail.Attempts[0].AttemptedAt)
		require.Equal(t, 0, b.dispatch(t), "nothing is left to send")
		require.Equal(t, 1.0, metricValue(t, b, "perk_webhook_deliveries_total", "delivered"))
	}},
	{"RotationSignsWithBothSecretsDuringGrace", func(t *testing.T, db *sqldb.DB, b *testBundle) {
		ne := b.endpoint(t, "*")
		grace := time.Hour
		rotated, err := b.svc.RotateSecret(t.Context(), webhook.RotateSecretParams{TenantID: b.tenant, ID: ne.Endpoint.ID, Grace: &grace})
		require.NoError(t, err)
		require.NotEqual(t, ne.Secret, rotated.Secret)
		require.Equal(t, b.clock.Now().Add(grace), *rotated.Endpoint.PreviousSecretUntil)

		b.fanout(t, b.event("grant.succeeded"))
		b.dispatch(t)
		req := b.recv.requests()[0]
		sigs := strings.Fields(req.header.Get("webhook-signature"))
		require.Len(t, sigs, 2, "new and old signatures during the grace period")
		require.NoError(t, verifier(t, rotated.Secret).Verify(req.body, req.header), "receivers on the new secret accept it")
		require.NoError(t, verifier(t, ne.Secret).Verify(req.body, req.header), "receivers still on the old secret accept it")
		newSig, err := webhook.Sign(rotated.Secret, req.header.Get("webhook-id"), b.clock.Now(), req.body)
		require.NoError(t, err)
		require.Equal(t, newSig, sigs[0], "the new secret's signature comes first")

		b.clock.Advance(grace + time.Second)
		b.fanout(t, b.event("grant.succeeded"))
		b.dispatch(t)
		req = b.recv.requests()[1]
		require.Len(t, strings.Fields(req.header.Get("webhook-signature")), 1, "after the grace period only the new secret signs")
		require.Equal(t, strconv.FormatInt(b.clock.Now().Unix(), 10), req.header.Get("webhook-timestamp"))
		// The fake clock is an hour ahead of the wall clock now, which the library's 5-minute
		// tolerance would refuse: the timestamp is checked above, the signature here.
		require.NoError(t, verifier(t, rotated.Secret).VerifyIgnoringTimestamp(req.body, req.header))
		require.ErrorIs(t, verifier(t, ne.Secret).VerifyIgnoringTimestamp(req.body, req.header),
			standardwebhooks.ErrNoMatchingSignature)
		e, err := b.svc.GetEndpoint(t.Context(), b.tenant, ne.Endpoint.ID)
		require.NoError(t, err)
		require.Nil(t, e.PreviousSecretUntil)

		zero := time.Duration(0)
		again, err := b.svc.RotateSecret(t.Context(), webhook.RotateSecretParams{TenantID: b.tenant, ID: ne.Endpoint.ID, Grace: &zero})
		require.NoError(t, err)
		require.Nil(t, again.Endpoint.PreviousSecretUntil, "grace 0 drops the old secret at once")
	}},
	{"RetryScheduleEndsDeadAfterADay", func(t *testing.T, db *sqldb.DB, b *testBundle) {
		b.recv.always(answer{status: http.StatusInternalServerError, body: strings.Repeat("e", 3000)})
		ne := b.endpoint(t, "*")
		ev := b.event("grant.succeeded")
		b.fanout(t, ev)
		start := b.clock.Now()
		for i, base := range webhook.DefaultSchedule {
			require.Equal(t, 1, b.dispatch(t), "attempt %d", i+1)
			d := b.deliveries(t, ne.Endpoint.ID)[0]
			require.Equal(t, webhook.StateRetrying, d.State)
			require.Equal(t, i+1, d.AttemptCount)
			wait := d.NextAttemptAt.Sub(*d.LastAttemptAt)
			require.GreaterOrEqual(t, wait, base, "retry %d", i+1)
			require.LessOrEqual(t, wait, base+base/10, "retry %d: at most 10%% jitter", i+1)
			b.clock.Set(d.NextAttemptAt.Add(-time.Millisecond))
			require.Zero(t, b.dispatch(t), "not due before its time")
			b.clock.Set(*d.NextAttemptAt)
		}
		require.Equal(t, 1, b.dispatch(t), "the last attempt")
		d := b.delivery(t, b.deliveries(t, ne.Endpoint.ID)[0].ID)
		require.Equal(t, webhook.StateDead, d.State)
		require.Nil(t, d.NextAttemptAt)
		require.Len(t, d.Attempts, len(webhook.DefaultSchedule)+1)
		require.GreaterOrEqual(t, d.FinishedAt.Sub(start), 24*time.Hour, "retried for at least a day")
		for _, a := range d.Attempts {
			require.Equal(t, http.StatusInternalServerError, a.StatusCode)
			require.Equal(t, strings.Repeat("e", webhook.MaxResponseBody), a.ResponseBody, "the log keeps 1 KiB")
		}
		got := b.recv.requests()
		require.Len(t, got, len(webhook.DefaultSchedule)+1)
		for _, r := range got {
			require.Equal(t, ev.ID, r.header.Get("webhook-id"), "the id is stable across retries")
			require.NoError(t, verifier(t, ne.Secret).VerifyIgnoringTimestamp(r.body, r.header))
		}
		require.NotEqual(t, got[0].header.Get("webhook-timestamp"), got[1].header.Get("webhook-timestamp"),
			"each attempt is signed at its own time")
		b.clock.Advance(48 * time.Hour)
		require.Zero(t, b.dispatch(t), "dead stays dead")
		require.Equal(t, 1.0, metricValue(t, b, "perk_webhook_deliveries_total", "dead"))
		require.Equal(t, float64(len(webhook.DefaultSchedule)), metricValue(t, b, "perk_webhook_deliveries_total", "retrying"))
	}},
	{"RetryAfterIsHonoured", func(t *testing.T, db *sqldb.DB, b *testBundle) {
		ne := b.endpoint(t, "*")
		b.fanout(t, b.event("grant.succeeded"))
		step := func(a answer) webhook.Delivery {
			t.Helper()
			b.recv.always(a)
			require.Equal(t, 1, b.dispatch(t))
			d := b.deliveries(t, ne.Endpoint.ID)[0]
			if d.NextAttemptAt != nil {
				b.clock.Set(*d.NextAttemptAt)
			}
			return d
		}
		d := step(answer{status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": "600"}})
		require.Equal(t, 600*time.Second, d.NextAttemptAt.Sub(*d.LastAttemptAt), "delay-seconds")
		require.Equal(t, http.StatusTooManyRequests, d.LastStatus)

		date := b.clock.Now().Add(2 * time.Hour).Format(http.TimeFormat)
		d = step(answer{status: http.StatusServiceUnavailable, header: map[string]string{"Retry-After": date}})
		require.Equal(t, 2*time.Hour, d.NextAttemptAt.Sub(*d.LastAttemptAt), "HTTP date")

		d = step(answer{status: http.StatusServiceUnavailable, header: map[string]string{"Retry-After": "1"}})
		wait := d.NextAttemptAt.Sub(*d.LastAttemptAt)
		require.GreaterOrEqual(t, wait, webhook.DefaultSchedule[2], "a shorter Retry-After never shortens the schedule")

		d = step(answer{status: http.StatusServiceUnavailable, header: map[string]string{"Retry-After": "9999999"}})
		require.Equal(t, webhook.DefaultMaxRetryAfter, d.NextAttemptAt.Sub(*d.LastAttemptAt), "capped")

		d = step(answer{status: http.StatusInternalServerError, header: map[string]string{"Retry-After": "7200"}})
		wait = d.NextAttemptAt.Sub(*d.LastAttemptAt)
		require.Less(t, wait, time.Hour, "Retry-After only counts on 429 and 503")

		d = step(answer{status: http.StatusNoContent})
		require.Equal(t, webhook.StateDelivered, d.State)
		require.Equal(t, 6, d.AttemptCount)
	}},
	{"GoneDisablesTheEndpoint", func(t *testing.T, db *sqldb.DB, b *testBundle) {
		ne := b.endpoint(t, "*")
		healthy := newReceiver(t)
		keep, err := b.svc.CreateEndpoint(t.Context(), webhook.CreateEndpointParams{TenantID: b.tenant,
			URL: healthy.srv.URL, EventTypes: []string{"*"}})
		require.NoError(t, err)
		b.recv.always(answer{status: http.StatusGone, body: "bye"})
		first := b.event("grant.succeeded")
		b.fanout(t, first)
		b.clock.Advance(time.Second)
		b.fanout(t, b.event("grant.succeeded"))
		disp := b.svc.NewDispatcher(webhook.DispatcherOptions{AllowPrivateNetworks: true, BatchSize: 1})
		for {
			n, err := disp.DispatchDue(t.Context())
			require.NoError(t, err)
			if n == 0 {
				break
			}
		}
		require.Len(t, b.recv.requests(), 1, "after the 410 nothing more goes to the endpoint")
		require.Len(t, healthy.requests(), 2, "other endpoints are not affected")
		e, err := b.svc.GetEndpoint(t.Context(), b.tenant, ne.Endpoint.ID)
		require.NoError(t, err)
		require.False(t, e.Enabled)
		require.Equal(t, "410 Gone from receiver", e.DisabledReason)
		ds := b.deliveries(t, ne.Endpoint.ID)
		require.Len(t, ds, 2)
		for _, d := range ds {
			require.Equal(t, webhook.StateCanceled, d.State)
			require.Contains(t, d.LastError, "410 Gone")
		}
		require.Len(t, b.deliveries(t, keep.Endpoint.ID, webhook.StateDelivered), 2)
		require.Equal(t, 1, b.fanout(t, b.event("grant.succeeded")), "new events skip the disabled endpoint")
		_, err = b.svc.Resend(t.Context(), b.tenant, ds[0].ID)
		requireProblem(t, err, problem.KindConflict, webhook.CodeEndpointDisabled)
		_, err = b.svc.SendTest(t.Context(), webhook.SendTestParams{TenantID: b.tenant, EndpointID: ne.Endpoint.ID})
		requireProblem(t, err, problem.KindConflict, webhook.CodeEndpointDisabled)
		require.Equal(t, 1.0, metricValue(t, b, "perk_webhook_endpoints_disabled_total", "gone"))
	}},
	{"ResendKeepsTheWebhookID", func(t *testing.T, db *sqldb.DB, b *testBundle) {
		ne := b.endpoint(t, "*")
		ev := b.event("grant.succeeded")
		b.fanout(t, ev)
		b.dispatch(t)
		d := b.deliveries(t, ne.Endpoint.ID)[0]
		require.Equal(t, webhook.StateDelivered, d.State)

		b.clock.Advance(time.Hour)
		again, err := b.svc.Resend(t.Context(), b.tenant, d.ID)
		require.NoError(t, err)
		require.Equal(t, webhook.StatePending, again.State)
		require.Equal(t, b.clock.Now(), *again.NextAttemptAt)
		require.Equal(t, 1, b.dispatch(t))
		got := b.recv.requests()
		require.Len(t, got, 2)
		require.Equal(t, ev.ID, got[1].header.Get("webhook-id"))
		require.Equal(t, got[0].body, got[1].body)
		require.NotEqual(t, got[0].header.Get("webhook-timestamp"), got[1].header.Get("webhook-timestamp"))
		detail := b.delivery(t, d.ID)
		require.Equal(t, webhook.StateDelivered, detail.State)
		require.Len(t, detail.Attempts, 2)

		// A dead delivery comes back with a fresh schedule.
		b.recv.always(answer{status: http.StatusBadGateway})
		short := b.svc.NewDispatcher(webhook.DispatcherOptions{AllowPrivateNetworks: true,
			Schedule: []time.Duration{time.Second}})
		ev2 := b.event("grant.succeeded")
		b.fanout(t, ev2)
		for range 2 {
			_, err := short.DispatchDue(t.Context())
			require.NoError(t, err)
			b.clock.Advance(2 * time.Second)
		}
		dead := b.deliveries(t, ne.Endpoint.ID, webhook.StateDead)
		require.Len(t, dead, 1)
		b.recv.always(answer{status: http.StatusOK})
		_, err = b.svc.Resend(t.Context(), b.tenant, dead[0].ID)
		require.NoError(t, err)
		n, err := short.DispatchDue(t.Context())
		require.NoError(t, err)
		require.Equal(t, 1, n)
		revived := b.delivery(t, dead[0].ID)
		require.Equal(t, webhook.StateDelivered, revived.State)
		require.Len(t, revived.Attempts, 3)
		require.Equal(t, []int{502, 502, 200}, []int{revived.Attempts[0].StatusCode, revived.Attempts[1].StatusCode,
			revived.Attempts[2].StatusCode})
	}},
	{"TestEventIgnoresFilters", func(t *testing.T, db *sqldb.DB, b *testBundle) {
		ne := b.endpoint(t, "coupon.redeemed")
		d, err := b.svc.SendTest(t.Context(), webhook.SendTestParams{TenantID: b.tenant, EndpointID: ne.Endpoint.ID,
			Data: []byte(`{"hello":"world"}`)})
		require.NoError(t, err)
		require.Equal(t, webhook.TestEventType, d.EventType)
		require.Equal(t, webhook.StatePending, d.State)
		require.Equal(t, 1, b.dispatch(t))
		req := b.recv.requests()[0]
		require.NoError(t, verifier(t, ne.Secret).Verify(req.body, req.header))
		var body struct {
			ID, Type, TenantID string
			Data               map[string]string
		}
		require.NoError(t, json.Unmarshal(req.body, &body))
		require.Equal(t, d.EventID, body.ID)
		require.Equal(t, "webhook.test", body.Type)
		require.Equal(t, map[string]string{"hello": "world"}, body.Data)
		require.Equal(t, webhook.StateDelivered, b.delivery(t, d.ID).State)
	}},
	{"RedirectsTimeoutsAndRefusedAddresses", func(t *testing.T, db *sqldb.DB, b *testBundle) {
		ne := b.endpoint(t, "*")
		b.recv.answer(func(n int, r *http.Request) answer {
			if n == 0 {
				return answer{status: http.StatusFound, header: map[string]string{"Location": "/elsewhere"}}
			}
			<-r.Context().Done() // hang until the sender gives up
			return answer{status: http.StatusOK}
		})
		fast := b.svc.NewDispatcher(webhook.DispatcherOptions{AllowPrivateNetworks: true, Timeout: 200 * time.Millisecond})
		b.fanout(t, b.event("grant.succeeded"))
		next := func(disp *webhook.Dispatcher) webhook.DeliveryAttempt {
			t.Helper()
			n, err := disp.DispatchDue(t.Context())
			require.NoError(t, err)
			require.Equal(t, 1, n)
			d := b.delivery(t, b.deliveries(t, ne.Endpoint.ID)[0].ID)
			b.clock.Set(*d.NextAttemptAt)
			return d.Attempts[len(d.Attempts)-1]
		}
		a := next(fast)
		require.Equal(t, http.StatusFound, a.StatusCode, "a redirect is an answer, not followed")
		require.Len(t, b.recv.requests(), 1)
		a = next(fast)
		require.Zero(t, a.StatusCode)
		require.Contains(t, a.Error, "timed out after 200ms")

		guarded := b.svc.NewDispatcher(webhook.DispatcherOptions{})
		a = next(guarded)
		require.Zero(t, a.StatusCode)
		require.Contains(t, a.Error, "refused to connect to a loopback, private or link-local address")
		require.Len(t, b.recv.requests(), 2, "the default client never reached the receiver")
	}},
	{"ResponseBodyIsSanitised", func(t *testing.T, db *sqldb.DB, b *testBundle) {
		ne := b.endpoint(t, "*")
		b.recv.always(answer{status: http.StatusBadRequest, body: "bad\x00input\xff!" + strings.Repeat("é", 600)})
		b.fanout(t, b.event("grant.succeeded"))
		require.Equal(t, 1, b.dispatch(t))
		a := b.delivery(t, b.deliveries(t, ne.Endpoint.ID)[0].ID).Attempts[0]
		require.Equal(t, http.StatusBadRequest, a.StatusCode)
		require.True(t, strings.HasPrefix(a.ResponseBody, "badinput!éé"), a.ResponseBody[:20])
		require.LessOrEqual(t, len(a.ResponseBody), webhook.MaxResponseBody)
	}},
	{"DisabledAfterClaimIsCanceledWithoutAnAttempt", func(t *testing.T, db *sqldb.DB, b *testBundle) {
		ne := b.endpoint(t, "*")
		b.fanout(t, b.event("grant.succeeded"))
		// Disable behind the service's back, as a race with fan-out could leave it.
		_, err := db.Writer().ExecContext(t.Context(), `UPDATE webhook_endpoints SET enabled = $1, disabled_reason = 'x'
		WHERE id = $2`, false, ne.Endpoint.ID)
		require.NoError(t, err)
		require.Equal(t, 1, b.dispatch(t))
		require.Empty(t, b.recv.requests())
		d := b.delivery(t, b.deliveries(t, ne.Endpoint.ID)[0].ID)
		require.Equal(t, webhook.StateCanceled, d.State)
		require.Empty(t, d.Attempts)
	}},
}

func TestDispatch(t *testing.T) {
	t.Parallel()
	for _, tc := range dispatchCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) { tc.fn(t, db, setup(t, db)) })
		})
	}
}

// metricValue reads a counter from the bundle's registry by its one label's value (0 when absent).
func metricValue(t *testing.T, b *testBundle, name, labelValue string) float64 {
	t.Helper()
	families, err := b.reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == labelValue {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestMultiNodeDispatch runs two nodes, each with its own service, connection pool and dispatcher,
// on one database: every delivery reaches the receiver exactly once.
func TestMultiNodeDispatch(t *testing.T) {
	t.Parallel()
	for _, dialect := range sqldbtest.Dialects {
		t.Run(string(dialect), func(t *testing.T) {
			t.Parallel()
			opts := sqldbtest.Options(t, dialect)
			open := func() *sqldb.DB {
				db, err := sqldb.Open(context.Background(), opts)
				require.NoError(t, err)
				t.Cleanup(func() { _ = db.Close() })
				return db
			}
			db1, db2 := open(), open()
			require.NoError(t, db1.Migrate(t.Context(), sets, nil))

			recv := newReceiver(t)
			var (
				mu   sync.Mutex
				seen = map[string]int{}
			)
			recv.answer(func(_ int, r *http.Request) answer {
				mu.Lock()
				seen[r.Header.Get("webhook-id")]++
				mu.Unlock()
				return answer{status: http.StatusOK}
			})
			b := setup(t, db1)
			_, err := b.svc.CreateEndpoint(t.Context(), webhook.CreateEndpointParams{TenantID: b.tenant, URL: recv.srv.URL,
				EventTypes: []string{"*"}})
			require.NoError(t, err)
			const n = 300
			events := make([]bus.Event, n)
			for i := range events {
				events[i] = b.event("grant.succeeded")
			}
			require.Equal(t, n, b.fanout(t, events...))

			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for i, db := range []*sqldb.DB{db1, db2} {
				svc := webhook.New(db, webhook.Options{})
				disp := svc.NewDispatcher(webhook.DispatcherOptions{AllowPrivateNetworks: true, BatchSize: 8,
					Concurrency: 4, PollInterval: 10 * time.Millisecond, Node: fmt.Sprintf("node-%d", i)})
				wg.Go(func() { _ = disp.Run(ctx) })
			}
			t.Cleanup(func() {
				cancel()
				wg.Wait()
			})
			require.Eventually(t, func() bool {
				return count(t, db1, `SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'`) == n
			}, 60*time.Second, 20*time.Millisecond)
			cancel()
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, seen, n)
			for id, c := range seen {
				require.Equal(t, 1, c, "event %s delivered %d times", id, c)
			}
			require.Len(t, recv.requests(), n)
			require.Equal(t, n, count(t, db1, `SELECT COUNT(*) FROM webhook_attempts`))
		})
	}
}
