package qualify_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/seedtest"
)

// The catalogue of the realistic wallets: 8 categories, 12 brands, 400 SKUs.
var (
	shopCategories = []string{"phone", "laptop", "audio", "camera", "food", "toy", "book", "home"}
	shopBrands     = []string{"acme", "zeta", "nova", "orbit", "lumen", "pike", "quill", "rho", "sol", "tau", "umbra", "vex"}
	shopGroups     = []struct {
		name string
		max  int
	}{{"platform", 1}, {"shop", 2}, {"category", 1}, {"payment", 1}}
)

// shopSKU is the i-th SKU of the catalogue and its category and brand.
func shopSKU(i int) qualify.Item {
	return item(fmt.Sprintf("sku-%03d", i), shopCategories[i%len(shopCategories)], shopBrands[i*7%len(shopBrands)],
		fmt.Sprintf("m-%d", i%40), 0, 1)
}

// realisticCart is a cart of n lines from the catalogue, ¥10 to ¥500 each, 1 to 3 of each.
func realisticCart(rng *rand.Rand, n int) qualify.Cart {
	c := qualify.Cart{BusinessLine: "retail", Channel: []string{"app", "web", "mini"}[rng.IntN(3)]}
	for range n {
		it := shopSKU(rng.IntN(400))
		it.UnitPrice = 1000 + rng.Int64N(49000)
		it.Quantity = 1 + rng.Int64N(3)
		c.Items = append(c.Items, it)
	}
	return c
}

// realisticSpec is a template as merchants write them: 45 % amount off, 35 % percent off with a
// cap, 20 % seller bonus; half with a threshold (a fifth of those over eligible items only);
// category, brand, SKU and channel rules; a third exclusive, the rest in four stack groups; one
// in twenty with a CEL condition.
func realisticSpec(rng *rand.Rand) qualify.Spec {
	s := spec()
	switch r := rng.IntN(20); {
	case r < 9:
		s.Amount = 500 * (1 + rng.Int64N(20))
	case r < 16:
		s.Type, s.Amount, s.PercentBP, s.Cap = qualify.TypePercentOff, 0, 500*(1+rng.Int64N(6)), 1000*(1+rng.Int64N(20))
	default:
		s.Type, s.Amount = qualify.TypeSellerBonus, 200*(1+rng.Int64N(10))
	}
	if rng.IntN(2) == 0 {
		s.Threshold.Amount = max(s.Amount, 5000*(1+rng.Int64N(40)))
		if rng.IntN(5) == 0 {
			s.Threshold.Scope = qualify.ScopeApplicable
		}
	}
	a := &s.Applicability
	switch rng.IntN(10) {
	case 0, 1, 2, 3:
		a.Category.Include = []string{shopCategories[rng.IntN(4)], shopCategories[4+rng.IntN(4)]}
	case 4, 5:
		a.Brand.Include = []string{shopBrands[rng.IntN(6)], shopBrands[6+rng.IntN(6)]}
	case 6:
		for _, i := range rng.Perm(400)[:20] {
			a.SKU.Include = append(a.SKU.Include, shopSKU(i).SKU)
		}
	case 7:
		a.Brand.Exclude = []string{shopBrands[rng.IntN(12)]}
	}
	if rng.IntN(10) == 0 {
		a.Channel.Include = []string{"app"}
	}
	if g := rng.IntN(6); g < 4 {
		s.Stacking = qualify.Stacking{Mode: qualify.StackGroup, Group: shopGroups[g].name, MaxPerOrder: shopGroups[g].max}
	}
	if rng.IntN(20) == 0 {
		s.Condition = `has(user.level) && user.level >= 2 && cart.amount >= 10000`
	}
	return s
}

// tenantPool is a tenant's live templates: 400 of realisticSpec, compiled once, shared by every
// realistic wallet, as a node holds them.
type tenantPool struct {
	byKey map[string]*qualify.Template
	keys  []string
}

func newTenantPool(t testing.TB, rng *rand.Rand, n int) *tenantPool {
	p := &tenantPool{byKey: make(map[string]*qualify.Template, n)}
	for i := range n {
		tp, err := qualify.Compile(fmt.Sprintf("t%03d", i), 1, realisticSpec(rng))
		require.NoError(t, err)
		p.byKey[tp.Key] = tp
		p.keys = append(p.keys, tp.Key)
	}
	return p
}

func (p *tenantPool) lookup(key string, version int) (*qualify.Template, bool) {
	if tp, ok := p.byKey[key]; ok && tp.Version == version {
		return tp, true
	}
	return nil, false
}

// realisticWallet is a wallet of n coupons over 0.6×n of the pool's templates: a few coupons share
// a template; one in twenty has expired and one in thirty has not started. The user is level 3.
func realisticWallet(t testing.TB, rng *rand.Rand, pool *tenantPool, n int) *testBundle {
	b := &testBundle{templates: map[string][]*qualify.Template{}, user: map[string]any{"level": int64(3)}, pool: pool}
	picked := rng.Perm(len(pool.keys))[:max(1, min(len(pool.keys), n*3/5))]
	for i := range n {
		c := b.give(fmt.Sprintf("c%03d", i), pool.keys[picked[rng.IntN(len(picked))]])
		c.ExpiresAt = now.Add(time.Duration(1+rng.IntN(30*24)) * time.Hour)
		switch {
		case rng.IntN(20) == 0:
			c.ExpiresAt = now.Add(-time.Hour)
		case rng.IntN(30) == 0:
			c.StartsAt = now.Add(time.Hour)
		}
	}
	return b
}

// TestStackSearchBudget runs the stack search on realistic 200-coupon wallets and on random
// 60-coupon wallets, with its node budget and without. Within the budget both give the same
// stack; past it the budgeted stack is never worth more than the exact one. Either way it is a
// stack Price accepts at the same value, worth at least the best single coupon. The log tells how
// often the budget was reached and how much it cost.
func TestStackSearchBudget(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seedtest.Seed(t), 13))
	pool := newTenantPool(t, rng, 400)
	type tally struct {
		wallets, over, worse, most int
		lost                       int64
	}
	var tallies [2]tally // realistic 200-coupon wallets, random 60-coupon wallets
	const rounds = 300
	for round := range rounds {
		var b *testBundle
		var c qualify.Cart
		kind := round % 3 / 2 // two realistic wallets, then a random one
		if kind == 0 {
			b, c = realisticWallet(t, rng, pool, 200), realisticCart(rng, 5)
		} else {
			b, c = randomWallet(t, rng, 60)
		}
		tl := &tallies[kind]
		tl.wallets++
		in := b.input(c)
		res, nodes := qualify.EvaluateNodes(in, 0)
		exact, exactNodes := qualify.EvaluateNodes(in, 1<<30)
		require.LessOrEqual(t, nodes, qualify.MaxSearchNodes+1, "round %d", round)
		tl.most = max(tl.most, exactNodes)
		if exactNodes <= qualify.MaxSearchNodes {
			require.Equal(t, exact.Best, res.Best, "round %d", round)
		} else {
			tl.over++
			require.LessOrEqual(t, res.Best.Stack.Discount, exact.Best.Stack.Discount, "round %d", round)
			if d := exact.Best.Stack.Discount - res.Best.Stack.Discount; d > 0 {
				tl.worse++
				tl.lost += d
			}
		}
		if res.Best.Stack != nil {
			pick, _, err := qualify.Price(in, res.Best.Stack.CouponIDs)
			require.NoError(t, err)
			require.Equal(t, *res.Best.Stack, pick)
			require.GreaterOrEqual(t, pick.Discount, res.Best.Single.Discount)
		}
	}
	for i, name := range []string{"realistic 200-coupon", "random 60-coupon"} {
		tl := tallies[i]
		t.Logf("%d %s wallets: %d needed more than %d nodes (at most %d); %d of those got a stack worth less, %d minor units in all",
			tl.wallets, name, tl.over, qualify.MaxSearchNodes, tl.most, tl.worse, tl.lost)
	}
}

// TestEvaluateConcurrently evaluates wallets of one tenant from several goroutines at once (run it
// with -race): pooled scratch and shared templates must not leak between evaluations.
func TestEvaluateConcurrently(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seedtest.Seed(t), 17))
	pool := newTenantPool(t, rng, 200)
	inputs := make([]qualify.Input, 16)
	want := make([]qualify.Result, len(inputs))
	for i := range inputs {
		inputs[i] = realisticWallet(t, rng, pool, 40).input(realisticCart(rng, 1+rng.IntN(5)))
		want[i] = qualify.Evaluate(inputs[i])
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4*len(inputs))
	for g := range 4 {
		wg.Go(func() {
			for k := range 3 * len(inputs) {
				i := (k + g) % len(inputs)
				if got := qualify.Evaluate(inputs[i]); !reflect.DeepEqual(got, want[i]) {
					errs <- fmt.Sprintf("goroutine %d, wallet %d: a different result", g, i)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		require.Fail(t, e)
	}
}

// TestEvaluatePooledMatchesFresh evaluates a mix of wallets in turn, realistic ones of 5 to 200
// coupons on carts of 1 to 6 items and random ones, in both languages, some carts past 64 items,
// and compares each answer with that of an evaluator that was never used before: whatever an
// earlier evaluation left in a pooled evaluator's scratch must not change the next answer.
func TestEvaluatePooledMatchesFresh(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seedtest.Seed(t), 19))
	pool := newTenantPool(t, rng, 400)
	for round := range 240 {
		var in qualify.Input
		switch round % 4 {
		case 0, 1:
			b := realisticWallet(t, rng, pool, []int{5, 20, 60, 200}[rng.IntN(4)])
			b.lang = []string{"", "en", "zh-CN"}[rng.IntN(3)]
			if rng.IntN(8) == 0 {
				b.user = nil
			}
			c := realisticCart(rng, 1+rng.IntN(6))
			if round%20 == 0 {
				c = realisticCart(rng, 65+rng.IntN(100)) // more than one word of item bits
			}
			in = b.input(c)
		default:
			b, c := randomWallet(t, rng, 1+rng.IntN(40))
			b.lang = []string{"en", "zh-CN"}[rng.IntN(2)]
			in = b.input(c)
		}
		require.Equal(t, qualify.EvaluateFresh(in), qualify.Evaluate(in), "round %d", round)
	}
}

// TestBufferMatchesEvaluate evaluates a mix of wallets in turn into one Buffer, large and small,
// realistic and random, in both languages: each answer must be Evaluate's, whatever the buffer's
// earlier results left in its memory.
func TestBufferMatchesEvaluate(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seedtest.Seed(t), 23))
	pool := newTenantPool(t, rng, 400)
	var buf qualify.Buffer
	for round := range 200 {
		in := mixedInput(t, rng, pool, round, []int{1, 5, 20, 60, 200, 300})
		require.Equal(t, qualify.Evaluate(in), *buf.Evaluate(in), "round %d", round)
	}
}

// mixedInput is the input of a round of a mix: two rounds in three a realistic wallet of one of
// sizes over pool and a realistic cart, the others a random wallet and cart; in any language.
func mixedInput(t *testing.T, rng *rand.Rand, pool *tenantPool, round int, sizes []int) qualify.Input {
	if round%3 < 2 {
		b := realisticWallet(t, rng, pool, sizes[rng.IntN(len(sizes))])
		b.lang = []string{"", "en", "zh-CN"}[rng.IntN(3)]
		return b.input(realisticCart(rng, 1+rng.IntN(6)))
	}
	b, c := randomWallet(t, rng, rng.IntN(60))
	b.lang = []string{"en", "zh-CN"}[rng.IntN(2)]
	return b.input(c)
}

// TestBufferAllocatesNothing checks that a Buffer, once grown, evaluates a wallet without
// allocating (the wallet has no CEL condition, whose evaluation allocates).
func TestBufferAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops the pooled evaluators at random")
	}
	rng := rand.New(rand.NewPCG(29, 31))
	b, c := randomWallet(t, rng, 60)
	in := b.input(c)
	var buf qualify.Buffer
	buf.Evaluate(in)
	allocs := testing.AllocsPerRun(50, func() { buf.Evaluate(in) })
	require.Less(t, allocs, 1.0, "allocations per evaluation")
}

// TestPreparedWalletMatchesEvaluate evaluates realistic and random wallets, some of whose coupons
// name a template version no lookup finds, both ways: from Coupons and Templates, and from a
// prepared Wallet (plain and into a Buffer). The answers must be the same, and so must Price's for
// a few coupons of the wallet; the wallet is complete exactly when no version is missing.
func TestPreparedWalletMatchesEvaluate(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seedtest.Seed(t), 37))
	pool := newTenantPool(t, rng, 400)
	var buf qualify.Buffer
	for round := range 200 {
		in := mixedInput(t, rng, pool, round, []int{0, 1, 5, 20, 60, 200})
		missing := false
		for i := range in.Coupons {
			if rng.IntN(25) == 0 {
				in.Coupons[i].TemplateVersion += 1 + rng.IntN(2) // a version the lookup does not know
			}
			_, found := in.Templates(in.Coupons[i].TemplateKey, in.Coupons[i].TemplateVersion)
			missing = missing || !found
		}
		want := qualify.Evaluate(in)
		w := qualify.NewWallet(in.Coupons, in.Templates)
		require.Equal(t, !missing, w.Complete(), "round %d", round)
		require.Equal(t, in.Coupons, w.Coupons())
		prepared := in
		prepared.Coupons, prepared.Templates, prepared.Wallet = nil, nil, w
		require.Equal(t, want, qualify.Evaluate(prepared), "round %d", round)
		require.Equal(t, want, *buf.Evaluate(prepared), "round %d", round)
		if len(in.Coupons) == 0 {
			continue
		}
		var ids []string
		for range 1 + rng.IntN(3) {
			ids = append(ids, in.Coupons[rng.IntN(len(in.Coupons))].ID)
		}
		pick, outs, err := qualify.Price(in, ids)
		wpick, wouts, werr := qualify.Price(prepared, ids)
		require.Equal(t, err, werr, "round %d", round)
		require.Equal(t, pick, wpick, "round %d", round)
		require.Equal(t, outs, wouts, "round %d", round)
	}
}

// TestWalletItemIndexMatchesLists compares a prepared Wallet's answers, whose item rules are
// found through its index of the values they name, with the answers from Coupons and Templates,
// whose rules compare each item with their lists. The templates have include and exclude lists
// (both at once too) on every item dimension, drawn from a few values so that carts hit them, and
// the carts have 1 to 8 items, or 70 (past what the index serves).
func TestWalletItemIndexMatchesLists(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seedtest.Seed(t), 41))
	// lists are an include and an exclude list of one or two of four values, never sharing one.
	lists := func(prefix string) ([]string, []string) {
		var inc, exc []string
		perm := rng.Perm(4)
		for _, v := range perm[:1+rng.IntN(2)] {
			inc = append(inc, fmt.Sprintf("%s%d", prefix, v))
		}
		for _, v := range perm[2 : 3+rng.IntN(2)] {
			exc = append(exc, fmt.Sprintf("%s%d", prefix, v))
		}
		return inc, exc
	}
	for round := range 300 {
		b := setup(t)
		b.lang = []string{"en", "zh-CN"}[rng.IntN(2)]
		for i := range 1 + rng.IntN(30) {
			s := spec()
			a := &s.Applicability
			for _, r := range []struct {
				rule   *qualify.Rule
				prefix string
			}{{&a.Category, "cat"}, {&a.Brand, "brand"}, {&a.Model, "model"}, {&a.SKU, "sku"}} {
				inc, exc := lists(r.prefix)
				switch rng.IntN(4) {
				case 0:
					r.rule.Include = inc
				case 1:
					r.rule.Exclude = exc
				case 2:
					r.rule.Include, r.rule.Exclude = inc, exc
				}
			}
			key := fmt.Sprintf("t%d", i)
			b.template(t, key, s)
			b.give(fmt.Sprintf("c%d", i), key)
		}
		n := 1 + rng.IntN(8)
		if round%25 == 0 {
			n = 70
		}
		var cart qualify.Cart
		for k := range n {
			cart.Items = append(cart.Items, item(fmt.Sprintf("sku%d", rng.IntN(4)), fmt.Sprintf("cat%d", rng.IntN(4)),
				fmt.Sprintf("brand%d", rng.IntN(4)), fmt.Sprintf("model%d", rng.IntN(4)), int64(100*(1+k)), 1))
		}
		in := b.input(cart)
		want := qualify.Evaluate(in)
		prepared := in
		prepared.Coupons, prepared.Templates, prepared.Wallet = nil, nil, qualify.NewWallet(in.Coupons, in.Templates)
		require.Equal(t, want, qualify.Evaluate(prepared), "round %d", round)
	}
}
