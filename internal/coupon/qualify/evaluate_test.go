package qualify_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/seedtest"
)

func TestEvaluateTypes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func(s *qualify.Spec)
		want int64
	}{
		{"amount off", func(s *qualify.Spec) {}, 3000},
		{"amount off above the cart", func(s *qualify.Spec) { s.Amount = 400000 }, shopTotal},
		{"percent off, floor", func(s *qualify.Spec) {
			s.Type, s.Amount, s.PercentBP, s.Cap = qualify.TypePercentOff, 0, 1000, 100000
		}, 31599},
		{"percent off, capped", func(s *qualify.Spec) {
			s.Type, s.Amount, s.PercentBP, s.Cap = qualify.TypePercentOff, 0, 1000, 20000
		}, 20000},
		{"percent off, 100%", func(s *qualify.Spec) {
			s.Type, s.Amount, s.PercentBP, s.Cap = qualify.TypePercentOff, 0, 10000, qualify.MaxAmount
		}, shopTotal},
		{"seller bonus, fixed", func(s *qualify.Spec) { s.Type, s.Amount = qualify.TypeSellerBonus, 500 }, 500},
		{"seller bonus, fixed above the cart", func(s *qualify.Spec) { s.Type, s.Amount = qualify.TypeSellerBonus, 1_000_000 }, 1_000_000},
		{"seller bonus, percent", func(s *qualify.Spec) {
			s.Type, s.Amount, s.PercentBP, s.Cap = qualify.TypeSellerBonus, 0, 300, 100000
		}, 9479},
		{"seller bonus, percent capped", func(s *qualify.Spec) {
			s.Type, s.Amount, s.PercentBP, s.Cap = qualify.TypeSellerBonus, 0, 300, 5000
		}, 5000},
		{"percent off on eligible items only", func(s *qualify.Spec) {
			s.Type, s.Amount, s.PercentBP, s.Cap = qualify.TypePercentOff, 0, 5000, 100000
			s.Applicability.Category.Include = []string{"accessory"}
		}, 7998}, // half of 15997, floor
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			s := spec()
			tc.edit(&s)
			b.template(t, "tpl", s)
			b.give("c1", "tpl")
			res := b.evaluate(t, shopCart())
			o := outcome(t, res, "c1")
			require.True(t, o.Applicable, o.Reasons)
			require.Empty(t, o.Reasons)
			require.Equal(t, tc.want, o.Discount)
			require.Equal(t, s.Type, o.Type)
			require.Equal(t, "tpl", o.Template)
			require.Equal(t, int64(shopTotal), res.Amount)
			require.Equal(t, &qualify.Pick{CouponIDs: []string{"c1"}, Discount: tc.want}, res.Best.Single)
			require.Equal(t, res.Best.Single, res.Best.Stack)
		})
	}
}

func TestEvaluateSplit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.template(t, "thirty", spec())
	b.give("c1", "thirty")
	s := spec()
	s.Amount = 1000
	s.Applicability.Category.Include = []string{"accessory"}
	b.template(t, "acc", s)
	b.give("c2", "acc")
	c := qualify.Cart{Items: []qualify.Item{item("a", "x", "", "", 100, 1), item("b", "x", "", "", 100, 1), item("c", "x", "", "", 100, 1)}}
	res := b.evaluate(t, c)
	// 3000 over three equal items of 100: capped at 300, 100 each.
	require.Equal(t, []qualify.Share{{Index: 0, SKU: "a", Discount: 100}, {Index: 1, SKU: "b", Discount: 100}, {Index: 2, SKU: "c", Discount: 100}},
		outcome(t, res, "c1").Split)

	res = b.evaluate(t, shopCart())
	// 3000 over 300000, 10000, 5997: 2848.13…, 94.94…, 56.93… → 2848, 94, 56; the two cents left go to
	// the largest remainders.
	require.Equal(t, []qualify.Share{{Index: 0, SKU: "p1", Discount: 2848}, {Index: 1, SKU: "c1", Discount: 95}, {Index: 2, SKU: "k1", Discount: 57}},
		outcome(t, res, "c1").Split)
	// Only the accessories share the accessory coupon.
	require.Equal(t, []qualify.Share{{Index: 1, SKU: "c1", Discount: 625}, {Index: 2, SKU: "k1", Discount: 375}},
		outcome(t, res, "c2").Split)
}

func TestEvaluateThreshold(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		threshold int64
		scope     string
		include   []string
		shortfall int64
		message   string
	}{
		{"cart scope met", shopTotal, qualify.ScopeCart, nil, 0, ""},
		{"cart scope short", 400000, qualify.ScopeCart, nil, 400000 - shopTotal, "¥840.03 more for ¥30.00 off"},
		{"cart scope counts every item", 20000, qualify.ScopeCart, []string{"accessory"}, 0, ""},
		{"applicable scope short", 20000, qualify.ScopeApplicable, []string{"accessory"}, 20000 - 15997,
			"¥40.03 more of eligible items for ¥30.00 off"},
		{"applicable scope met", 15997, qualify.ScopeApplicable, []string{"accessory"}, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			s := spec()
			s.Threshold = qualify.Threshold{Amount: tc.threshold, Scope: tc.scope}
			s.Applicability.Category.Include = tc.include
			b.template(t, "tpl", s)
			b.give("c1", "tpl")
			o := outcome(t, b.evaluate(t, shopCart()), "c1")
			if tc.shortfall == 0 {
				require.True(t, o.Applicable, o.Reasons)
				require.Equal(t, int64(3000), o.Discount)
				return
			}
			require.False(t, o.Applicable)
			require.Equal(t, []qualify.Reason{{Code: qualify.ReasonBelowThreshold, Message: tc.message, Shortfall: tc.shortfall}}, o.Reasons)
			require.Zero(t, o.Discount)
		})
	}
}

func TestEvaluateThresholdMessages(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		edit   func(s *qualify.Spec)
		en, zh string
	}{
		{"amount off", func(s *qualify.Spec) {}, "¥12.00 more for ¥30.00 off", "再买¥12.00可减¥30.00"},
		{"amount off, eligible items", func(s *qualify.Spec) { s.Threshold.Scope = qualify.ScopeApplicable },
			"¥12.00 more of eligible items for ¥30.00 off", "再买¥12.00指定商品可减¥30.00"},
		{"percent off", func(s *qualify.Spec) {
			s.Type, s.Amount, s.PercentBP, s.Cap = qualify.TypePercentOff, 0, 1250, 5000
		}, "¥12.00 more for 12.5% off", "再买¥12.00可减12.5%"},
		{"seller bonus", func(s *qualify.Spec) { s.Type, s.Amount = qualify.TypeSellerBonus, 500 },
			"¥12.00 more for a ¥5.00 bonus", "再卖¥12.00可加价¥5.00"},
		{"seller bonus percent", func(s *qualify.Spec) {
			s.Type, s.Amount, s.PercentBP, s.Cap = qualify.TypeSellerBonus, 0, 300, 5000
		}, "¥12.00 more for a 3% bonus", "再卖¥12.00可加价3%"},
		{"dollars", func(s *qualify.Spec) { s.Currency = "USD" }, "$12.00 more for $30.00 off", "再买$12.00可减$30.00"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := spec()
			s.Threshold.Amount = 10000
			tc.edit(&s)
			c := qualify.Cart{Currency: s.Currency, Items: []qualify.Item{item("a", "", "", "", 8800, 1)}}
			for lang, want := range map[string]string{"": tc.en, "en": tc.en, "zh-CN": tc.zh} {
				b := setup(t)
				b.lang = lang
				b.template(t, "tpl", s)
				b.give("c1", "tpl")
				o := outcome(t, b.evaluate(t, c), "c1")
				require.Equal(t, []qualify.Reason{{Code: qualify.ReasonBelowThreshold, Message: want, Shortfall: 1200}}, o.Reasons)
			}
		})
	}
}

func TestEvaluateReasons(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		edit     func(s *qualify.Spec)
		coupon   func(c *qualify.Coupon)
		cart     func(c *qualify.Cart)
		reasons  []qualify.Reason
		reasonZH []string
	}{
		{name: "business line", edit: func(s *qualify.Spec) { s.Applicability.BusinessLine.Include = []string{"travel"} },
			reasons: []qualify.Reason{{Code: "business_line", Message: `not valid for business line "retail"`}}, reasonZH: []string{`不适用于业务线"retail"`}},
		{name: "channel excluded", edit: func(s *qualify.Spec) { s.Applicability.Channel.Exclude = []string{"app"} },
			reasons: []qualify.Reason{{Code: "channel", Message: `not valid for channel "app"`}}, reasonZH: []string{`不适用于渠道"app"`}},
		{name: "channel missing from the cart", edit: func(s *qualify.Spec) { s.Applicability.Channel.Include = []string{"app"} },
			cart:    func(c *qualify.Cart) { c.Channel = "" },
			reasons: []qualify.Reason{{Code: "channel", Message: `not valid for this channel`}}, reasonZH: []string{`不适用于该渠道`}},
		{name: "both cart dimensions", edit: func(s *qualify.Spec) {
			s.Applicability.BusinessLine.Include = []string{"travel"}
			s.Applicability.Channel.Include = []string{"web"}
		}, reasons: []qualify.Reason{{Code: "business_line", Message: `not valid for business line "retail"`}, {Code: "channel", Message: `not valid for channel "app"`}}},
		{name: "category", edit: func(s *qualify.Spec) { s.Applicability.Category.Include = []string{"food"} },
			reasons: []qualify.Reason{{Code: "category", Message: `not valid for category "phone"`}}, reasonZH: []string{`不适用于品类"phone"`}},
		{name: "brand", edit: func(s *qualify.Spec) { s.Applicability.Brand.Include = []string{"zeta"} },
			reasons: []qualify.Reason{{Code: "brand", Message: `not valid for brand "acme"`}}, reasonZH: []string{`不适用于品牌"acme"`}},
		{name: "model", edit: func(s *qualify.Spec) { s.Applicability.Model.Include = []string{"x9"} },
			reasons: []qualify.Reason{{Code: "model", Message: `not valid for model "x1"`}}},
		{name: "sku excluded", edit: func(s *qualify.Spec) { s.Applicability.SKU.Exclude = []string{"p1", "c1", "k1"} },
			reasons: []qualify.Reason{{Code: "sku", Message: `not valid for SKU "p1"`}}, reasonZH: []string{`不适用于商品"p1"`}},
		{name: "first failing dimension per item", edit: func(s *qualify.Spec) {
			s.Applicability.Category.Include = []string{"phone"}
			s.Applicability.Brand.Include = []string{"other"}
		}, reasons: []qualify.Reason{{Code: "category", Message: `not valid for category "accessory"`}, {Code: "brand", Message: `not valid for brand "acme"`}}},
		{name: "exclude wins", edit: func(s *qualify.Spec) {
			s.Applicability.Category.Include = []string{"phone", "accessory"}
			s.Applicability.Category.Exclude = []string{"x"}
			s.Applicability.SKU.Exclude = []string{"p1", "c1", "k1"}
		}, reasons: []qualify.Reason{{Code: "sku", Message: `not valid for SKU "p1"`}}},
		{name: "currency", edit: func(s *qualify.Spec) { s.Currency = "USD" },
			reasons: []qualify.Reason{{Code: "currency", Message: "for USD only"}}, reasonZH: []string{"仅限USD"}},
		{name: "not started", coupon: func(c *qualify.Coupon) { c.StartsAt = now.Add(time.Minute) },
			reasons: []qualify.Reason{{Code: "not_started", Message: "valid from 2026-03-10 09:01 UTC"}}, reasonZH: []string{"2026-03-10 09:01 UTC起可用"}},
		{name: "expired", coupon: func(c *qualify.Coupon) { c.ExpiresAt = now.Add(-time.Minute) },
			reasons: []qualify.Reason{{Code: "expired", Message: "expired at 2026-03-10 08:59 UTC"}}, reasonZH: []string{"已于2026-03-10 08:59 UTC过期"}},
		{name: "expires now", coupon: func(c *qualify.Coupon) { c.ExpiresAt = now },
			reasons: []qualify.Reason{{Code: "expired", Message: "expired at 2026-03-10 09:00 UTC"}}},
		{name: "expired and wrong category: both hard reasons, no threshold hint", edit: func(s *qualify.Spec) {
			s.Applicability.Category.Include = []string{"food"}
			s.Threshold.Amount = 1_000_000
		}, coupon: func(c *qualify.Coupon) { c.ExpiresAt = now.Add(-time.Minute) },
			reasons: []qualify.Reason{{Code: "expired", Message: "expired at 2026-03-10 08:59 UTC"}, {Code: "category", Message: `not valid for category "phone"`}}},
		{name: "template missing", coupon: func(c *qualify.Coupon) { c.TemplateVersion = 2 },
			reasons: []qualify.Reason{{Code: "template_missing", Message: "the coupon's template is not available"}}, reasonZH: []string{"券模板不可用"}},
		{name: "eligible items are free", edit: func(s *qualify.Spec) { s.Applicability.SKU.Include = []string{"k1"} },
			cart:    func(c *qualify.Cart) { c.Items[2].UnitPrice = 0 },
			reasons: []qualify.Reason{{Code: "no_applicable_item", Message: "no eligible item has a price"}}},
		{name: "condition false", edit: func(s *qualify.Spec) { s.Condition = "user.level >= 3" },
			reasons: []qualify.Reason{{Code: "condition", Message: "the coupon's conditions are not met"}}, reasonZH: []string{"不满足使用条件"}},
		{name: "condition that cannot be evaluated", edit: func(s *qualify.Spec) { s.Condition = "user.vip == true" },
			reasons: []qualify.Reason{{Code: "condition", Message: "the coupon's conditions are not met"}}},
		{name: "condition false hides the threshold hint", edit: func(s *qualify.Spec) {
			s.Condition = "user.level >= 3"
			s.Threshold.Amount = 1_000_000
		}, reasons: []qualify.Reason{{Code: "condition", Message: "the coupon's conditions are not met"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, lang := range []string{"en", "zh-CN"} {
				b := setup(t)
				b.lang = lang
				b.user = map[string]any{"level": int64(2)}
				s := spec()
				if tc.edit != nil {
					tc.edit(&s)
				}
				b.template(t, "tpl", s)
				c := b.give("c1", "tpl")
				if tc.coupon != nil {
					tc.coupon(c)
				}
				cart := shopCart()
				if tc.cart != nil {
					tc.cart(&cart)
				}
				o := outcome(t, b.evaluate(t, cart), "c1")
				require.False(t, o.Applicable)
				require.Zero(t, o.Discount)
				require.Empty(t, o.Split)
				if lang == "en" {
					require.Equal(t, tc.reasons, o.Reasons)
					continue
				}
				require.Len(t, o.Reasons, len(tc.reasons))
				for i, r := range o.Reasons {
					require.Equal(t, tc.reasons[i].Code, r.Code)
					if i < len(tc.reasonZH) {
						require.Equal(t, tc.reasonZH[i], r.Message)
					}
				}
			}
		})
	}
}

func TestEvaluateCondition(t *testing.T) {
	t.Parallel()
	cases := []struct {
		cond string
		user map[string]any
		want bool
	}{
		{"user.level >= 3", map[string]any{"level": int64(3)}, true},
		{"user.level >= 3", map[string]any{"level": 2.0}, false},
		{"user.level >= 3", nil, false},
		{`cart.items.exists(i, i.category == "phone" && i.amount >= 300000)`, nil, true},
		{`cart.items.exists(i, i.brand == "zeta")`, nil, false},
		{`cart.amount > 300000 && cart.channel == "app" && cart.currency == "CNY"`, nil, true},
		{`size(cart.items) == 3 && cart.business_line == "retail"`, nil, true},
		{`has(user.tags) && "new" in user.tags`, map[string]any{"tags": []any{"new"}}, true},
		{`has(user.tags) && "new" in user.tags`, map[string]any{}, false},
		{`cart.items[0].model == "x1" && cart.items[1].quantity == 2 && cart.items[2].unit_price == 1999`, nil, true},
		{`cart.items[1] == {"sku": "c1", "category": "accessory", "brand": "acme", "model": "",
			"unit_price": 5000, "quantity": 2, "amount": 10000}`, nil, true},
		{`type(cart.items[0].sku) == string && type(cart.amount) == int && "currency" in cart`, nil, true},
		{`cart.items.all(i, i.amount == i.unit_price * i.quantity)`, nil, true},
	}
	for _, tc := range cases {
		b := setup(t)
		b.user = tc.user
		s := spec()
		s.Condition = tc.cond
		b.template(t, "tpl", s)
		b.give("c1", "tpl")
		o := outcome(t, b.evaluate(t, shopCart()), "c1")
		require.Equal(t, tc.want, o.Applicable, "%s with %v: %v", tc.cond, tc.user, o.Reasons)
	}
}

// TestEvaluateSharedCondition gives three templates one condition and a fourth another: an
// evaluation answers each condition once, and every template gets its condition's answer.
func TestEvaluateSharedCondition(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i, cond := range []string{"cart.amount > 300000", "cart.amount > 300000", "cart.amount > 300000",
		"cart.amount > 400000"} {
		s := spec()
		s.Condition = cond
		key := fmt.Sprintf("t%d", i)
		b.template(t, key, s)
		b.give("c"+key, key)
	}
	res := b.evaluate(t, shopCart())
	for _, id := range []string{"ct0", "ct1", "ct2"} {
		require.True(t, outcome(t, res, id).Applicable, id)
	}
	require.Equal(t, []string{qualify.ReasonCondition}, codes(outcome(t, res, "ct3")))
}

// TestEvaluateConditionCartsInTurn evaluates one condition on carts of different sizes in turn:
// the condition's variables are refilled for each evaluation, never left from an earlier cart.
func TestEvaluateConditionCartsInTurn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := spec()
	s.Condition = `size(cart.items) == 3 && cart.items.exists(i, i.sku == "p1" && i.amount == 300000) && cart.amount == 315997`
	b.template(t, "tpl", s)
	b.give("c1", "tpl")
	one := qualify.Cart{BusinessLine: "retail", Channel: "app", Items: []qualify.Item{item("c1", "accessory", "acme", "", 5000, 2)}}
	phone := shopCart()
	phone.Items[0].UnitPrice = 250000
	for i, tc := range []struct {
		cart qualify.Cart
		want bool
	}{{shopCart(), true}, {one, false}, {shopCart(), true}, {phone, false}, {shopCart(), true}} {
		o := outcome(t, b.evaluate(t, tc.cart), "c1")
		require.Equal(t, tc.want, o.Applicable, "cart %d: %v", i, o.Reasons)
	}
}

func TestEvaluateWindow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.template(t, "tpl", spec())
	for _, c := range []struct {
		id       string
		from, to time.Time
		want     string
	}{
		{"before", now.Add(time.Second), now.Add(time.Hour), qualify.ReasonNotStarted},
		{"starts now", now, now.Add(time.Hour), ""},
		{"last second", now.Add(-time.Hour), now.Add(time.Second), ""},
		{"ends now", now.Add(-time.Hour), now, qualify.ReasonExpired},
		{"open", time.Time{}, time.Time{}, ""},
	} {
		b.coupons = append(b.coupons, qualify.Coupon{ID: c.id, TemplateKey: "tpl", TemplateVersion: 1, StartsAt: c.from, ExpiresAt: c.to})
		o := outcome(t, qualify.Evaluate(b.input(shopCart())), c.id)
		if c.want == "" {
			require.True(t, o.Applicable, c.id)
		} else {
			require.Equal(t, []string{c.want}, codes(o), c.id)
		}
	}
}

func TestEvaluateSharesTemplateWork(t *testing.T) {
	t.Parallel()
	// Many coupons of one template, with different windows: each gets its own answer.
	b := setup(t)
	s := spec()
	s.Threshold.Amount = 500000
	b.template(t, "tpl", s)
	b.give("ok", "tpl")
	b.give("old", "tpl").ExpiresAt = now.Add(-time.Hour)
	b.give("ok2", "tpl")
	res := b.evaluate(t, shopCart())
	require.Equal(t, []string{qualify.ReasonBelowThreshold}, codes(outcome(t, res, "ok")))
	require.Equal(t, []string{qualify.ReasonExpired}, codes(outcome(t, res, "old")))
	require.Equal(t, []string{qualify.ReasonBelowThreshold}, codes(outcome(t, res, "ok2")))
	require.Nil(t, res.Best.Single)
	require.Nil(t, res.Best.Stack)
}

func TestEvaluateEmptyWallet(t *testing.T) {
	t.Parallel()
	res := setup(t).evaluate(t, shopCart())
	require.Empty(t, res.Coupons)
	require.Equal(t, int64(shopTotal), res.Amount)
	require.Nil(t, res.Best.Single)
	require.Nil(t, res.Best.Stack)
}

// TestEvaluateEligibleItemsLargeCart compares the eligible items of random item rules with the
// reference reading of the rules on carts of up to 150 items (their sets take several words): an
// applicable coupon splits over exactly the items every rule admits, and a coupon with none names,
// in dimension order, the dimensions that turned an item away first.
func TestEvaluateEligibleItemsLargeCart(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seedtest.Seed(t), 23))
	vals := func(prefix string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		return out
	}
	cats, brands, models, skus := vals("cat", 6), vals("br", 8), vals("m", 10), vals("s", 40)
	pickSome := func(values []string) []string {
		var out []string
		for _, i := range rng.Perm(len(values))[:1+rng.IntN(3)] {
			out = append(out, values[i])
		}
		return out
	}
	dimCodes := []string{qualify.ReasonCategory, qualify.ReasonBrand, qualify.ReasonModel, qualify.ReasonSKU}
	for round := range 40 {
		var cart qualify.Cart
		for range 1 + rng.IntN(150) {
			cart.Items = append(cart.Items, item(skus[rng.IntN(40)], cats[rng.IntN(6)], brands[rng.IntN(8)],
				models[rng.IntN(10)], 100+rng.Int64N(1000), 1))
		}
		b := setup(t)
		specs := map[string]qualify.Spec{}
		for i := range 30 {
			s := spec()
			s.Amount = 1
			a := &s.Applicability
			for d, r := range []*qualify.Rule{&a.Category, &a.Brand, &a.Model, &a.SKU} {
				values := [][]string{cats, brands, models, skus}[d]
				switch rng.IntN(4) {
				case 0:
					r.Include = pickSome(values)
				case 1:
					r.Exclude = pickSome(values)
				}
			}
			key := fmt.Sprintf("t%d", i)
			b.template(t, key, s)
			b.give("c"+key, key)
			specs["c"+key] = s
		}
		res := b.evaluate(t, cart)
		for _, o := range res.Coupons {
			a := specs[o.CouponID].Applicability
			var elig []int
			var turned [4]bool
			for i, it := range cart.Items {
				ok := true
				for d, pass := range []bool{ruleAdmits(a.Category, it.Category), ruleAdmits(a.Brand, it.Brand),
					ruleAdmits(a.Model, it.Model), ruleAdmits(a.SKU, it.SKU)} {
					if !pass {
						turned[d], ok = true, false
						break
					}
				}
				if ok {
					elig = append(elig, i)
				}
			}
			desc := fmt.Sprintf("round %d, coupon %s", round, o.CouponID)
			if len(elig) > 0 {
				require.True(t, o.Applicable, desc)
				got := make([]int, len(o.Split))
				for k, sh := range o.Split {
					got[k] = sh.Index
				}
				require.Equal(t, elig, got, desc)
				continue
			}
			var want []string
			for d, yes := range turned {
				if yes {
					want = append(want, dimCodes[d])
				}
			}
			require.Equal(t, want, codes(o), desc)
		}
	}
}
