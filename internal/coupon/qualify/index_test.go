package qualify_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/seedtest"
)

// ruleAdmits is the reference reading of a Rule: an empty include admits all, exclude wins.
func ruleAdmits(r qualify.Rule, v string) bool {
	if slices.Contains(r.Exclude, v) {
		return false
	}
	return len(r.Include) == 0 || slices.Contains(r.Include, v)
}

// refAdmits is the reference answer of Candidates for one template: the cart-level rules admit
// the cart and some item passes every item-level rule.
func refAdmits(s qualify.Spec, c qualify.Cart) bool {
	a := s.Applicability
	if !ruleAdmits(a.BusinessLine, c.BusinessLine) || !ruleAdmits(a.Channel, c.Channel) {
		return false
	}
	for _, it := range c.Items {
		if ruleAdmits(a.Category, it.Category) && ruleAdmits(a.Brand, it.Brand) &&
			ruleAdmits(a.Model, it.Model) && ruleAdmits(a.SKU, it.SKU) {
			return true
		}
	}
	return false
}

func keysOf(ts []*qualify.Template) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Key
	}
	return out
}

func TestIndexCandidates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	phones := spec()
	phones.Applicability.Category.Include = []string{"phone"}
	notAcme := spec()
	notAcme.Applicability.Brand.Exclude = []string{"acme"}
	travel := spec()
	travel.Applicability.BusinessLine.Include = []string{"travel"}
	skus := spec()
	skus.Applicability.SKU.Include = []string{"k1", "zz"}
	skus.Applicability.Category.Include = []string{"accessory"}
	skuWrongCat := spec()
	skuWrongCat.Applicability.SKU.Include = []string{"k1"}
	skuWrongCat.Applicability.Category.Include = []string{"phone"}
	appOnly := spec()
	appOnly.Applicability.Channel.Include = []string{"app"}
	webOnly := spec()
	webOnly.Applicability.Channel.Exclude = []string{"app"}
	ix := qualify.NewIndex([]*qualify.Template{
		b.template(t, "all", spec()), b.template(t, "phones", phones), b.template(t, "not-acme", notAcme),
		b.template(t, "travel", travel), b.template(t, "skus", skus), b.template(t, "sku-wrong-cat", skuWrongCat),
		b.template(t, "app", appOnly), b.template(t, "web", webOnly), nil,
	})
	require.Equal(t, 8, ix.Len())
	require.Equal(t, []string{"all", "app", "not-acme", "phones", "skus"}, keysOf(ix.Candidates(shopCart())))

	c := shopCart()
	c.Channel, c.Items = "web", c.Items[:1]
	require.Equal(t, []string{"all", "phones", "web"}, keysOf(ix.Candidates(c)))

	got, ok := ix.Get("phones")
	require.True(t, ok)
	require.Equal(t, "phones", got.Key)
	_, ok = ix.Get("nope")
	require.False(t, ok)
}

func TestIndexKeepsTheLatestVersion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	old := spec()
	old.Applicability.Category.Include = []string{"food"}
	ix := qualify.NewIndex([]*qualify.Template{b.version(t, "k", 3, spec()), b.version(t, "k", 1, spec()), b.version(t, "k", 2, old)})
	require.Equal(t, 1, ix.Len())
	got, _ := ix.Get("k")
	require.Equal(t, 3, got.Version)
	require.Len(t, ix.Candidates(shopCart()), 1)
	require.Zero(t, qualify.NewIndex(nil).Len())
	require.Empty(t, qualify.NewIndex(nil).Candidates(shopCart()))
}

// TestIndexCandidatesMatchTheRules compares Candidates with the rules read directly, on random
// templates (includes and excludes on every dimension) and random carts.
func TestIndexCandidatesMatchTheRules(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seedtest.Seed(t), 9))
	vals := func(prefix string) []string { return []string{prefix + "1", prefix + "2", prefix + "3", prefix + "4"} }
	dims := [][]string{vals("bl"), vals("ch"), vals("cat"), vals("br"), vals("m"), vals("s")}
	pickSome := func(values []string) []string {
		var out []string
		for _, i := range rng.Perm(len(values))[:1+rng.IntN(2)] {
			out = append(out, values[i])
		}
		return out
	}
	b := setup(t)
	var ts []*qualify.Template
	for i := range 400 {
		s := spec()
		rules := []*qualify.Rule{&s.Applicability.BusinessLine, &s.Applicability.Channel, &s.Applicability.Category,
			&s.Applicability.Brand, &s.Applicability.Model, &s.Applicability.SKU}
		for d, r := range rules {
			switch rng.IntN(6) {
			case 0:
				r.Include = pickSome(dims[d])
			case 1:
				r.Exclude = pickSome(dims[d])
			}
		}
		ts = append(ts, b.template(t, fmt.Sprintf("t%03d", i), s))
	}
	ix := qualify.NewIndex(ts)
	for range 300 {
		c := qualify.Cart{BusinessLine: dims[0][rng.IntN(4)], Channel: dims[1][rng.IntN(4)]}
		if rng.IntN(5) == 0 {
			c.Channel = ""
		}
		for range 1 + rng.IntN(5) {
			c.Items = append(c.Items, item(dims[5][rng.IntN(4)], dims[2][rng.IntN(4)], dims[3][rng.IntN(4)], dims[4][rng.IntN(4)], 100, 1))
		}
		var want []string
		for _, tp := range ts {
			if refAdmits(tp.Spec, c) {
				want = append(want, tp.Key)
			}
		}
		require.Equal(t, want, keysOf(ix.Candidates(c)), "cart %+v", c)
	}
}
