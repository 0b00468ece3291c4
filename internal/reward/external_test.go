package reward_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/reward"
)

func externalGrant(source string) reward.CreateParams {
	return reward.CreateParams{TenantID: tenantA, UserID: "u1", SourceKind: "order", SourceID: source, Flow: "ext"}
}

func TestCallExternalDoneAtOnce(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		m := newMerchant(t, "done")
		b.publishFlow(t, tenantA, "ext", m.externalFlow(""))
		g, _, err := b.svc.Create(context.Background(), externalGrant("o1"))
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, g.State, g.LastError)
		require.JSONEq(t, `{"order":"o-1"}`, string(g.Steps[1].Output))
		calls, applied := m.stats()
		require.Equal(t, 1, calls)
		require.Equal(t, map[string]int{g.ID + "/notify": 1}, applied, "the idempotency key is <grant_id>/<step>")
		require.EqualValues(t, 3, b.balance(t, tenantA, "u1", "growth"))
	})
}

func TestCallExternalWaitsForSignedCallback(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		m := newMerchant(t, "pending")
		b.publishFlow(t, tenantA, "ext", m.externalFlow(`,"timeout_seconds":3600`))
		g, _, err := b.svc.Create(ctx, externalGrant("o1"))
		require.NoError(t, err)
		require.Equal(t, reward.StatePending, g.State)
		require.Equal(t, reward.StepWaiting, g.Steps[1].State)
		require.Equal(t, b.clock.Now().Add(time.Hour), *g.Steps[1].WaitUntil)
		require.Equal(t, b.clock.Now().Add(time.Hour), *g.NextAttemptAt)
		require.Equal(t, reward.StepPending, g.Steps[2].State)
		owed, err := b.svc.Owed(ctx, tenantA, "u1")
		require.NoError(t, err)
		require.Len(t, owed, 1)

		// Nothing is due before the timeout: the sweeper leaves it alone.
		n, err := b.svc.Sweep(ctx, 0)
		require.NoError(t, err)
		require.Zero(t, n)

		body := []byte(`{"status":"done","output":{"shipment":"s-9"}}`)
		_, err = b.svc.Callback(ctx, reward.CallbackParams{GrantID: g.ID, Step: "notify",
			Signature: reward.Sign("wrong-secret-0123456789", g.ID, "notify", body), Body: body})
		require.Equal(t, "callback-signature-invalid", requireProblem(t, err, problem.KindUnauthenticated).Code)
		_, err = b.svc.Callback(ctx, reward.CallbackParams{GrantID: g.ID, Step: "notify",
			Signature: reward.Sign(m.secret, g.ID, "points", body), Body: body})
		requireProblem(t, err, problem.KindUnauthenticated)
		_, err = b.svc.Callback(ctx, reward.CallbackParams{GrantID: g.ID, Step: "points",
			Signature: reward.Sign(m.secret, g.ID, "points", body), Body: body})
		require.Equal(t, "callback-not-expected", requireProblem(t, err, problem.KindConflict).Code)
		_, err = b.svc.Callback(ctx, reward.CallbackParams{GrantID: g.ID, Step: "nope", Body: body})
		requireProblem(t, err, problem.KindNotFound)
		_, err = b.svc.Callback(ctx, reward.CallbackParams{TenantID: tenantB, GrantID: g.ID, Step: "notify", Body: body})
		requireProblem(t, err, problem.KindNotFound)
		got, err := b.svc.Get(ctx, tenantA, g.ID)
		require.NoError(t, err)
		require.Equal(t, reward.StepWaiting, got.Steps[1].State, "refused callbacks change nothing")

		for range 2 { // a repeated callback changes nothing
			got, err = b.svc.Callback(ctx, reward.CallbackParams{GrantID: g.ID, Step: "notify",
				Signature: "v1=old," + reward.Sign(m.secret, g.ID, "notify", body), Body: body})
			require.NoError(t, err)
			require.Equal(t, reward.StateSucceeded, got.State)
		}
		require.JSONEq(t, `{"shipment":"s-9"}`, string(got.Steps[1].Output))
		require.EqualValues(t, 3, b.balance(t, tenantA, "u1", "growth"))
		require.Equal(t, 2, b.entries(t, tenantA, g.ID))
		require.Equal(t, 1, eventCount(t, db, reward.EventSucceeded, g.ID))
		calls, _ := m.stats()
		require.Equal(t, 1, calls)
	})
}

func TestCallExternalTimeoutRetriesWithTheSameKey(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		m := newMerchant(t, "pending")
		b.publishFlow(t, tenantA, "ext", m.externalFlow(`,"timeout_seconds":60`))
		g, _, err := b.svc.Create(ctx, externalGrant("o1"))
		require.NoError(t, err)
		require.Equal(t, reward.StatePending, g.State)

		b.clock.Advance(time.Minute)
		n, err := b.svc.Sweep(ctx, 0)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		g, err = b.svc.Get(ctx, tenantA, g.ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateFailed, g.State)
		require.Contains(t, g.LastError, "timed out waiting for the confirmation")
		require.Equal(t, reward.StepFailed, g.Steps[1].State)

		// The merchant answers at last; the retry sends the same key and the same body.
		m.set("done")
		b.clock.Advance(10 * time.Second)
		_, err = b.svc.Sweep(ctx, 0)
		require.NoError(t, err)
		g, err = b.svc.Get(ctx, tenantA, g.ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, g.State, g.LastError)
		calls, applied := m.stats()
		require.Equal(t, 2, calls)
		require.Equal(t, map[string]int{g.ID + "/notify": 1}, applied)
		require.Equal(t, 2, b.entries(t, tenantA, g.ID))
	})
}

func TestCallExternalPollsAndFails(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		m := newMerchant(t, "pending")
		b.publishFlow(t, tenantA, "ext", m.externalFlow(`,"timeout_seconds":600,"poll_seconds":30`))
		g, _, err := b.svc.Create(ctx, externalGrant("o1"))
		require.NoError(t, err)
		require.Equal(t, b.clock.Now().Add(30*time.Second), *g.NextAttemptAt, "polled before the timeout")

		b.clock.Advance(30 * time.Second)
		_, err = b.svc.Sweep(ctx, 0)
		require.NoError(t, err)
		g, err = b.svc.Get(ctx, tenantA, g.ID)
		require.NoError(t, err)
		require.Equal(t, reward.StepWaiting, g.Steps[1].State)
		require.Equal(t, b.clock.Now().Add(570*time.Second), *g.Steps[1].WaitUntil, "polling keeps the first deadline")
		require.Zero(t, g.Attempts, "waiting is not failing")

		m.set("done")
		b.clock.Advance(30 * time.Second)
		_, err = b.svc.Sweep(ctx, 0)
		require.NoError(t, err)
		g, err = b.svc.Get(ctx, tenantA, g.ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, g.State)
		calls, _ := m.stats()
		require.Equal(t, 3, calls)

		// A merchant that reports a failure, or answers 500, fails the attempt.
		for _, status := range []string{"failed", "500"} {
			m.set(status)
			g, _, err = b.svc.Create(ctx, externalGrant("o-"+status))
			require.NoError(t, err)
			require.Equal(t, reward.StateFailed, g.State)
			require.Equal(t, reward.StepFailed, g.Steps[1].State)
		}
		require.Contains(t, g.LastError, "answered 500")

		// A signed "failed" callback fails the waiting step's next run with the merchant's error.
		m.set("pending")
		g, _, err = b.svc.Create(ctx, externalGrant("o-cb"))
		require.NoError(t, err)
		body := []byte(`{"status":"failed","error":"address rejected"}`)
		g, err = b.svc.Callback(ctx, reward.CallbackParams{GrantID: g.ID, Step: "notify",
			Signature: reward.Sign(m.secret, g.ID, "notify", body), Body: body})
		require.NoError(t, err)
		require.Equal(t, reward.StateFailed, g.State)
		require.Contains(t, g.LastError, "address rejected")
		require.Equal(t, 1, g.Steps[1].Attempts)
	})
}
