package ledger_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/seedtest"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// TestRandomOperations runs random sequences of grant, spend, hold, capture, release, adjust
// (including below zero, for one user), repeats and clock moves with the sweeps, and after every
// step compares balances, held amounts and lots with a simple model of the rules; Verify runs
// regularly and at the end. Set PERK_TEST_SEED to replay a sequence.
func TestRandomOperations(t *testing.T) {
	t.Parallel()
	seed := seedtest.Seed(t)
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		r := &runner{t: t, b: b, rng: rand.New(rand.NewPCG(seed, 7)), m: newModel()}
		const steps = 250
		for i := range steps {
			r.step(i)
			r.compare(i)
			if i%25 == 24 {
				b.requireClean(t)
			}
		}
		t.Logf("%d steps: %v, debts met by a sweep: %d", steps, r.tally, r.m.sweptDebts)
	})
}

// The users of the random runs; only debtor may be adjusted below zero.
var (
	randomUsers = []string{"u-1", "u-2", "u-3"}
	debtor      = "u-3"
)

type runner struct {
	t     *testing.T
	b     *testBundle
	rng   *rand.Rand
	m     *model
	tally map[string]int
	last  *ledger.GrantParams // a grant to repeat
}

func (r *runner) count(what string) {
	if r.tally == nil {
		r.tally = map[string]int{}
	}
	r.tally[what]++
}

func (r *runner) step(i int) {
	t, ctx := r.t, context.Background()
	user := randomUsers[r.rng.IntN(len(randomUsers))]
	amount := 1 + r.rng.Int64N(40)
	key := fmt.Sprintf("k-%d", i)
	now := r.b.clock.Now()
	switch op := r.rng.IntN(100); {
	case op < 30:
		exp := never
		if n := r.rng.IntN(4); n > 0 {
			exp = days(n)
		}
		p := ledger.GrantParams{TenantID: shop, UserID: user, Asset: "points", Amount: amount, BusinessKey: key, Expiry: exp}
		_, created, err := r.b.svc.Grant(ctx, p)
		require.NoError(t, err)
		require.True(t, created)
		r.m.grant(user, amount, lotOf(exp, now))
		r.last = &p
		r.count("grant")
	case op < 35 && r.last != nil:
		_, created, err := r.b.svc.Grant(ctx, *r.last)
		require.NoError(t, err)
		require.False(t, created)
		r.count("repeat")
	case op < 55:
		_, _, err := r.b.svc.Spend(ctx, ledger.SpendParams{TenantID: shop, UserID: user, Asset: "points", Amount: amount, BusinessKey: key})
		r.debit(user, amount, err, false, "spend")
	case op < 65:
		if r.rng.IntN(2) == 0 {
			user = debtor
		}
		allowNegative := user == debtor && r.rng.IntN(2) == 0
		sign := int64(1)
		if r.rng.IntN(2) == 0 {
			sign = -1
		}
		if allowNegative && sign < 0 {
			amount += max(r.m.available(user), 0) // into debt
			r.count("debt")
		}
		_, _, err := r.b.svc.Adjust(ctx, ledger.AdjustParams{TenantID: shop, UserID: user, Asset: "points",
			Amount: sign * amount, Reason: "random", BusinessKey: key, AllowNegative: allowNegative})
		if sign > 0 {
			require.NoError(t, err)
			r.m.grant(user, amount, math.MaxInt64)
			r.count("adjust+")
			return
		}
		r.debit(user, amount, err, allowNegative, "adjust-")
	case op < 80:
		ttl := time.Duration(1+r.rng.IntN(48)) * time.Hour
		h, _, err := r.b.svc.Hold(ctx, ledger.HoldParams{TenantID: shop, UserID: user, Asset: "points", Amount: amount,
			TTL: ttl, BusinessKey: key})
		if r.m.available(user) < amount {
			requireProblem(t, err, problem.KindConflict, "insufficient-balance")
			r.count("hold refused")
			return
		}
		require.NoError(t, err)
		r.m.hold(h.ID, user, amount, now.Add(ttl))
		r.count("hold")
	case op < 92:
		r.settle(now)
	case op < 96:
		r.b.clock.Advance(time.Duration(r.rng.IntN(30)) * time.Hour)
		r.count("advance")
	default:
		n, err := r.b.svc.ReleaseExpiredHolds(ctx, 1000)
		require.NoError(t, err)
		require.Equal(t, r.m.releaseDue(now), n)
		n, err = r.b.svc.ExpireDue(ctx, 1000)
		require.NoError(t, err)
		require.Equal(t, r.m.expireDue(sqldb.Micros(now)), n)
		r.count("sweep")
	}
}

// debit checks the outcome of a spend or negative adjustment against the model and applies it.
func (r *runner) debit(user string, amount int64, err error, allowNegative bool, what string) {
	if r.m.available(user) < amount && !allowNegative {
		requireProblem(r.t, err, problem.KindConflict, "insufficient-balance")
		r.count(what + " refused")
		return
	}
	require.NoError(r.t, err)
	r.m.debit(user, amount)
	r.count(what)
}

// settle captures (fully or in part) or releases a random active hold, sometimes past its TTL.
func (r *runner) settle(now time.Time) {
	ctx := context.Background()
	ids := r.m.activeHolds()
	if len(ids) == 0 {
		return
	}
	h := r.m.holds[ids[r.rng.IntN(len(ids))]]
	if r.rng.IntN(3) == 0 {
		_, err := r.b.svc.Release(ctx, shop, h.id)
		require.NoError(r.t, err)
		r.m.release(h)
		r.count("release")
		return
	}
	amount := int64(0)
	if r.rng.IntN(2) == 0 {
		amount = 1 + r.rng.Int64N(h.amount)
	}
	_, _, err := r.b.svc.Capture(ctx, ledger.CaptureParams{TenantID: shop, HoldID: h.id, Amount: amount})
	if !now.Before(h.expires) {
		requireProblem(r.t, err, problem.KindConflict, "hold-expired")
		r.m.release(h)
		r.count("capture expired")
		return
	}
	require.NoError(r.t, err)
	if amount == 0 {
		amount = h.amount
	}
	r.m.capture(h, amount)
	r.count("capture")
}

// compare checks every user's account and lots against the model.
func (r *runner) compare(step int) {
	for _, u := range randomUsers {
		acct := r.b.account(r.t, u)
		require.Equal(r.t, r.m.balance[u], acct.Balance, "step %d: balance of %s", step, u)
		require.Equal(r.t, r.m.held[u], acct.Held, "step %d: held of %s", step, u)
		if u != debtor {
			require.GreaterOrEqual(r.t, acct.Balance, int64(0), "step %d: %s below zero", step, u)
			require.GreaterOrEqual(r.t, acct.Available, int64(0), "step %d: %s available below zero", step, u)
		}
		lots, err := r.b.svc.Lots(context.Background(), shop, u, "points")
		require.NoError(r.t, err)
		got := []mlot{}
		for _, l := range lots {
			exp := int64(math.MaxInt64)
			switch {
			case l.Debt:
				exp = 0
			case l.ExpiresAt != nil:
				exp = sqldb.Micros(*l.ExpiresAt)
			}
			got = append(got, mlot{exp: exp, remaining: l.Remaining, held: l.Held})
		}
		require.Equal(r.t, r.m.lotsOf(u), got, "step %d: lots of %s", step, u)
	}
}

// lotOf is the lot expiry the rules give a grant made at now in UTC.
func lotOf(e ledger.Expiry, now time.Time) int64 {
	if e.Policy == "" || e.Policy == ledger.ExpireNever {
		return math.MaxInt64
	}
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	return sqldb.Micros(day.AddDate(0, 0, e.Days+1))
}

// model is the ledger's rules, written plainly: lots by expiry (0 is the debt lot), holds with
// their per-lot reservations.
type model struct {
	lots  map[string][]*mlot
	holds map[string]*mhold
	order []string // hold ids in creation order
	// sweptDebts counts sweeps that found a debt to pay before expiring.
	sweptDebts int
	balance    map[string]int64
	held       map[string]int64
}

type mlot struct {
	exp             int64
	remaining, held int64
}

type mhold struct {
	id, user string
	amount   int64
	expires  time.Time
	allocs   []mlotAmount
	active   bool
}

type mlotAmount struct {
	l *mlot
	n int64
}

func newModel() *model {
	return &model{lots: map[string][]*mlot{}, holds: map[string]*mhold{}, balance: map[string]int64{}, held: map[string]int64{}}
}

func (m *model) available(u string) int64 { return m.balance[u] - m.held[u] }

func (m *model) lot(u string, exp int64) *mlot {
	for _, l := range m.lots[u] {
		if l.exp == exp {
			return l
		}
	}
	l := &mlot{exp: exp}
	m.lots[u] = append(m.lots[u], l)
	slices.SortFunc(m.lots[u], func(a, b *mlot) int {
		if a.exp < b.exp {
			return -1
		}
		if a.exp > b.exp {
			return 1
		}
		return 0
	})
	return l
}

func (m *model) lotsOf(u string) []mlot {
	out := []mlot{}
	for _, l := range m.lots[u] {
		if l.remaining != 0 {
			out = append(out, *l)
		}
	}
	return out
}

func (m *model) grant(u string, n, exp int64) {
	m.lot(u, exp).remaining += n
	m.balance[u] += n
}

// net pays the debt lot from the free parts of the others, earliest first.
func (m *model) net(u string) {
	ls := m.lots[u]
	if len(ls) == 0 || ls[0].exp != 0 {
		return
	}
	for _, l := range ls[1:] {
		take := min(max(l.remaining-l.held, 0), -ls[0].remaining)
		l.remaining -= take
		ls[0].remaining += take
	}
}

// take picks n from the free parts of the lots, earliest first.
func (m *model) take(u string, n int64) []mlotAmount {
	var out []mlotAmount
	for _, l := range m.lots[u] {
		if l.exp == 0 || n == 0 {
			continue
		}
		x := min(max(l.remaining-l.held, 0), n)
		if x > 0 {
			out = append(out, mlotAmount{l, x})
			n -= x
		}
	}
	return out
}

func (m *model) debit(u string, n int64) {
	m.net(u)
	taken := int64(0)
	for _, a := range m.take(u, n) {
		a.l.remaining -= a.n
		taken += a.n
	}
	if rest := n - taken; rest > 0 {
		m.lot(u, 0).remaining -= rest
	}
	m.balance[u] -= n
}

func (m *model) hold(id, u string, n int64, expires time.Time) {
	m.net(u)
	h := &mhold{id: id, user: u, amount: n, expires: expires, allocs: m.take(u, n), active: true}
	for _, a := range h.allocs {
		a.l.held += a.n
	}
	m.holds[id] = h
	m.order = append(m.order, id)
	m.held[u] += n
}

func (m *model) activeHolds() []string {
	var ids []string
	for _, id := range m.order {
		if m.holds[id].active {
			ids = append(ids, id)
		}
	}
	return ids
}

func (m *model) release(h *mhold) { m.capture(h, 0) }

func (m *model) capture(h *mhold, n int64) {
	rest := n
	for _, a := range h.allocs {
		a.l.held -= a.n
		x := min(a.n, rest)
		a.l.remaining -= x
		rest -= x
	}
	h.active = false
	m.held[h.user] -= h.amount
	m.balance[h.user] -= n
}

func (m *model) releaseDue(now time.Time) int {
	n := 0
	for _, id := range m.activeHolds() {
		if h := m.holds[id]; !now.Before(h.expires) {
			m.release(h)
			n++
		}
	}
	return n
}

func (m *model) expireDue(now int64) int {
	entries := 0
	for _, u := range randomUsers {
		due := false
		for _, l := range m.lots[u] {
			if l.exp > 0 && l.exp <= now && l.remaining > l.held {
				due = true
			}
		}
		if !due {
			continue
		}
		if ls := m.lots[u]; len(ls) > 0 && ls[0].exp == 0 && ls[0].remaining < 0 {
			m.sweptDebts++
		}
		m.net(u)
		for _, l := range m.lots[u] {
			if free := l.remaining - l.held; l.exp > 0 && l.exp <= now && free > 0 {
				l.remaining -= free
				m.balance[u] -= free
				entries++
			}
		}
	}
	return entries
}
