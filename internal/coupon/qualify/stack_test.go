package qualify_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/seedtest"
)

// amountOff is a spec of amount off in a stack group (exclusive when group is "").
func amountOff(amount int64, group string, maxPerOrder int) qualify.Spec {
	s := spec()
	s.Amount = amount
	if group != "" {
		s.Stacking = qualify.Stacking{Mode: qualify.StackGroup, Group: group, MaxPerOrder: maxPerOrder}
	}
	return s
}

func percentOff(bp, capAmount int64, group string, maxPerOrder int) qualify.Spec {
	s := amountOff(0, group, maxPerOrder)
	s.Type, s.PercentBP, s.Cap = qualify.TypePercentOff, bp, capAmount
	return s
}

func bonus(amount int64, group string, maxPerOrder int) qualify.Spec {
	s := amountOff(amount, group, maxPerOrder)
	s.Type = qualify.TypeSellerBonus
	return s
}

// oneItem is a cart of one ¥100 item.
func oneItem() qualify.Cart {
	return qualify.Cart{Items: []qualify.Item{item("a", "cat", "brand", "", 10000, 1)}}
}

func TestBestSingleTies(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.template(t, "t1", spec())
	b.template(t, "t2", spec())
	b.give("c-late", "t1").ExpiresAt = now.Add(48 * time.Hour)
	b.give("c-b", "t2").ExpiresAt = now.Add(24 * time.Hour)
	b.give("c-a", "t1").ExpiresAt = now.Add(24 * time.Hour)
	res := b.evaluate(t, shopCart())
	require.Equal(t, &qualify.Pick{CouponIDs: []string{"c-a"}, Discount: 3000}, res.Best.Single, "earliest expiry, then smallest id")
	require.Equal(t, res.Best.Single, res.Best.Stack)

	b.template(t, "t3", amountOff(3001, "", 1))
	b.give("c-z", "t3").ExpiresAt = now.Add(99 * time.Hour)
	res = b.evaluate(t, shopCart())
	require.Equal(t, &qualify.Pick{CouponIDs: []string{"c-z"}, Discount: 3001}, res.Best.Single, "value first")
}

func TestBestStack(t *testing.T) {
	t.Parallel()
	type give struct {
		id   string
		spec qualify.Spec
	}
	cases := []struct {
		name    string
		cart    qualify.Cart
		coupons []give
		stack   *qualify.Pick
		single  string
		// left maps coupons left out of the stack to their reason message.
		left map[string]string
	}{
		{name: "group stack beats a smaller exclusive coupon", cart: oneItem(),
			coupons: []give{{"excl", amountOff(3000, "", 1)}, {"plat", amountOff(2000, "platform", 1)}, {"shop", amountOff(1500, "shop", 1)}},
			stack:   &qualify.Pick{CouponIDs: []string{"plat", "shop"}, Discount: 3500}, single: "excl",
			left: map[string]string{"excl": "exclusive: it is used alone, and the best stack gives more"}},
		{name: "a larger exclusive coupon is used alone", cart: oneItem(),
			coupons: []give{{"excl", amountOff(5000, "", 1)}, {"plat", amountOff(2000, "platform", 1)}, {"shop", amountOff(1500, "shop", 1)}},
			stack:   &qualify.Pick{CouponIDs: []string{"excl"}, Discount: 5000}, single: "excl",
			left: map[string]string{"plat": "an exclusive coupon that gives more is used alone", "shop": "an exclusive coupon that gives more is used alone"}},
		{name: "one per order in a group", cart: oneItem(),
			coupons: []give{{"p20", amountOff(2000, "platform", 1)}, {"p10", amountOff(1000, "platform", 1)}},
			stack:   &qualify.Pick{CouponIDs: []string{"p20"}, Discount: 2000}, single: "p20",
			left: map[string]string{"p10": `group "platform" allows 1 per order`}},
		{name: "two per order in a group", cart: oneItem(),
			coupons: []give{{"s15", amountOff(1500, "shop", 2)}, {"s10", amountOff(1000, "shop", 2)}, {"s05", amountOff(500, "shop", 2)}},
			stack:   &qualify.Pick{CouponIDs: []string{"s15", "s10"}, Discount: 2500}, single: "s15",
			left: map[string]string{"s05": `group "shop" allows 2 per order`}},
		{name: "the smallest max_per_order of a group's members rules", cart: oneItem(),
			coupons: []give{{"a10", amountOff(1000, "shop", 3)}, {"b09", amountOff(900, "shop", 3)}, {"c15", amountOff(1500, "shop", 1)}},
			stack:   &qualify.Pick{CouponIDs: []string{"a10", "b09"}, Discount: 1900}, single: "c15",
			left: map[string]string{"c15": `group "shop" allows 1 per order`}},
		{name: "percentages apply before amounts off", cart: oneItem(),
			coupons: []give{{"amt", amountOff(3000, "shop", 1)}, {"pct", percentOff(1000, 10000, "platform", 1)}},
			stack:   &qualify.Pick{CouponIDs: []string{"pct", "amt"}, Discount: 4000}, single: "amt"},
		{name: "later percentages apply to what is left", cart: oneItem(),
			coupons: []give{{"p10", percentOff(1000, 10000, "platform", 1)}, {"p20", percentOff(2000, 10000, "shop", 1)}},
			stack:   &qualify.Pick{CouponIDs: []string{"p20", "p10"}, Discount: 2000 + 800}, single: "p20"},
		{name: "stacked discounts never exceed the items", cart: oneItem(),
			coupons: []give{{"a", amountOff(8000, "a", 1)}, {"b", amountOff(5000, "b", 1)}},
			stack:   &qualify.Pick{CouponIDs: []string{"a", "b"}, Discount: 10000}, single: "a"},
		{name: "no coupon that adds nothing", cart: oneItem(),
			coupons: []give{{"a", amountOff(6000, "a", 1)}, {"b", amountOff(6000, "b", 1)}, {"c", amountOff(5000, "c", 1)}},
			stack:   &qualify.Pick{CouponIDs: []string{"a", "b"}, Discount: 10000}, single: "a",
			left: map[string]string{"c": "it adds nothing to the best stack"}},
		{name: "a combination beats the greedy pick", cart: oneItem(),
			// Greedy by value takes both halves (5000 > 4900): 50 % then 50 % of what is left = 7500.
			// Half off then 4900 off is 9900.
			coupons: []give{{"x-pct", percentOff(5000, 100000, "x", 1)}, {"x-amt", amountOff(4900, "x", 1)}, {"y-pct", percentOff(5000, 100000, "y", 1)}},
			stack:   &qualify.Pick{CouponIDs: []string{"y-pct", "x-amt"}, Discount: 9900}, single: "x-pct",
			left: map[string]string{"x-pct": `group "x" allows 1 per order`}},
		{name: "discounts and bonuses do not mix: discount wins", cart: oneItem(),
			coupons: []give{{"bonus", bonus(500, "a", 1)}, {"off", amountOff(3000, "", 1)}},
			stack:   &qualify.Pick{CouponIDs: []string{"off"}, Discount: 3000}, single: "off",
			left: map[string]string{"bonus": "discounts and seller bonuses cannot be combined"}},
		{name: "discounts and bonuses do not mix: bonuses win", cart: oneItem(),
			coupons: []give{{"b1", bonus(2000, "a", 1)}, {"b2", bonus(1500, "b", 1)}, {"off", amountOff(3000, "x", 1)}},
			stack:   &qualify.Pick{CouponIDs: []string{"b1", "b2"}, Discount: 3500}, single: "off",
			left: map[string]string{"off": "discounts and seller bonuses cannot be combined"}},
		{name: "bonuses add up past the items", cart: oneItem(),
			coupons: []give{{"b1", bonus(8000, "a", 1)}, {"b2", bonus(7000, "b", 1)}},
			stack:   &qualify.Pick{CouponIDs: []string{"b1", "b2"}, Discount: 15000}, single: "b1"},
		{name: "a coupon worth nothing is applicable but never picked",
			cart:    qualify.Cart{Items: []qualify.Item{item("a", "", "", "", 50, 1)}},
			coupons: []give{{"tiny", percentOff(1, 100, "", 1)}}},
		{name: "percentages on different items", cart: shopCart(),
			coupons: []give{
				{"phones", func() qualify.Spec {
					s := percentOff(1000, 100000, "cat", 1)
					s.Applicability.Category.Include = []string{"phone"}
					return s
				}()},
				{"acc", func() qualify.Spec {
					s := percentOff(5000, 100000, "cat", 1)
					s.Applicability.Category.Include = []string{"accessory"}
					return s
				}()},
				{"all", percentOff(500, 100000, "platform", 1)},
			},
			// phones 30000 beats acc 7998 in group cat; then 5% of what is left (315997 - 30000).
			stack: &qualify.Pick{CouponIDs: []string{"phones", "all"}, Discount: 30000 + 14299}, single: "phones",
			left: map[string]string{"acc": `group "cat" allows 1 per order`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			for _, g := range tc.coupons {
				b.template(t, "t-"+g.id, g.spec)
				b.give(g.id, "t-"+g.id)
			}
			res := b.evaluate(t, tc.cart)
			require.Equal(t, tc.stack, res.Best.Stack)
			if tc.single == "" {
				require.Nil(t, res.Best.Single)
			} else {
				require.Equal(t, tc.single, res.Best.Single.CouponIDs[0])
			}
			for _, o := range res.Coupons {
				require.True(t, o.Applicable, "%s: %v", o.CouponID, o.Reasons)
				msg, left := tc.left[o.CouponID]
				if !left {
					require.Empty(t, o.Reasons, o.CouponID)
					continue
				}
				require.Len(t, o.Reasons, 1, o.CouponID)
				require.Equal(t, msg, o.Reasons[0].Message, o.CouponID)
				require.Contains(t, []string{qualify.ReasonStacking, qualify.ReasonLimitReached}, o.Reasons[0].Code)
			}
			if tc.stack != nil {
				pick, _, err := qualify.Price(b.input(tc.cart), tc.stack.CouponIDs)
				require.NoError(t, err)
				require.Equal(t, *tc.stack, pick, "Price agrees with the best stack")
			}
		})
	}
}

func TestBestStackOneCouponPerTemplate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.template(t, "shop10", amountOff(1000, "shop", 3))
	b.give("late", "shop10").ExpiresAt = now.Add(72 * time.Hour)
	b.give("soon", "shop10").ExpiresAt = now.Add(24 * time.Hour)
	b.template(t, "shop5", amountOff(500, "shop", 3))
	b.give("five", "shop5")
	// A second version of the same template is still the same template.
	b.version(t, "shop5", 2, amountOff(700, "shop", 3))
	b.coupons = append(b.coupons, qualify.Coupon{ID: "five-v2", TemplateKey: "shop5", TemplateVersion: 2,
		StartsAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour)})
	res := b.evaluate(t, oneItem())
	require.Equal(t, &qualify.Pick{CouponIDs: []string{"soon", "five-v2"}, Discount: 1700}, res.Best.Stack)
	require.Equal(t, []qualify.Reason{{Code: qualify.ReasonLimitReached, Message: "one coupon per template per order"}}, outcome(t, res, "late").Reasons)
	require.Equal(t, []qualify.Reason{{Code: qualify.ReasonLimitReached, Message: "one coupon per template per order"}}, outcome(t, res, "five").Reasons)

	b.lang = "zh-CN"
	res = b.evaluate(t, oneItem())
	require.Equal(t, "同一种券每单限用1张", outcome(t, res, "late").Reasons[0].Message)
}

func TestBestStackTiesPreferFewerAndEarlier(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// 60 + 40 and 100 alone reach the same 100: one coupon is better than two.
	b.template(t, "a", amountOff(6000, "a", 1))
	b.give("a", "a")
	b.template(t, "b", amountOff(4000, "b", 1))
	b.give("b", "b")
	b.template(t, "c", amountOff(10000, "c", 1))
	b.give("c", "c").ExpiresAt = now.Add(99 * time.Hour)
	b.template(t, "d", amountOff(10000, "d", 1))
	b.give("d", "d").ExpiresAt = now.Add(98 * time.Hour)
	res := b.evaluate(t, oneItem())
	require.Equal(t, &qualify.Pick{CouponIDs: []string{"d"}, Discount: 10000}, res.Best.Stack, "fewest coupons, then earliest expiry")
}

// TestStackMatchesExhaustiveSearch compares the best stack of random small wallets with an
// exhaustive search: every subset of the wallet priced by Price (which refuses what the stacking
// rules do not allow). The best stack (searched without a node budget) must reach the highest
// value with the fewest coupons, and the best single must be the best coupon alone.
func TestStackMatchesExhaustiveSearch(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seedtest.Seed(t), 11))
	sizes := map[int]int{} // rounds by size of the best stack, to show the test reaches real stacks
	for round := range 420 {
		n := 1 + rng.IntN(10)
		if round >= 400 {
			n = 12 // a few larger wallets
		}
		b, cart := randomWallet(t, rng, n)
		in := b.input(cart)
		res, _ := qualify.EvaluateNodes(in, 1<<30)
		bestV, bestN := int64(0), 0
		for mask := 1; mask < 1<<n; mask++ {
			var chosen []string
			for i := range n {
				if mask&(1<<i) != 0 {
					chosen = append(chosen, b.coupons[i].ID)
				}
			}
			pick, outs, err := qualify.Price(in, chosen)
			if err != nil {
				continue
			}
			requireStackedSplit(t, cart, outs)
			if pick.Discount > bestV || (pick.Discount == bestV && len(chosen) < bestN) {
				bestV, bestN = pick.Discount, len(chosen)
			}
		}
		desc := fmt.Sprintf("round %d: %s", round, describe(b, cart))
		sizes[bestN]++
		if bestV == 0 {
			require.Nil(t, res.Best.Stack, desc)
			continue
		}
		require.NotNil(t, res.Best.Stack, desc)
		require.Equal(t, bestV, res.Best.Stack.Discount, desc)
		require.Len(t, res.Best.Stack.CouponIDs, bestN, desc)
		pick, _, err := qualify.Price(in, res.Best.Stack.CouponIDs)
		require.NoError(t, err, desc)
		require.Equal(t, *res.Best.Stack, pick, desc)

		var single int64
		for _, o := range res.Coupons {
			if o.Applicable {
				single = max(single, o.Discount)
			}
		}
		if single == 0 {
			require.Nil(t, res.Best.Single, desc)
		} else {
			require.Equal(t, single, res.Best.Single.Discount, desc)
		}
	}
	t.Logf("rounds by best stack size: %v", sizes)
	require.Positive(t, sizes[2]+sizes[3]+sizes[4], "the wallets must make real stacks")
}

// requireStackedSplit checks the coupons of one combination together: their shares on an item
// never exceed the item (for discounts), and each coupon's shares sum to its part.
func requireStackedSplit(t *testing.T, c qualify.Cart, outs []qualify.Outcome) {
	t.Helper()
	used := make([]int64, len(c.Items))
	for _, o := range outs {
		requireSplit(t, c, o)
		if o.Type == qualify.TypeSellerBonus {
			continue
		}
		for _, s := range o.Split {
			used[s.Index] += s.Discount
		}
	}
	for i, it := range c.Items {
		require.LessOrEqual(t, used[i], it.UnitPrice*it.Quantity, "item %d", i)
	}
}

var (
	randomCategories = []string{"phone", "food", "toy"}
	randomBrands     = []string{"acme", "zeta"}
	randomGroups     = []string{"platform", "shop", "pay"}
)

// randomWallet builds a random cart of 1 to 5 items and a wallet of n coupons over random
// templates: every type, thresholds in both scopes, category and brand rules, exclusive and group
// coupons with max_per_order 1 to 3, a few repeated templates, expired and not-started coupons.
func randomWallet(t *testing.T, rng *rand.Rand, n int) (*testBundle, qualify.Cart) {
	t.Helper()
	b := setup(t)
	var cart qualify.Cart
	for i := range 1 + rng.IntN(5) {
		cart.Items = append(cart.Items, item(fmt.Sprintf("s%d", i), randomCategories[rng.IntN(3)], randomBrands[rng.IntN(2)], "",
			int64(rng.IntN(5)*rng.IntN(5000)), 1+int64(rng.IntN(3))))
	}
	var keys []string
	for i := range n {
		if len(keys) > 0 && rng.IntN(5) == 0 {
			c := b.give(fmt.Sprintf("c%d", i), keys[rng.IntN(len(keys))])
			c.ExpiresAt = now.Add(time.Duration(1+rng.IntN(3)) * time.Hour)
			continue
		}
		key := fmt.Sprintf("t%d", i)
		b.template(t, key, randomSpec(rng))
		keys = append(keys, key)
		c := b.give(fmt.Sprintf("c%d", i), key)
		c.ExpiresAt = now.Add(time.Duration(1+rng.IntN(3)) * time.Hour)
		switch rng.IntN(12) {
		case 0:
			c.ExpiresAt = now.Add(-time.Hour)
		case 1:
			c.StartsAt = now.Add(time.Hour)
		}
	}
	return b, cart
}

func randomSpec(rng *rand.Rand) qualify.Spec {
	s := spec()
	switch rng.IntN(6) {
	case 0, 1, 2:
		s.Amount = 100 * (1 + rng.Int64N(100))
	case 3, 4:
		s.Type, s.Amount, s.PercentBP, s.Cap = qualify.TypePercentOff, 0, 100*(1+rng.Int64N(50)), 100*(1+rng.Int64N(100))
	default:
		s.Type = qualify.TypeSellerBonus
		if rng.IntN(2) == 0 {
			s.Amount = 100 * (1 + rng.Int64N(50))
		} else {
			s.Amount, s.PercentBP, s.Cap = 0, 100*(1+rng.Int64N(20)), 100*(1+rng.Int64N(50))
		}
	}
	if rng.IntN(3) == 0 {
		s.Threshold.Amount = max(s.Amount, 100*rng.Int64N(200))
		if rng.IntN(2) == 0 {
			s.Threshold.Scope = qualify.ScopeApplicable
		}
	}
	if rng.IntN(3) == 0 {
		s.Applicability.Category.Include = []string{randomCategories[rng.IntN(3)]}
	}
	if rng.IntN(4) == 0 {
		s.Applicability.Brand.Exclude = []string{randomBrands[rng.IntN(2)]}
	}
	if rng.IntN(3) != 0 {
		s.Stacking = qualify.Stacking{Mode: qualify.StackGroup, Group: randomGroups[rng.IntN(3)], MaxPerOrder: 1 + rng.IntN(3)}
	}
	return s
}

// describe prints a random wallet for a failure message.
func describe(b *testBundle, c qualify.Cart) string {
	out := fmt.Sprintf("cart %+v; wallet:", c.Items)
	keys := make([]string, 0, len(b.templates))
	for k := range b.templates {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, tp := range b.templates[k] {
			s := tp.Spec
			out += fmt.Sprintf("\n  %s@%d %s amount=%d bp=%d cap=%d threshold=%+v cat=%v brand-=%v stacking=%+v",
				k, tp.Version, s.Type, s.Amount, s.PercentBP, s.Cap, s.Threshold, s.Applicability.Category.Include, s.Applicability.Brand.Exclude, s.Stacking)
		}
	}
	for _, c := range b.coupons {
		out += fmt.Sprintf("\n  coupon %s of %s (%s..%s)", c.ID, c.TemplateKey, c.StartsAt.Format(time.TimeOnly), c.ExpiresAt.Format(time.TimeOnly))
	}
	return out
}

// TestBestStackManyGroups stacks coupons of twenty groups, one each: past a handful of groups the
// search numbers them through a map instead of a list, with the same answer.
func TestBestStackManyGroups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var want []string
	for i := range 20 {
		key := fmt.Sprintf("t%02d", i)
		b.template(t, key, amountOff(int64(100+i), fmt.Sprintf("g%02d", i), 1))
		b.give("c"+key, key).ExpiresAt = now.Add(time.Duration(1+i) * time.Hour)
		want = append(want, "c"+key)
	}
	b.template(t, "t99", amountOff(50, "g05", 1)) // loses its group to t05
	b.give("ct99", "t99")
	res := b.evaluate(t, shopCart())
	require.NotNil(t, res.Best.Stack)
	var sum int64
	for i := range 20 {
		sum += int64(100 + i)
	}
	require.Equal(t, sum, res.Best.Stack.Discount)
	require.ElementsMatch(t, want, res.Best.Stack.CouponIDs)
	require.Equal(t, []string{qualify.ReasonLimitReached}, codes(outcome(t, res, "ct99")))
	pick, _, err := qualify.Price(b.input(shopCart()), res.Best.Stack.CouponIDs)
	require.NoError(t, err)
	require.Equal(t, *res.Best.Stack, pick)
}

// TestStackTiesMatchExhaustiveSearch compares the best stack of small wallets on one or two cheap
// items, where stacks run out of items and often tie, with an exhaustive search that breaks ties
// as documented: the most value, then the fewest coupons, then the earliest expiries (sorted,
// compared in turn), then the smallest ids (likewise).
func TestStackTiesMatchExhaustiveSearch(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seedtest.Seed(t), 29))
	type best struct {
		v    int64
		ids  []string
		exps []time.Time
	}
	better := func(a, b best) bool {
		switch {
		case a.v != b.v:
			return a.v > b.v
		case len(a.ids) != len(b.ids):
			return len(a.ids) < len(b.ids)
		}
		if c := slices.CompareFunc(a.exps, b.exps, func(x, y time.Time) int { return x.Compare(y) }); c != 0 {
			return c < 0
		}
		return slices.Compare(a.ids, b.ids) < 0
	}
	ties := 0
	for round := range 300 {
		b := setup(t)
		cart := qualify.Cart{Items: []qualify.Item{item("s0", "toy", "acme", "", 1000+100*rng.Int64N(20), 1)}}
		if rng.IntN(2) == 0 {
			cart.Items = append(cart.Items, item("s1", "food", "acme", "", 500+100*rng.Int64N(10), 1))
		}
		n := 2 + rng.IntN(8)
		var keys []string
		for i := range n {
			key := fmt.Sprintf("t%d", i)
			if len(keys) > 0 && rng.IntN(6) == 0 {
				key = keys[rng.IntN(len(keys))]
			} else {
				var s qualify.Spec
				group, limit := []string{"a", "b"}[rng.IntN(2)], 1+rng.IntN(3)
				switch rng.IntN(3) {
				case 0:
					s = percentOff([]int64{1000, 2000}[rng.IntN(2)], 1000, group, limit)
				default:
					s = amountOff([]int64{500, 1000, 1500}[rng.IntN(3)], group, limit)
				}
				if rng.IntN(6) == 0 {
					s.Stacking = qualify.Stacking{}
				}
				if rng.IntN(4) == 0 {
					s.Applicability.Category.Include = []string{"toy"}
				}
				b.template(t, key, s)
				keys = append(keys, key)
			}
			b.give(fmt.Sprintf("c%d", i), key).ExpiresAt = now.Add(time.Duration(1+rng.IntN(3)) * time.Hour)
		}
		in := b.input(cart)
		res, _ := qualify.EvaluateNodes(in, 1<<30)
		var want best
		found, tied := false, false
		for mask := 1; mask < 1<<n; mask++ {
			var cand best
			for i := range n {
				if mask&(1<<i) != 0 {
					cand.ids = append(cand.ids, b.coupons[i].ID)
					cand.exps = append(cand.exps, b.coupons[i].ExpiresAt)
				}
			}
			pick, _, err := qualify.Price(in, cand.ids)
			if err != nil || pick.Discount == 0 {
				continue
			}
			cand.v = pick.Discount
			slices.Sort(cand.ids)
			slices.SortFunc(cand.exps, func(x, y time.Time) int { return x.Compare(y) })
			if found && cand.v == want.v && len(cand.ids) == len(want.ids) {
				tied = true
			}
			if !found || better(cand, want) {
				want, found = cand, true
			}
		}
		desc := fmt.Sprintf("round %d: %s", round, describe(b, cart))
		if !found {
			require.Nil(t, res.Best.Stack, desc)
			continue
		}
		if tied {
			ties++
		}
		require.NotNil(t, res.Best.Stack, desc)
		got := slices.Clone(res.Best.Stack.CouponIDs)
		slices.Sort(got)
		require.Equal(t, want.v, res.Best.Stack.Discount, desc)
		require.Equal(t, want.ids, got, desc)
	}
	t.Logf("%d of 300 wallets had several best stacks of as many coupons", ties)
	require.Positive(t, ties, "the wallets must tie")
}

// TestBestStackWhenTopCouponsShareAnItem: the group's two best coupons by standalone value both
// take from one cheap item, so together they are worth no more than the first; the best stack
// pairs the first with a coupon on the other items. The search starts from that stack (the greedy
// one, since the per-group pick by standalone values is spoilt), so even a search stopped at its
// first node returns it.
func TestBestStackWhenTopCouponsShareAnItem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	onSmall := func(amount int64) qualify.Spec {
		s := amountOff(amount, "shop", 2)
		s.Applicability.Category.Include = []string{"small"}
		return s
	}
	b.template(t, "small100", onSmall(10000))
	b.give("small100", "small100")
	b.template(t, "small75", onSmall(7500))
	b.give("small75", "small75")
	b.template(t, "any65", amountOff(6500, "shop", 2))
	b.give("any65", "any65")
	cart := qualify.Cart{Items: []qualify.Item{
		item("s", "small", "acme", "", 8878, 1),
		item("l", "large", "acme", "", 100000, 1),
	}}
	res := b.evaluate(t, cart)
	require.Equal(t, &qualify.Pick{CouponIDs: []string{"small100", "any65"}, Discount: 8878 + 6500}, res.Best.Stack)
	require.Equal(t, qualify.ReasonLimitReached, outcome(t, res, "small75").Reasons[0].Code)

	stopped, _ := qualify.EvaluateNodes(b.input(cart), 1)
	require.Equal(t, res.Best.Stack, stopped.Best.Stack, "the search starts from the best stack")
}
