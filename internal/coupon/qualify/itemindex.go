package qualify

import (
	"cmp"
	"math/bits"
	"slices"
	"strings"
)

// itemIndex indexes the item-level rules of a Wallet's templates by the values they name, so that
// an evaluation finds which items each rule includes and excludes by looking each of the cart's
// values up once, rather than comparing every template's lists with every item (see ruleMasks).
// Each item rule of each template version has a slot; a version's rules take consecutive slots, in
// the order of Template.rules.
//
// It is flat, to keep a cached wallet small: the values named, sorted, each with its span of
// postings, and an open-addressing table of the values on their hashes (the hashes the evaluation
// computes for the cart's values anyway); the strings are the templates' own.
type itemIndex struct {
	slots  int
	values []indexedValue
	// post holds the postings of the values: the slots whose rule includes the value (slot<<1) or
	// excludes it (slot<<1 | 1).
	post []int32
	// table holds 1 + the index of a value in values (0: free), at its hash (see valueHash) and
	// on; its length is a power of two, at least twice the values.
	table []int32
}

// indexedValue is a value named by rules and its postings, post[from:to].
type indexedValue struct {
	hash     uint64
	v        string
	d        dim
	from, to int32
}

// posting is a rule slot that names a value, while the index is built.
type posting struct {
	d    dim
	v    string
	slot int32 // slot<<1, | 1 for an exclude list
}

// indexBuilder collects the postings of a Wallet's templates.
type indexBuilder struct {
	slots int
	posts []posting
}

// add gives t's item rules their slots and returns the first one.
func (x *indexBuilder) add(t *Template) int32 {
	at := int32(x.slots)
	for ri := int(t.cartRules); ri < len(t.rules); ri++ {
		r := &t.rules[ri]
		slot := int32(x.slots)
		for _, v := range r.inc {
			x.posts = append(x.posts, posting{d: r.d, v: v, slot: slot << 1})
		}
		for _, v := range r.exc {
			x.posts = append(x.posts, posting{d: r.d, v: v, slot: slot<<1 | 1})
		}
		x.slots++
	}
	return at
}

// build makes the index; nil when no rule was added.
func (x *indexBuilder) build() *itemIndex {
	if x.slots == 0 {
		return nil
	}
	slices.SortFunc(x.posts, func(a, b posting) int {
		if c := cmp.Compare(a.d, b.d); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	ix := &itemIndex{slots: x.slots, post: make([]int32, len(x.posts))}
	for k, p := range x.posts {
		ix.post[k] = p.slot
		if n := len(ix.values); n == 0 || ix.values[n-1].d != p.d || ix.values[n-1].v != p.v {
			ix.values = append(ix.values, indexedValue{hash: valueHash(p.d, hashOf(p.v)), v: p.v, d: p.d, from: int32(k)})
		}
		ix.values[len(ix.values)-1].to = int32(k + 1)
	}
	ix.values = slices.Clip(ix.values)
	size := 16
	for size < 2*len(ix.values) {
		size *= 2
	}
	ix.table = make([]int32, size)
	mask := uint64(size - 1)
	for k := range ix.values {
		i := ix.values[k].hash & mask
		for ix.table[i] != 0 {
			i = (i + 1) & mask
		}
		ix.table[i] = int32(k + 1)
	}
	return ix
}

// valueHash is the hash of dimension d's value whose hashOf is h.
func valueHash(d dim, h uint64) uint64 { return h ^ uint64(d)*0x9e3779b97f4a7c15 }

// postings are the postings of dimension d's value v, whose hashOf is h.
func (ix *itemIndex) postings(d dim, v string, h uint64) []int32 {
	h = valueHash(d, h)
	mask := uint64(len(ix.table) - 1)
	for i := h & mask; ix.table[i] != 0; i = (i + 1) & mask {
		if x := &ix.values[ix.table[i]-1]; x.hash == h && x.d == d && x.v == v {
			return ix.post[x.from:x.to]
		}
	}
	return nil
}

// ruleMasks sets, for a cart of at most 64 items, each slot's items whose value its rule includes
// (e.incMask) and excludes (e.excMask).
func (e *evaluator) ruleMasks(ix *itemIndex) {
	e.incMask = resize(e.incMask, ix.slots)
	e.excMask = resize(e.excMask, ix.slots)
	for i := range e.itemVals {
		bit := uint64(1) << i
		for d := firstItemDim; d < numDims; d++ {
			for _, p := range ix.postings(d, e.itemVals[i][d], e.itemHash[i][d]) {
				if p&1 == 0 {
					e.incMask[p>>1] |= bit
				} else {
					e.excMask[p>>1] |= bit
				}
			}
		}
	}
}

// eligibleIndexed is eligibleItems for a cart of at most 64 items whose template's item rules
// have their masks from slot at on (see ruleMasks): the same rules applied in turn, on bits.
func (e *evaluator) eligibleIndexed(te *tmplEval, at int32) {
	t := te.t
	live := e.allBits[0]
	var failed [numDims]int32 // 1 + the index of the first item turned away by that dimension
	for ri := int(t.cartRules); ri < len(t.rules) && live != 0; ri++ {
		r := &t.rules[ri]
		keep := live &^ e.excMask[at]
		if len(r.inc) > 0 {
			keep &= e.incMask[at]
		}
		if gone := live &^ keep; gone != 0 {
			failed[r.d] = int32(bits.TrailingZeros64(gone)) + 1
		}
		live = keep
		at++
	}
	e.live[0] = live
	e.setEligible(te, &failed)
}
