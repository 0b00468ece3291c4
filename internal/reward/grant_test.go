package reward_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/reward"
)

func TestOneGrantPerSourceUnderConcurrency(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		const n = 100
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			ids     = map[string]int{}
			created int
			errs    []error
		)
		for range n {
			wg.Go(func() {
				var (
					g  reward.Grant
					ok bool
				)
				err := db.Tx(ctx, func(tx *sqldb.Tx) error {
					var err error
					g, ok, err = b.svc.CreateTx(ctx, tx, pointsParams("u1", "order-42", 25))
					if err == nil && ok {
						err = b.svc.ExecuteAfterCommit(ctx, tx, g.ID)
					}
					return err
				})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				ids[g.ID]++
				if ok {
					created++
				}
			})
		}
		wg.Wait()
		require.Empty(t, errs)
		require.Len(t, ids, 1, "every call got the same grant")
		require.Equal(t, 1, created)
		var id string
		for k := range ids {
			id = k
		}
		g, err := b.svc.Get(ctx, tenantA, id)
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, g.State)
		require.Equal(t, 1, b.entries(t, tenantA, id))
		require.EqualValues(t, 25, b.balance(t, tenantA, "u1", "points"))
		require.Equal(t, 1, eventCount(t, db, reward.EventCreated, id))
		require.Equal(t, 1, eventCount(t, db, reward.EventSucceeded, id))
		b.verifyLedger(t)

		// The same source for another user is a conflict, not a second grant.
		p := pointsParams("u2", "order-42", 25)
		_, _, err = b.svc.Create(ctx, p)
		e := requireProblem(t, err, problem.KindConflict)
		require.Equal(t, "grant-source-conflict", e.Code)
		// Another seq of the same source is another grant.
		p.UserID, p.Seq = "u1", 1
		g2, created2, err := b.svc.Create(ctx, p)
		require.NoError(t, err)
		require.True(t, created2)
		require.NotEqual(t, id, g2.ID)
	})
}

func TestInlineGrantRunsAndReads(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{0, 1} { // the fast path (group commit), and the step-by-step path
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			t.Parallel()
			testInlineGrantRunsAndReads(t, batch)
		})
	}
}

func testInlineGrantRunsAndReads(t *testing.T, batch int) {
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db, func(o *reward.Options) { o.MaxBatch = batch })
		ctx := context.Background()
		p := reward.CreateParams{TenantID: tenantA, UserID: "u1", SourceKind: "task", SourceID: "ut_1",
			Params: json.RawMessage(`{"stage": 2}`), Rewards: []reward.Reward{
				{Type: "points", Amount: 10, Expiry: expiry(`{"policy":"days","days":30}`)},
				{Type: "growth", Amount: 5},
				{Type: "points", Amount: 1, Reason: "bonus"},
			}}
		g, created, err := b.svc.Create(ctx, p)
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, reward.StateSucceeded, g.State)
		require.NotNil(t, g.CompletedAt)
		require.Nil(t, g.NextAttemptAt)
		require.Empty(t, g.FlowKey)
		require.JSONEq(t, `{"stage":2}`, string(g.Params))
		require.Len(t, g.Steps, 3)
		require.Equal(t, []string{"points", "growth", "points_2"}, []string{g.Steps[0].Name, g.Steps[1].Name, g.Steps[2].Name})
		for _, st := range g.Steps {
			require.Equal(t, reward.StepSucceeded, st.State)
			require.Contains(t, string(st.Output), `"entry_id":"led_`)
		}
		require.Contains(t, string(g.Steps[0].Output), `"lot_expires_at":"2026-04-01T00:00:00Z"`)
		read, err := b.svc.Get(ctx, tenantA, g.ID)
		require.NoError(t, err)
		require.Equal(t, read, g, "Create answers what Get reads back")
		require.EqualValues(t, 11, b.balance(t, tenantA, "u1", "points"))
		require.EqualValues(t, 5, b.balance(t, tenantA, "u1", "growth"))
		require.Equal(t, 3, b.entries(t, tenantA, g.ID))

		// A repeat returns the grant as it is, and grants nothing more.
		again, created, err := b.svc.Create(ctx, p)
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, g.ID, again.ID)
		require.Equal(t, 3, b.entries(t, tenantA, g.ID))

		// Reads: by id, tenant-scoped; lists with filters and pages; nothing owed.
		_, err = b.svc.Get(ctx, tenantB, g.ID)
		require.Equal(t, "grant-not-found", requireProblem(t, err, problem.KindNotFound).Code)
		for i := range 4 {
			_, _, err := b.svc.Create(ctx, pointsParams(fmt.Sprintf("u%d", i%2+1), fmt.Sprintf("more-%d", i), 1))
			require.NoError(t, err)
		}
		page, err := b.svc.List(ctx, reward.ListParams{TenantID: tenantA, Limit: 2})
		require.NoError(t, err)
		require.Len(t, page.Items, 2)
		require.NotEmpty(t, page.Next)
		require.Greater(t, page.Items[0].ID, page.Items[1].ID, "newest first")
		seen := len(page.Items)
		for page.Next != "" {
			page, err = b.svc.List(ctx, reward.ListParams{TenantID: tenantA, Limit: 2, Cursor: page.Next})
			require.NoError(t, err)
			seen += len(page.Items)
		}
		require.Equal(t, 5, seen)
		page, err = b.svc.List(ctx, reward.ListParams{TenantID: tenantA, UserID: "u2", State: reward.StateSucceeded})
		require.NoError(t, err)
		require.Len(t, page.Items, 2)
		page, err = b.svc.List(ctx, reward.ListParams{TenantID: tenantA, State: reward.StateDead})
		require.NoError(t, err)
		require.Empty(t, page.Items)
		_, err = b.svc.List(ctx, reward.ListParams{TenantID: tenantA, State: "lost", Cursor: "zzz"})
		requireProblem(t, err, problem.KindInvalid, "state", "cursor")
		owed, err := b.svc.Owed(ctx, tenantA, "u1")
		require.NoError(t, err)
		require.Empty(t, owed)
		b.verifyLedger(t)
	})
}

func TestRetriesWithBackoffUntilDeadThenReplay(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		fl := &flaky{failing: true}
		b := setup(t, db, withComponents(fl))
		ctx := context.Background()
		b.publishFlow(t, tenantA, "three", `{"steps":[
			{"name":"points","component":"grant_points","params":{"amount":10}},
			{"name":"shaky","component":"flaky"},
			{"name":"growth","component":"grant_growth","params":{"amount":2}}],"max_attempts":3}`)
		g, created, err := b.svc.Create(ctx, reward.CreateParams{TenantID: tenantA, UserID: "u1", SourceKind: "task",
			SourceID: "t1", Flow: "three"})
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, reward.StateFailed, g.State)
		require.Equal(t, 1, g.Attempts)
		require.Contains(t, g.LastError, "step shaky: flaky is down")
		requireDelay(t, b, g, 5*time.Second, 10*time.Second)
		require.Equal(t, reward.StepSucceeded, g.Steps[0].State)
		require.Equal(t, reward.StepFailed, g.Steps[1].State)
		require.Equal(t, reward.StepPending, g.Steps[2].State)

		// Not due yet: nothing runs.
		g, err = b.svc.Execute(ctx, g.ID)
		require.NoError(t, err)
		require.Equal(t, 1, g.Attempts)
		n, err := b.svc.Sweep(ctx, 10)
		require.NoError(t, err)
		require.Zero(t, n)

		b.clock.Advance(10 * time.Second)
		n, err = b.svc.Sweep(ctx, 10)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		g, err = b.svc.Get(ctx, tenantA, g.ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateFailed, g.State)
		require.Equal(t, 2, g.Attempts)
		requireDelay(t, b, g, 10*time.Second, 20*time.Second)

		b.clock.Advance(20 * time.Second)
		g, err = b.svc.Execute(ctx, g.ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateDead, g.State)
		require.Equal(t, 3, g.Attempts)
		require.Nil(t, g.NextAttemptAt)
		require.Equal(t, 3, g.Steps[1].Attempts)
		require.Equal(t, 2, eventCount(t, db, reward.EventFailed, g.ID))
		require.Equal(t, 1, eventCount(t, db, reward.EventDead, g.ID))

		// Dead grants are owed, and left alone by the sweeper.
		owed, err := b.svc.Owed(ctx, tenantA, "u1")
		require.NoError(t, err)
		require.Len(t, owed, 1)
		require.Equal(t, reward.StateDead, owed[0].State)
		require.Equal(t, reward.StepFailed, owed[0].Steps[1].State)
		b.clock.Advance(time.Hour)
		n, err = b.svc.Sweep(ctx, 10)
		require.NoError(t, err)
		require.Zero(t, n)

		// Replay: fixed component, fresh attempts; points are not granted a second time.
		fl.set(false)
		g, err = b.svc.Retry(ctx, tenantA, g.ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, g.State)
		require.Equal(t, 1, eventCount(t, db, reward.EventRetried, g.ID))
		require.Equal(t, 1, eventCount(t, db, reward.EventSucceeded, g.ID))
		require.Equal(t, 2, b.entries(t, tenantA, g.ID))
		require.EqualValues(t, 10, b.balance(t, tenantA, "u1", "points"))
		require.EqualValues(t, 2, b.balance(t, tenantA, "u1", "growth"))
		owed, err = b.svc.Owed(ctx, tenantA, "u1")
		require.NoError(t, err)
		require.Empty(t, owed)

		_, err = b.svc.Retry(ctx, tenantA, g.ID)
		require.Equal(t, "grant-not-retryable", requireProblem(t, err, problem.KindConflict).Code)
		_, err = b.svc.Retry(ctx, tenantB, g.ID)
		requireProblem(t, err, problem.KindNotFound)
		b.verifyLedger(t)
	})
}

// requireDelay checks that g's next attempt is due within [min, max] of now.
func requireDelay(t *testing.T, b *testBundle, g reward.Grant, lo, hi time.Duration) {
	t.Helper()
	require.NotNil(t, g.NextAttemptAt)
	d := g.NextAttemptAt.Sub(b.clock.Now())
	require.GreaterOrEqual(t, d, lo)
	require.LessOrEqual(t, d, hi)
}

func TestStepRetryPolicyAndCompensation(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		fl := &flaky{failing: true}
		b := setup(t, db, withComponents(fl))
		ctx := context.Background()
		b.publishFlow(t, tenantA, "comp", `{"steps":[
			{"name":"points","component":"grant_points","params":{"amount":10},
			 "compensate":{"component":"emit_event","params":{"type":"points.revoked","data":{"why":"flow died"}}}},
			{"name":"shaky","component":"flaky","retry":{"max_attempts":2,"backoff_seconds":60}}],"max_attempts":10}`)
		g, _, err := b.svc.Create(ctx, reward.CreateParams{TenantID: tenantA, UserID: "u1", SourceKind: "task",
			SourceID: "t1", Flow: "comp"})
		require.NoError(t, err)
		require.Equal(t, reward.StateFailed, g.State)
		requireDelay(t, b, g, 30*time.Second, 60*time.Second)
		b.clock.Advance(time.Minute)
		_, err = b.svc.Sweep(ctx, 0)
		require.NoError(t, err)
		g, err = b.svc.Get(ctx, tenantA, g.ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateDead, g.State, "the step's own max attempts ran out before the flow's")
		require.Equal(t, 2, g.Attempts)
		require.Equal(t, reward.StepCompensated, g.Steps[0].State)
		require.Contains(t, string(g.Steps[0].Output), `"compensation":{"event_id":"evt_`)
		require.Equal(t, 1, eventCount(t, db, "points.revoked", g.ID))

		_, err = b.svc.Retry(ctx, tenantA, g.ID)
		require.Equal(t, "grant-compensated", requireProblem(t, err, problem.KindConflict).Code)
	})
}

func TestConditionsAndDAG(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.publishFlow(t, tenantA, "dag", `{"steps":[
			{"name":"notice","component":"emit_event","params":{"type":"member.vip"},"after":["vip","base"],
			 "when":"grant.steps.vip.state == 'succeeded'"},
			{"name":"vip","component":"grant_points","params":{"amount":100},"when":"params.level >= 3","after":["base"]},
			{"name":"base","component":"grant_points","params":{"amount":1}}]}`)
		create := func(source string, level int) reward.Grant {
			g, _, err := b.svc.Create(ctx, reward.CreateParams{TenantID: tenantA, UserID: source, SourceKind: "task",
				SourceID: source, Flow: "dag", Params: json.RawMessage(fmt.Sprintf(`{"level":%d}`, level))})
			require.NoError(t, err)
			require.Equal(t, reward.StateSucceeded, g.State, g.LastError)
			return g
		}
		low := create("low", 1)
		require.Equal(t, []string{"base", "vip", "notice"}, []string{low.Steps[0].Name, low.Steps[1].Name, low.Steps[2].Name})
		require.Equal(t, reward.StepSkipped, low.Steps[1].State)
		require.Equal(t, reward.StepSkipped, low.Steps[2].State)
		require.EqualValues(t, 1, b.balance(t, tenantA, "low", "points"))
		require.Zero(t, eventCount(t, db, "member.vip", low.ID))
		high := create("high", 5)
		require.Equal(t, reward.StepSucceeded, high.Steps[2].State)
		require.EqualValues(t, 101, b.balance(t, tenantA, "high", "points"))
		require.Equal(t, 1, eventCount(t, db, "member.vip", high.ID))

		// A condition that cannot be evaluated (no params.level) fails the attempt visibly.
		g, _, err := b.svc.Create(ctx, reward.CreateParams{TenantID: tenantA, UserID: "x", SourceKind: "task",
			SourceID: "x", Flow: "dag"})
		require.NoError(t, err)
		require.Equal(t, reward.StateFailed, g.State)
		require.Contains(t, g.LastError, "step vip: condition")
	})
}

func TestTwoExecutorsRacingApplyOnce(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		other := b.newService(t, func(o *reward.Options) { o.Node = "other" })
		third := b.newService(t, func(o *reward.Options) { o.Node = "third" })
		const n = 30
		var grants []reward.Grant
		for i := range n {
			p := pointsParams(fmt.Sprintf("u%d", i%3), fmt.Sprintf("race-%d", i), 7)
			p.Rewards = append(p.Rewards, reward.Reward{Type: "growth", Amount: 1})
			grants = append(grants, b.create(t, p))
		}
		var wg sync.WaitGroup
		errs := make(chan error, 3*n+2)
		for _, svc := range []*reward.Service{b.svc, other} {
			for _, g := range grants {
				wg.Go(func() {
					_, err := svc.Execute(ctx, g.ID)
					errs <- err
				})
			}
		}
		wg.Go(func() {
			_, err := third.Sweep(ctx, n)
			errs <- err
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		for _, g := range grants {
			got, err := b.svc.Get(ctx, tenantA, g.ID)
			require.NoError(t, err)
			require.Equal(t, reward.StateSucceeded, got.State)
			require.Equal(t, 2, b.entries(t, tenantA, g.ID))
			require.Equal(t, 1, eventCount(t, db, reward.EventSucceeded, g.ID))
		}
		require.EqualValues(t, 70, b.balance(t, tenantA, "u0", "points"))
		b.verifyLedger(t)
	})
}

func TestStaleLeaseIsTakenOver(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		dying := b.newService(t, func(o *reward.Options) {
			o.Fault = func(f reward.Fault) error {
				if f.Point == reward.FaultAfterClaim {
					return fmt.Errorf("killed")
				}
				return nil
			}
		})
		g := b.create(t, pointsParams("u1", "s1", 3))
		_, err := dying.Execute(ctx, g.ID)
		require.ErrorContains(t, err, "killed")
		got, err := b.svc.Execute(ctx, g.ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateRunning, got.State, "the lease is still valid: nobody else runs it")
		owed, err := b.svc.Owed(ctx, tenantA, "u1")
		require.NoError(t, err)
		require.Len(t, owed, 1)

		b.clock.Advance(time.Minute + time.Second)
		n, err := b.svc.Sweep(ctx, 0)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		got, err = b.svc.Get(ctx, tenantA, g.ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, got.State)
		require.Equal(t, 1, got.Attempts, "the expired lease counts as an attempt")
		require.EqualValues(t, 3, b.balance(t, tenantA, "u1", "points"))
	})
}

func TestFastPathGroupCommit(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		fl := &flaky{failing: true}
		reg := prometheus.NewRegistry()
		b := setup(t, db, withComponents(fl), func(o *reward.Options) { o.Registerer = reg })
		ctx := context.Background()
		b.publishFlow(t, tenantA, "shaky", `{"steps":[
			{"name":"points","component":"grant_points","params":{"amount":1}},
			{"name":"shaky","component":"flaky"}]}`)
		const n = 60
		var (
			wg        sync.WaitGroup
			mu        sync.Mutex
			ids       = map[string]string{} // source → grant id
			conflicts int
			failed    int
		)
		for i := range n + 20 {
			wg.Go(func() {
				p := pointsParams(fmt.Sprintf("u%d", i%n%7), fmt.Sprintf("fast-%d", i%n), 5)
				switch {
				case i == n+19: // the same source for another user
					p.UserID = "intruder"
				case i%n%10 == 0: // a grant whose step fails: its batch falls back
					p.Rewards, p.Flow = nil, "shaky"
				}
				g, _, err := b.svc.Create(ctx, p)
				mu.Lock()
				defer mu.Unlock()
				if problem.Is(err, problem.KindConflict) {
					conflicts++
					return
				}
				require.NoError(t, err)
				if prev, ok := ids[p.SourceID]; ok {
					require.Equal(t, prev, g.ID, "a repeated source returns the first grant")
				}
				ids[p.SourceID] = g.ID
				if g.State == reward.StateFailed {
					failed++
				}
			})
		}
		wg.Wait()
		require.Len(t, ids, n)
		total := 0
		for source, id := range ids {
			g, err := b.svc.Get(ctx, tenantA, id)
			require.NoError(t, err)
			created := eventCount(t, db, reward.EventCreated, id)
			if g.FlowKey == "shaky" {
				require.Equal(t, 1, created, "a grant that took the slow path was pending: %s", source)
				require.Equal(t, reward.StateFailed, g.State)
				require.Equal(t, reward.StepSucceeded, g.Steps[0].State)
				require.Equal(t, 1, b.entries(t, tenantA, id))
				continue
			}
			require.Equal(t, reward.StateSucceeded, g.State, source)
			require.Equal(t, 1, b.entries(t, tenantA, id), source)
			require.Equal(t, 1, eventCount(t, db, reward.EventSucceeded, id), source)
			require.LessOrEqual(t, created, 1, source)
			total++
		}
		require.Equal(t, n-n/10, total)
		// How the concurrent grants were batched depends on timing (a batch holding a shaky grant
		// falls back, and a busy box makes few large batches), so a batch known to commit is
		// checked alone: its grant was never pending, so it has no grant.created.
		alone, _, err := b.svc.Create(ctx, pointsParams("u-alone", "fast-alone", 5))
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, alone.State)
		require.Zero(t, eventCount(t, db, reward.EventCreated, alone.ID), "a batch that committed writes no grant.created")
		b.verifyLedger(t)
		require.Equal(t, 1, conflicts, "the source given to two users: one of them is refused")

		// Concurrent Creates were coalesced: fewer batches than grants.
		batches, grants := histogram(t, reg, "perk_reward_fast_batch_size")
		require.EqualValues(t, n+21, grants)
		require.Less(t, float64(batches), grants)
		require.Positive(t, counterValue(t, reg, "perk_reward_grant_transitions_total", "succeeded"))
	})
}

// histogram returns the sample count and sum of a histogram in reg.
func histogram(t *testing.T, reg *prometheus.Registry, name string) (count uint64, sum float64) {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0, 0
}

// counterValue returns the value of a CounterVec's counter with the given (only) label value.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{%s}", name, label)
	return 0
}

func TestCouponsAndTimeZones(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		issuer := &coupons{}
		shanghai, err := time.LoadLocation("Asia/Shanghai")
		require.NoError(t, err)
		b := setup(t, db, func(o *reward.Options) {
			o.Coupons = issuer
			o.TimeZone = func(string) *time.Location { return shanghai }
		})
		ctx := context.Background()
		b.clock.Set(time.Date(2026, 3, 31, 17, 0, 0, 0, time.UTC)) // already April 1st in Shanghai
		g, _, err := b.svc.Create(ctx, reward.CreateParams{TenantID: tenantA, UserID: "u1", SourceKind: "task",
			SourceID: "t1", Rewards: []reward.Reward{{Type: "coupon", Template: "save30"},
				{Type: "points", Amount: 3, Expiry: expiry(`{"policy":"end_of_month"}`)}}})
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, g.State)
		require.JSONEq(t, `{"coupon_id":"cpn_save30","template":"save30"}`, string(g.Steps[0].Output))
		require.Equal(t, reward.IssueCouponParams{TenantID: tenantA, UserID: "u1", Template: "save30",
			BusinessKey: g.ID + "/coupon", SourceKind: "grant", SourceID: g.ID}, issuer.issued[g.ID+"/coupon"])
		require.Contains(t, string(g.Steps[1].Output), `"lot_expires_at":"2026-04-30T16:00:00Z"`,
			"end of the month in the tenant's zone")
		// With an issuer, flows using issue_coupon publish.
		b.publishFlow(t, tenantA, "welcome", `{"steps":[{"name":"c","component":"issue_coupon","params":{"template":"new-user"}}]}`)
	})
}
