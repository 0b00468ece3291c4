package qualify_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/problem"
)

// now is the evaluations' time: 2026-03-10 09:00 UTC.
var now = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)

// testBundle is a wallet under construction: compiled templates and the coupons given.
type testBundle struct {
	templates map[string][]*qualify.Template // by key, every version
	coupons   []qualify.Coupon
	user      map[string]any
	lang      string
	// pool, when set, holds the templates instead (a realistic tenant).
	pool *tenantPool
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	return &testBundle{templates: map[string][]*qualify.Template{}}
}

// spec is a valid amount_off spec (¥30 off, no threshold, 30 days, exclusive) to adjust.
func spec() qualify.Spec {
	return qualify.Spec{
		Type: qualify.TypeAmountOff, Amount: 3000,
		Validity: qualify.Validity{Days: 30},
		Title:    map[string]string{"en": "¥30 off", "zh-CN": "立减30元"},
	}
}

// template compiles s as version 1 of key.
func (b *testBundle) template(t *testing.T, key string, s qualify.Spec) *qualify.Template {
	t.Helper()
	return b.version(t, key, 1, s)
}

func (b *testBundle) version(t *testing.T, key string, version int, s qualify.Spec) *qualify.Template {
	t.Helper()
	tp, err := qualify.Compile(key, version, s)
	require.NoError(t, err)
	b.templates[key] = append(b.templates[key], tp)
	return tp
}

// give adds a coupon of version 1 of key, valid from an hour ago for ten days.
func (b *testBundle) give(id, key string) *qualify.Coupon {
	b.coupons = append(b.coupons, qualify.Coupon{ID: id, TemplateKey: key, TemplateVersion: 1,
		StartsAt: now.Add(-time.Hour), ExpiresAt: now.Add(10 * 24 * time.Hour)})
	return &b.coupons[len(b.coupons)-1]
}

func (b *testBundle) lookup(key string, version int) (*qualify.Template, bool) {
	for _, tp := range b.templates[key] {
		if tp.Version == version {
			return tp, true
		}
	}
	return nil, false
}

func (b *testBundle) input(c qualify.Cart) qualify.Input {
	lookup := b.lookup
	if b.pool != nil {
		lookup = b.pool.lookup
	}
	return qualify.Input{Now: now, Cart: c, Coupons: b.coupons, Templates: lookup, User: b.user, Lang: b.lang}
}

func (b *testBundle) evaluate(t *testing.T, c qualify.Cart) qualify.Result {
	t.Helper()
	require.NoError(t, qualify.ValidateCart(c))
	res := qualify.Evaluate(b.input(c))
	require.Len(t, res.Coupons, len(b.coupons))
	for _, o := range res.Coupons {
		requireSplit(t, c, o)
	}
	return res
}

// outcome finds a coupon's outcome.
func outcome(t *testing.T, res qualify.Result, id string) qualify.Outcome {
	t.Helper()
	for _, o := range res.Coupons {
		if o.CouponID == id {
			return o
		}
	}
	require.Failf(t, "no outcome", "coupon %s", id)
	return qualify.Outcome{}
}

// codes lists an outcome's reason codes.
func codes(o qualify.Outcome) []string {
	out := make([]string, len(o.Reasons))
	for i, r := range o.Reasons {
		out[i] = r.Code
	}
	return out
}

// requireSplit checks an outcome's split: shares sum to the discount, none is negative, a discount
// share never exceeds its item, and shares point at real items.
func requireSplit(t *testing.T, c qualify.Cart, o qualify.Outcome) {
	t.Helper()
	if !o.Applicable {
		require.Empty(t, o.Split, o.CouponID)
		require.NotEmpty(t, o.Reasons, o.CouponID)
		return
	}
	var sum int64
	for _, s := range o.Split {
		require.GreaterOrEqual(t, s.Discount, int64(0), o.CouponID)
		require.Less(t, s.Index, len(c.Items))
		require.Equal(t, c.Items[s.Index].SKU, s.SKU)
		if o.Type != qualify.TypeSellerBonus {
			require.LessOrEqual(t, s.Discount, c.Items[s.Index].UnitPrice*c.Items[s.Index].Quantity, o.CouponID)
		}
		sum += s.Discount
	}
	require.Equal(t, o.Discount, sum, "coupon %s: the split must sum to the discount", o.CouponID)
}

// requireFields asserts that err is a problem of kind with exactly these field paths.
func requireFields(t *testing.T, err error, kind problem.Kind, paths ...string) *problem.Error {
	t.Helper()
	require.Error(t, err)
	pe, ok := problem.As(err)
	require.True(t, ok, "want a problem, got %v", err)
	require.Equal(t, kind, pe.Kind, err.Error())
	got := make([]string, len(pe.Fields))
	for i, f := range pe.Fields {
		got[i] = f.Path
	}
	slices.Sort(got)
	want := slices.Clone(paths)
	slices.Sort(want)
	require.Equal(t, want, got, err.Error())
	return pe
}

// fieldMessage is the message of the field at path.
func fieldMessage(t *testing.T, pe *problem.Error, path string) string {
	t.Helper()
	for _, f := range pe.Fields {
		if f.Path == path {
			return f.Message
		}
	}
	require.Failf(t, "no field", "%s in %v", path, pe)
	return ""
}

// mustJSON encodes v.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// item builds a cart line.
func item(sku, category, brand, model string, price, qty int64) qualify.Item {
	return qualify.Item{SKU: sku, Category: category, Brand: brand, Model: model, UnitPrice: price, Quantity: qty}
}

// shopCart is a phone (¥3000), two cases (¥50 each) and three cables (¥19.99 each): ¥3159.97.
func shopCart() qualify.Cart {
	return qualify.Cart{BusinessLine: "retail", Channel: "app", Items: []qualify.Item{
		item("p1", "phone", "acme", "x1", 300000, 1),
		item("c1", "accessory", "acme", "", 5000, 2),
		item("k1", "accessory", "other", "", 1999, 3),
	}}
}

const shopTotal = 300000 + 10000 + 5997
