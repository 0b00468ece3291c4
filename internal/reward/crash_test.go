package reward_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/reward"
)

// crashSite is one place an executor dies: a fault point at a step, by error or by panic.
type crashSite struct {
	point reward.FaultPoint
	step  string
	panic bool
}

func (c crashSite) String() string {
	kind := "error"
	if c.panic {
		kind = "panic"
	}
	return fmt.Sprintf("%s@%s(%s)", c.point, c.step, kind)
}

// crashSteps are the steps of the crash flow, in order.
var crashSteps = []string{"points", "notify", "growth", "event"}

// allSites lists every boundary of the crash flow.
func allSites() []crashSite {
	sites := []crashSite{{point: reward.FaultAfterClaim}, {point: reward.FaultBeforeFinish}, {point: reward.FaultAfterFinish},
		{point: reward.FaultAfterCall, step: "notify"}, {point: reward.FaultBeforeFail, step: "notify"}}
	for _, st := range crashSteps {
		for _, p := range []reward.FaultPoint{reward.FaultBeforeStep, reward.FaultInStepTx, reward.FaultAfterStep} {
			sites = append(sites, crashSite{point: p, step: st})
		}
	}
	return sites
}

// crashPlan makes an executor die at random sites, each once, per grant; a grant's sites are
// drawn when the executor first meets it.
type crashPlan struct {
	mu    sync.Mutex
	rng   *rand.Rand
	sites map[string][]crashSite // grant id → sites not yet hit
	hit   int
}

func newCrashPlan(rng *rand.Rand) *crashPlan {
	return &crashPlan{rng: rng, sites: map[string][]crashSite{}}
}

// draw picks one to three sites for a grant. p.mu must be held.
func (p *crashPlan) draw(grantID string) []crashSite {
	if sites, ok := p.sites[grantID]; ok {
		return sites
	}
	all := allSites()
	var sites []crashSite
	for range p.rng.IntN(3) + 1 {
		site := all[p.rng.IntN(len(all))]
		site.panic = p.rng.IntN(2) == 0
		sites = append(sites, site)
	}
	p.sites[grantID] = sites
	return sites
}

func (p *crashPlan) fault(f reward.Fault) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	sites := p.draw(f.GrantID)
	for i, s := range sites {
		if s.point != f.Point || s.step != f.Step {
			continue
		}
		p.sites[f.GrantID] = append(sites[:i:i], sites[i+1:]...)
		p.hit++
		if s.panic {
			panic("crash at " + s.String())
		}
		return errors.New("crash at " + s.String())
	}
	return nil
}

// TestCrashAtEveryBoundary is a property test: grants run by executors that die at random step
// boundaries (before and after each step's transaction, inside it, before and after the grant's
// final transition, between a call and its step mark, before a failure is recorded) are, after a
// restart and the sweeper's replay, all succeeded exactly once: each step applied once, the
// ledger holding exactly the owed entries and verifying clean.
func TestCrashAtEveryBoundary(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		m := newMerchant(t, "done")
		m.failFirst = func(key string) bool { return key[len(key)-8] < 'h' } // about a third of the grants
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, 7))
		for round := range 3 {
			tenant := fmt.Sprintf("mch_crash%d", round)
			b.publishFlow(t, tenant, "crash", `{"steps":[
				{"name":"points","component":"grant_points","params":{"amount":10}},
				{"name":"notify","component":"call_external","params":{"url":"`+m.srv.URL+`","secret":"`+m.secret+`"}},
				{"name":"growth","component":"grant_growth","params":{"amount":3}},
				{"name":"event","component":"emit_event","params":{"type":"crash.done"}}],"max_attempts":50}`)
			b.publishFlow(t, tenant, "crashdb", `{"steps":[
				{"name":"points","component":"grant_points","params":{"amount":10}},
				{"name":"growth","component":"grant_growth","params":{"amount":3}},
				{"name":"event","component":"emit_event","params":{"type":"crash.done"}}],"max_attempts":50}`)
			crashRound(t, b, m, rng, tenant, round)
		}
		b.verifyLedger(t)
	})
}

func crashRound(t *testing.T, b *testBundle, m *merchant, rng *rand.Rand, tenant string, round int) {
	ctx := context.Background()
	const n = 24
	grants := make([]reward.Grant, n)
	// Grants 4k+3 run a flow that only writes to the database: Create takes the fast path (group
	// commit). The others call the merchant too.
	fast := func(i int) bool { return i%4 == 3 }
	params := func(i int) reward.CreateParams {
		p := reward.CreateParams{TenantID: tenant, UserID: fmt.Sprintf("u%d", i%5), SourceKind: "order",
			SourceID: fmt.Sprintf("o-%d", i), Flow: "crash"}
		if fast(i) {
			p.Flow = "crashdb"
		}
		return p
	}
	// A first executor dies at random boundaries: grants run inline from Create, through Execute
	// and through its sweeper.
	plan := newCrashPlan(rng)
	dying := b.newService(t, func(o *reward.Options) { o.Fault = plan.fault; o.Node = "dying" })
	for i := range n {
		if i%4 == 1 || i%4 == 2 {
			grants[i] = b.create(t, params(i))
		}
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			defer func() { _ = recover() }()
			switch i % 4 {
			case 0, 3:
				g, _, err := dying.Create(ctx, params(i))
				if err == nil {
					grants[i] = g
				}
			case 1:
				_, _ = dying.Execute(ctx, grants[i].ID)
			default:
				_, _ = dying.Sweep(ctx, 1)
			}
		})
	}
	wg.Wait()
	for i := range n {
		if grants[i].ID == "" { // Create died after its commit: the grant is there all the same
			g, _, err := b.svc.Create(ctx, params(i))
			require.NoError(t, err)
			grants[i] = g
		}
	}
	hits := plan.hit
	// The "restarted" process dies at other random boundaries while it replays.
	b.clock.Advance(11 * time.Minute) // past every lease and backoff
	plan = newCrashPlan(rng)
	restarted := b.newService(t, func(o *reward.Options) { o.Fault = plan.fault; o.Node = "restarted" })
	for range 3 {
		func() {
			defer func() { _ = recover() }()
			_, _ = restarted.Sweep(ctx, n)
		}()
	}
	hits += plan.hit
	b.clock.Advance(11 * time.Minute)
	require.Positive(t, hits, "the plan crashed nothing")

	// Replay by a healthy node until nothing is due.
	healthy := b.newService(t, func(o *reward.Options) { o.Node = "healthy" })
	for range 10 {
		n, err := healthy.Sweep(ctx, 100)
		require.NoError(t, err)
		if n == 0 {
			break
		}
		b.clock.Advance(11 * time.Minute)
	}
	calls, applied := m.stats()
	steps := 0
	for i, g := range grants {
		got, err := b.svc.Get(ctx, tenant, g.ID)
		require.NoError(t, err)
		require.Equal(t, reward.StateSucceeded, got.State, "grant %s: %s", g.ID, got.LastError)
		for _, st := range got.Steps {
			require.Equal(t, reward.StepSucceeded, st.State, "grant %s step %s", g.ID, st.Name)
		}
		require.Equal(t, 1, eventCount(t, b.db, reward.EventSucceeded, g.ID), "grant %s succeeded once", g.ID)
		require.Equal(t, 1, eventCount(t, b.db, "crash.done", g.ID), "grant %s emitted once", g.ID)
		steps += len(got.Steps)
		if !fast(i) {
			require.Equal(t, 1, applied[g.ID+"/notify"], "grant %s called the merchant with one key", g.ID)
		}
		require.Equal(t, 2, b.entries(t, tenant, g.ID), "grant %s posted points and growth once", g.ID)
	}
	require.GreaterOrEqual(t, calls, n*3/4)
	require.Equal(t, n*4-n/4, steps)
	var points, growth int64
	for u := range 5 {
		points += b.balance(t, tenant, fmt.Sprintf("u%d", u), "points")
		growth += b.balance(t, tenant, fmt.Sprintf("u%d", u), "growth")
	}
	require.EqualValues(t, n*10, points)
	require.EqualValues(t, n*3, growth)
	// The merchant applies each key once; one key per grant means it applied each grant's call once.
	require.Len(t, applied, (round+1)*(n-n/4), "the merchant saw keys other than <grant_id>/notify")
}
