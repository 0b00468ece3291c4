package qualify_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/problem"
)

// priceBundle is a wallet with every kind of coupon for Price.
func priceBundle(t *testing.T) *testBundle {
	t.Helper()
	b := setup(t)
	b.template(t, "excl", amountOff(3000, "", 1))
	b.give("excl", "excl")
	b.template(t, "plat", amountOff(2000, "platform", 1))
	b.give("plat", "plat")
	b.template(t, "plat2", amountOff(1000, "platform", 1))
	b.give("plat2", "plat2")
	b.template(t, "pct", percentOff(1000, 100000, "shop", 2))
	b.give("pct", "pct")
	b.give("pct-again", "pct")
	b.template(t, "bonus", bonus(500, "sell", 1))
	b.give("bonus", "bonus")
	s := spec()
	s.Threshold.Amount = 1_000_000
	b.template(t, "far", s)
	b.give("far", "far")
	b.give("old", "plat2").ExpiresAt = now.Add(-time.Hour)
	return b
}

func TestPrice(t *testing.T) {
	t.Parallel()
	b := priceBundle(t)
	cart := shopCart()
	pick, outs, err := qualify.Price(b.input(cart), []string{"plat", "pct"})
	require.NoError(t, err)
	// 10 % first (31599), then 2000 off what is left.
	require.Equal(t, qualify.Pick{CouponIDs: []string{"pct", "plat"}, Discount: 31599 + 2000}, pick)
	require.Len(t, outs, 2)
	require.Equal(t, "plat", outs[0].CouponID, "outcomes in the order asked")
	require.Equal(t, int64(2000), outs[0].Discount)
	require.Equal(t, int64(31599), outs[1].Discount)
	requireStackedSplit(t, cart, outs)

	pick, outs, err = qualify.Price(b.input(cart), []string{"excl"})
	require.NoError(t, err)
	require.Equal(t, qualify.Pick{CouponIDs: []string{"excl"}, Discount: 3000}, pick)
	require.Equal(t, outcome(t, b.evaluate(t, cart), "excl").Split, outs[0].Split, "alone, the split is the coupon's own")

	pick, _, err = qualify.Price(b.input(cart), []string{"bonus"})
	require.NoError(t, err)
	require.Equal(t, qualify.Pick{CouponIDs: []string{"bonus"}, Discount: 500}, pick)
}

func TestPriceExhaustsItems(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.template(t, "a", amountOff(8000, "a", 1))
	b.give("a", "a")
	b.template(t, "b", amountOff(5000, "b", 1))
	b.give("b", "b")
	b.template(t, "c", amountOff(5000, "c", 1))
	b.give("c", "c")
	cart := qualify.Cart{Items: []qualify.Item{item("x", "", "", "", 6000, 1), item("y", "", "", "", 4000, 1)}}
	pick, outs, err := qualify.Price(b.input(cart), []string{"c", "b", "a"})
	require.NoError(t, err)
	require.Equal(t, qualify.Pick{CouponIDs: []string{"a", "b", "c"}, Discount: 10000}, pick)
	require.Equal(t, []int64{0, 2000, 8000}, []int64{outs[0].Discount, outs[1].Discount, outs[2].Discount},
		"a coupon that comes after the items are used up is worth nothing")
	requireStackedSplit(t, cart, outs)
}

func TestPriceRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		ids    []string
		fields map[string]string
	}{
		{"unknown coupon", []string{"plat", "nope"}, map[string]string{"coupon_ids[1]": "not in the wallet"}},
		{"listed twice", []string{"plat", "pct", "plat"}, map[string]string{"coupon_ids[2]": "listed twice (first at [0])"}},
		{"not applicable", []string{"far"}, map[string]string{"coupon_ids[0]": "¥6840.03 more for ¥30.00 off"}},
		{"expired", []string{"old"}, map[string]string{"coupon_ids[0]": "expired at 2026-03-10 08:00 UTC"}},
		{"exclusive with others", []string{"plat", "excl"}, map[string]string{"coupon_ids[1]": "exclusive: it must be used alone"}},
		{"group full", []string{"plat", "pct", "plat2"}, map[string]string{"coupon_ids[2]": `group "platform" allows 1 per order`}},
		{"one per template", []string{"pct", "pct-again"}, map[string]string{"coupon_ids[1]": "one coupon per template per order"}},
		{"discount and bonus", []string{"plat", "bonus"}, map[string]string{"coupon_ids[1]": "discounts and seller bonuses cannot be combined"}},
		{"every coupon named", []string{"excl", "plat", "plat2", "bonus"}, map[string]string{
			"coupon_ids[0]": "exclusive: it must be used alone",
			"coupon_ids[2]": `group "platform" allows 1 per order`,
			"coupon_ids[3]": "discounts and seller bonuses cannot be combined"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := priceBundle(t)
			_, _, err := qualify.Price(b.input(shopCart()), tc.ids)
			paths := make([]string, 0, len(tc.fields))
			for p := range tc.fields {
				paths = append(paths, p)
			}
			pe := requireFields(t, err, problem.KindConflict, paths...)
			require.Equal(t, qualify.CodeRefused, pe.Slug())
			for p, msg := range tc.fields {
				require.Equal(t, msg, fieldMessage(t, pe, p))
			}
		})
	}

	b := priceBundle(t)
	_, _, err := qualify.Price(b.input(shopCart()), nil)
	requireFields(t, err, problem.KindInvalid, "coupon_ids")

	b.lang = "zh-CN"
	_, _, err = qualify.Price(b.input(shopCart()), []string{"plat", "excl"})
	pe := requireFields(t, err, problem.KindConflict, "coupon_ids[1]")
	require.Equal(t, "该券不可与其他券同时使用", fieldMessage(t, pe, "coupon_ids[1]"))
}
