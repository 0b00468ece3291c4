package qualify

import (
	"slices"
	"strings"
)

// anchorOrder is the order in which a template's dimensions are tried as its posting anchor: the
// most specific first.
var anchorOrder = [numDims]dim{dimSKU, dimModel, dimBrand, dimCategory, dimChannel, dimBusinessLine}

// anchor is the dimension a template is posted under: the most specific one with an include
// list. A template with no include list at all is a wildcard.
func anchor(t *Template) (*matcher, dim, bool) {
	for _, d := range anchorOrder {
		if m := t.rule(d); m != nil && len(m.inc) > 0 {
			return m, d, true
		}
	}
	return nil, 0, false
}

// span is where a posting list sits in Index.ids.
type span struct{ at, n int32 }

func newIndex(ts []*Template) *Index {
	latest := make(map[string]*Template, len(ts))
	for _, t := range ts {
		if t == nil {
			continue
		}
		if have, ok := latest[t.Key]; !ok || t.Version > have.Version {
			latest[t.Key] = t
		}
	}
	ix := &Index{ts: make([]*Template, 0, len(latest)), byKey: make(map[string]int32, len(latest))}
	for _, t := range latest {
		ix.ts = append(ix.ts, t)
	}
	slices.SortFunc(ix.ts, func(a, b *Template) int { return strings.Compare(a.Key, b.Key) })
	ix.sure = make([]bool, len(ix.ts))
	// Two passes: count the postings of each value, then lay every list out in one array.
	for d := range numDims {
		ix.post[d] = map[string]span{}
	}
	total := int32(0)
	for i, t := range ix.ts {
		ix.byKey[t.Key] = int32(i)
		m, d, ok := anchor(t)
		if !ok {
			ix.wild = append(ix.wild, int32(i))
			ix.sure[i] = len(t.rules) == 0
			continue
		}
		ix.sure[i] = len(t.rules) == 1 && len(m.exc) == 0
		for _, v := range m.inc {
			sp := ix.post[d][v]
			sp.n++
			ix.post[d][v] = sp
			total++
		}
	}
	at := int32(0)
	for d := range numDims {
		for v, sp := range ix.post[d] {
			ix.post[d][v] = span{at: at}
			at += sp.n
		}
	}
	ix.ids = make([]int32, total)
	for i, t := range ix.ts {
		m, d, ok := anchor(t)
		if !ok {
			continue
		}
		for _, v := range m.inc {
			sp := ix.post[d][v]
			ix.ids[sp.at+sp.n] = int32(i)
			sp.n++
			ix.post[d][v] = sp
		}
	}
	ix.wild = slices.Clip(ix.wild)
	return ix
}

// postings is the list of templates posted under value v of dimension d.
func (ix *Index) postings(d dim, v string) []int32 {
	sp := ix.post[d][v]
	return ix.ids[sp.at : sp.at+sp.n]
}

// candidates reads the postings of the cart's values, merges them with the wildcards and keeps the
// templates whose rules admit the cart and at least one item. A template whose only rule is the
// include list it was found by (or that has no rule) is taken without looking at it.
func (ix *Index) candidates(c *Cart) []*Template {
	if len(c.Items) == 0 {
		return nil
	}
	var hits []int32
	for d := dimBusinessLine; d < firstItemDim; d++ {
		hits = append(hits, ix.postings(d, cartValue(c, d))...)
	}
	for i := range c.Items {
		for d := firstItemDim; d < numDims; d++ {
			hits = append(hits, ix.postings(d, itemValue(&c.Items[i], d))...)
		}
	}
	slices.Sort(hits)
	hits = slices.Compact(hits)
	out := make([]*Template, 0, len(hits)+len(ix.wild))
	h, w := 0, 0
	for h < len(hits) || w < len(ix.wild) {
		var i int32
		if w >= len(ix.wild) || (h < len(hits) && hits[h] < ix.wild[w]) {
			i, h = hits[h], h+1
		} else {
			i, w = ix.wild[w], w+1
		}
		if ix.sure[i] || admits(ix.ts[i], c) {
			out = append(out, ix.ts[i])
		}
	}
	return out
}

// admits reports whether the template's rules admit the cart and at least one of its items.
func admits(t *Template, c *Cart) bool {
	if _, ok := t.admitsCart(c); !ok {
		return false
	}
	if !t.itemRules() {
		return len(c.Items) > 0
	}
	for i := range c.Items {
		if t.admitsItem(&c.Items[i]) < 0 {
			return true
		}
	}
	return false
}
