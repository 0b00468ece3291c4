package qualify_test

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/problem"
)

func TestValidateCart(t *testing.T) {
	t.Parallel()
	good := func() qualify.Cart { return shopCart() }
	require.NoError(t, qualify.ValidateCart(good()))
	free := good()
	free.Items[0].UnitPrice = 0
	require.NoError(t, qualify.ValidateCart(free), "a free item is fine")
	wide := good()
	wide.Items[0].SKU, wide.Channel = strings.Repeat("货", qualify.MaxSKULength), strings.Repeat("渠", qualify.MaxCartValueLength)
	require.NoError(t, qualify.ValidateCart(wide), "lengths count characters, not bytes")

	many := make([]qualify.Item, qualify.MaxItems+1)
	for i := range many {
		many[i] = item("s", "", "", "", 1, 1)
	}
	cases := []struct {
		name  string
		edit  func(c *qualify.Cart)
		paths []string
	}{
		{"no items", func(c *qualify.Cart) { c.Items = nil }, []string{"cart.items"}},
		{"too many items", func(c *qualify.Cart) { c.Items = many }, []string{"cart.items"}},
		{"negative price", func(c *qualify.Cart) { c.Items[1].UnitPrice = -1 }, []string{"cart.items[1].unit_price"}},
		{"zero quantity", func(c *qualify.Cart) { c.Items[2].Quantity = 0 }, []string{"cart.items[2].quantity"}},
		{"quantity too large", func(c *qualify.Cart) { c.Items[0].Quantity = qualify.MaxQuantity + 1 }, []string{"cart.items[0].quantity"}},
		{"sku missing", func(c *qualify.Cart) { c.Items[0].SKU = "" }, []string{"cart.items[0].sku"}},
		{"sku too long", func(c *qualify.Cart) { c.Items[0].SKU = strings.Repeat("s", 129) }, []string{"cart.items[0].sku"}},
		{"category too long", func(c *qualify.Cart) { c.Items[0].Category = strings.Repeat("s", 129) }, []string{"cart.items[0].category"}},
		{"unknown currency", func(c *qualify.Cart) { c.Currency = "XYZ" }, []string{"cart.currency"}},
		{"business line too long", func(c *qualify.Cart) { c.BusinessLine = strings.Repeat("b", 65) }, []string{"cart.business_line"}},
		{"channel too long", func(c *qualify.Cart) { c.Channel = strings.Repeat("b", 65) }, []string{"cart.channel"}},
		{"line overflows", func(c *qualify.Cart) { c.Items[0].UnitPrice, c.Items[0].Quantity = math.MaxInt64/2, 3 }, []string{"cart.items[0].unit_price"}},
		{"total overflows", func(c *qualify.Cart) {
			c.Items[0].UnitPrice, c.Items[1].UnitPrice, c.Items[1].Quantity = math.MaxInt64/2, math.MaxInt64/2, 1
		}, []string{"cart.items"}},
		{"every problem", func(c *qualify.Cart) {
			c.Currency = "yen"
			c.Items[0].UnitPrice, c.Items[1].Quantity, c.Items[2].SKU = -5, -1, ""
		}, []string{"cart.currency", "cart.items[0].unit_price", "cart.items[1].quantity", "cart.items[2].sku"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := good()
			tc.edit(&c)
			requireFields(t, qualify.ValidateCart(c), problem.KindInvalid, tc.paths...)
		})
	}
}

// TestEvaluateBadCartDoesNotPanic: Evaluate expects a valid cart, but a bad one must not crash a
// node.
func TestEvaluateBadCartDoesNotPanic(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := spec()
	s.Type, s.Amount, s.PercentBP, s.Cap = qualify.TypePercentOff, 0, 5000, qualify.MaxAmount
	b.template(t, "half", s)
	b.give("a", "half")
	b.template(t, "thirty", spec())
	b.give("b", "thirty")
	for _, c := range []qualify.Cart{
		{},
		{Items: []qualify.Item{item("x", "", "", "", -5, 3)}},
		{Items: []qualify.Item{item("x", "", "", "", math.MaxInt64, 3), item("y", "", "", "", math.MaxInt64, math.MaxInt64)}},
		{Currency: "nope", Items: []qualify.Item{item("x", "", "", "", 100, -1)}},
	} {
		res := qualify.Evaluate(b.input(c))
		require.Len(t, res.Coupons, 2)
		for _, o := range res.Coupons {
			var sum int64
			for _, s := range o.Split {
				require.GreaterOrEqual(t, s.Discount, int64(0))
				sum += s.Discount
			}
			require.Equal(t, o.Discount, sum)
		}
	}
}
