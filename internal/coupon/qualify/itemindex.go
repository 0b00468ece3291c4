package qualify

import "math/bits"

// itemIndex indexes the item-level rules of a Wallet's templates by the values they name, so that
// an evaluation finds which items each rule includes and excludes by looking up the cart's values
// once, rather than comparing every template's lists with every item (see ruleMasks). Each item
// rule of each template version has a slot; a version's rules take consecutive slots, in the order
// of Template.rules.
type itemIndex struct {
	slots int
	// post lists, per dimension and value, the slots whose rule includes it (slot<<1) or excludes
	// it (slot<<1 | 1).
	post map[dimValue][]int32
}

// dimValue is a value of an item-level dimension.
type dimValue struct {
	d dim
	v string
}

// add gives t's item rules their slots and returns the first one.
func (x *itemIndex) add(t *Template) int32 {
	at := int32(x.slots)
	for ri := int(t.cartRules); ri < len(t.rules); ri++ {
		r := &t.rules[ri]
		slot := int32(x.slots)
		for _, v := range r.inc {
			k := dimValue{r.d, v}
			x.post[k] = append(x.post[k], slot<<1)
		}
		for _, v := range r.exc {
			k := dimValue{r.d, v}
			x.post[k] = append(x.post[k], slot<<1|1)
		}
		x.slots++
	}
	return at
}

// ruleMasks sets, for a cart of at most 64 items, each slot's items whose value its rule includes
// (e.incMask) and excludes (e.excMask).
func (e *evaluator) ruleMasks(x *itemIndex) {
	e.incMask = resize(e.incMask, x.slots)
	e.excMask = resize(e.excMask, x.slots)
	for i := range e.itemVals {
		bit := uint64(1) << i
		for d := firstItemDim; d < numDims; d++ {
			for _, p := range x.post[dimValue{d, e.itemVals[i][d]}] {
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
