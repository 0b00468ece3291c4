package qualify

import (
	"context"
	"math/bits"
	"strings"
	"sync"
	"time"
)

// slab hands out small slices carved from larger allocations, so that an evaluation allocates a
// few blocks instead of one slice per coupon. Handed-out slices have len == cap: appending to one
// copies it rather than overwriting its neighbour. next is the size of the next block (doubling).
type slab[T any] struct {
	buf  []T
	next int
}

func (s *slab[T]) take(n int) []T {
	if cap(s.buf)-len(s.buf) < n {
		s.buf = make([]T, 0, max(n, s.next))
		s.next = max(2*s.next, 16)
	}
	l := len(s.buf)
	s.buf = s.buf[:l+n]
	return s.buf[l : l+n : l+n]
}

// evaluator holds one evaluation's cart, scratch space and per-template results. Evaluators are
// pooled: what an evaluation hands back (outcomes, splits, reasons, picks) is always freshly
// allocated; the scratch is kept for the next evaluation.
type evaluator struct {
	in      *Input
	msg     messages
	cart    *Cart
	cur     *currency
	amounts []int64
	total   int64
	// itemVals and itemHash are the items' values and their hashes (hashOf), by dimension.
	itemVals [][numDims]string
	itemHash [][numDims]uint64
	// allIdx lists every item; allBits has a bit set for each, live is eligibleItems' scratch.
	allIdx        []int32
	allBits, live []uint64
	// bitItems has, per item dimension and hash bit (hashBit), the set of items whose value has
	// that bit (len(allBits) words); cartBits has, per dimension, the bits of the items' values.
	bitItems []uint64
	cartBits [numDims]uint64
	vars     map[string]any
	cel      celVars
	conds    []condAnswer
	// slots is an open-addressing table of the templates met (1 + their index in tevals, 0:
	// free), a power of two in size, at least twice the coupons; keySlots likewise of the keys and
	// versions met (1 + their index in keys).
	slots    []int32
	keySlots []int32
	keys     []keyTemplate
	tevals   []tmplEval
	// tidx are the outcomes' template evaluations (-1: missing); appl lists the applicable
	// outcomes.
	tidx, appl []int32
	sp         splitter
	scratch    []int64
	idx        slab[int32]
	// shares carves the splits the result holds: it starts empty for every evaluation.
	shares slab[Share]
	// rbuf holds the evaluation's reasons, named by spans (rspan: each outcome's), until publish
	// copies them into one block of the result.
	rbuf  []Reason
	rspan []reasonSpan
	// splitItems is how many shares the splits of the applicable templates hold: they are
	// allocated at once, by computeSplits, when every coupon has been qualified.
	splitItems int
	// missing is the reason of the coupons whose template is missing, shared.
	missing reasonSpan
	// notFor caches the "not valid for" reasons of this cart's values, lastTime the last
	// not-started and expired reasons.
	notFor   []notForReason
	lastTime [2]timeReasonAt
	// The stack search's and leftOut's scratch.
	inStack []bool
	groups  []groupUse
	full    []fullReason
	leftBy  []reasonSpan
	cands   []cand
	group   []*cand
	// stacks are, per family, its best exclusive coupon alone and its best group stack.
	stacks [numFamilies][2]stack
	search searcher
	// nodes is the most nodes a stack search of this evaluation visited; budget, when set,
	// replaces maxSearchNodes (for tests).
	nodes, budget int
}

// tmplEval is what a template gives for the cart, shared by every coupon of that template.
type tmplEval struct {
	t *Template
	// hard are the reasons that do not depend on the coupon: currency, business line, channel,
	// no eligible item.
	hard reasonSpan
	// elig are the indexes of the eligible items and base their amount.
	elig []int32
	base int64
	// soft (condition, threshold), value and split are computed once a coupon needs them.
	softDone bool
	soft     reasonSpan
	value    int64
	// split is set by computeSplits for the templates that apply (wantSplit).
	wantSplit bool
	split     []Share
	// rep is the outcome index of the template's candidate for the stack search (-1: none).
	rep int32
}

var evaluators = sync.Pool{New: func() any { return &evaluator{} }}

// getEvaluator takes a pooled evaluator and sets it up for in.
func getEvaluator(in *Input) *evaluator {
	e := evaluators.Get().(*evaluator)
	e.setup(in)
	return e
}

// setup readies e, new or pooled, for in.
func (e *evaluator) setup(in *Input) {
	e.in, e.cart = in, &in.Cart
	e.msg = messages{zh: strings.HasPrefix(in.Lang, "zh")}
	e.cur = currencyOf(in.Cart.Currency)
	e.amounts, e.total = lineAmounts(e.amounts, in.Cart.Items)
	e.itemHash = resize(e.itemHash, len(in.Cart.Items))
	e.itemVals = resize(e.itemVals, len(in.Cart.Items))
	for i := range in.Cart.Items {
		it, h, v := &in.Cart.Items[i], &e.itemHash[i], &e.itemVals[i]
		for d := firstItemDim; d < numDims; d++ {
			v[d] = itemValue(it, d)
			h[d] = hashOf(v[d])
		}
	}
	e.allIdx = resize(e.allIdx, len(in.Cart.Items))
	for i := range e.allIdx {
		e.allIdx[i] = int32(i)
	}
	words := (len(in.Cart.Items) + 63) / 64
	e.allBits, e.live = resize(e.allBits, words), resize(e.live, words)
	e.bitItems = resize(e.bitItems, int(numDims-firstItemDim)*64*words)
	e.cartBits = [numDims]uint64{}
	for i := range in.Cart.Items {
		e.allBits[i>>6] |= 1 << (i & 63)
		for d := firstItemDim; d < numDims; d++ {
			b := bits.TrailingZeros64(hashBit(e.itemHash[i][d]))
			e.bitItems[(int(d-firstItemDim)<<6|b)*words+i>>6] |= 1 << (i & 63)
			e.cartBits[d] |= 1 << b
		}
	}
	e.tevals = e.tevals[:0]
	size := 16
	for size < 2*len(in.Coupons) {
		size *= 2
	}
	e.slots = resize(e.slots, size)
	e.keySlots = resize(e.keySlots, size)
	e.keys = e.keys[:0]
	e.idx.buf = e.idx.buf[:0] // the last block, the largest: it soon holds an evaluation's lists
	e.idx.next = max(e.idx.next, 8*len(in.Cart.Items))
	e.rbuf = e.rbuf[:0]
	e.missing = reasonSpan{}
	e.splitItems = 0
	e.nodes, e.budget = 0, 0
}

// release drops what the evaluation referenced and pools the evaluator.
func (e *evaluator) release() {
	clear(e.tevals)
	clear(e.keys)
	clear(e.itemVals)
	clear(e.cands)
	clear(e.group)
	for f := range e.stacks {
		for k := range e.stacks[f] {
			clear(e.stacks[f][k].c)
		}
	}
	clear(e.notFor)
	clear(e.full)
	e.full = e.full[:0]
	e.lastTime = [2]timeReasonAt{}
	e.notFor = e.notFor[:0]
	e.in, e.cart, e.vars = nil, nil, nil
	e.cel.reset()
	clear(e.conds)
	e.conds = e.conds[:0]
	e.shares = slab[Share]{}
	clear(e.rbuf)
	e.search.release()
	if cap(e.tevals) > 4096 || cap(e.keys) > 4096 || cap(e.rbuf) > 1<<14 || cap(e.idx.buf) > 1<<16 ||
		len(e.slots) > 1<<14 || len(e.amounts) > MaxItems {
		return // an outsized evaluation's scratch is left to the collector
	}
	evaluators.Put(e)
}

// resize returns s with length n and zeroed, reusing its array when it is large enough.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// evaluate qualifies every coupon against a valid cart and picks the best single coupon and the
// best stack.
func evaluate(in *Input) Result {
	e := getEvaluator(in)
	defer e.release()
	return e.run()
}

func (e *evaluator) run() Result {
	in := e.in
	res := Result{Amount: e.total, Coupons: make([]Outcome, len(in.Coupons))}
	outs := res.Coupons
	e.tidx = resize(e.tidx, len(in.Coupons))
	e.rspan = resize(e.rspan, len(in.Coupons))
	e.appl = e.appl[:0]
	best := -1
	for i := range in.Coupons {
		o := &outs[i]
		ti, rs := e.outcome(o, &in.Coupons[i])
		e.tidx[i], e.rspan[i] = ti, rs
		if !o.Applicable {
			continue
		}
		e.appl = append(e.appl, int32(i))
		if o.Discount > 0 {
			if best < 0 || betterSingle(o, &outs[best]) {
				best = i
			}
			e.offer(&e.tevals[ti], outs, i)
		}
	}
	e.computeSplits()
	for _, i := range e.appl {
		outs[i].Split = e.tevals[e.tidx[i]].split
	}
	if best >= 0 {
		res.Best.Single = &Pick{CouponIDs: []string{outs[best].CouponID}, Discount: outs[best].Discount}
	}
	e.bestStack(&res, e.tidx)
	e.publish(outs)
	return res
}

// outcome qualifies one coupon into o (zero); it returns the index of its template's evaluation
// (-1 when the template is missing) and, when it does not apply, its reasons. The split of an
// applicable coupon is left to computeSplits, the reasons to publish.
func (e *evaluator) outcome(o *Outcome, c *Coupon) (int32, reasonSpan) {
	o.CouponID, o.Template, o.ExpiresAt = c.ID, c.TemplateKey, c.ExpiresAt
	ti := e.templateOf(c)
	if ti < 0 {
		if e.missing.n == 0 {
			e.missing = e.addReasons(e.msg.templateMissing())
		}
		return -1, e.missing
	}
	te := &e.tevals[ti]
	o.Type = te.t.typ
	var timeReason *Reason
	switch now := &e.in.Now; {
	case now.Before(c.StartsAt) && !c.StartsAt.IsZero():
		timeReason = e.timeReason(timeNotStarted, c.StartsAt)
	case !now.Before(c.ExpiresAt) && !c.ExpiresAt.IsZero():
		timeReason = e.timeReason(timeExpired, c.ExpiresAt)
	}
	switch {
	case timeReason != nil:
		rs := e.addReasons(*timeReason)
		e.rbuf = append(e.rbuf, e.rbuf[te.hard.off:te.hard.off+te.hard.n]...)
		rs.n += te.hard.n
		return ti, rs
	case te.hard.n > 0:
		return ti, te.hard
	}
	e.qualify(te)
	if te.soft.n > 0 {
		return ti, te.soft
	}
	o.Applicable, o.Discount = true, te.value
	if !te.wantSplit {
		te.wantSplit = true
		e.splitItems += len(te.elig)
	}
	return ti, reasonSpan{}
}

// reasonSpan names reasons of an evaluation: rbuf[off:off+n].
type reasonSpan struct {
	off, n int32
}

// addReasons appends rs to the evaluation's reasons and returns their span.
func (e *evaluator) addReasons(rs ...Reason) reasonSpan {
	sp := reasonSpan{off: int32(len(e.rbuf)), n: int32(len(rs))}
	e.rbuf = append(e.rbuf, rs...)
	return sp
}

// reasons are the reasons of a span, in the evaluation's scratch: for immediate use only.
func (e *evaluator) reasons(sp reasonSpan) []Reason { return e.rbuf[sp.off : sp.off+sp.n] }

// publish copies the evaluation's reasons into one block and gives the outcomes theirs (rspan).
func (e *evaluator) publish(outs []Outcome) {
	if len(e.rbuf) == 0 {
		return
	}
	block := make([]Reason, len(e.rbuf))
	copy(block, e.rbuf)
	for i, sp := range e.rspan {
		if sp.n > 0 {
			outs[i].Reasons = block[sp.off : sp.off+sp.n : sp.off+sp.n]
		}
	}
}

// computeSplits computes the splits of the templates that apply, in one block.
func (e *evaluator) computeSplits() {
	if e.splitItems == 0 {
		return
	}
	e.shares = slab[Share]{buf: make([]Share, 0, e.splitItems)}
	for i := range e.tevals {
		if te := &e.tevals[i]; te.wantSplit {
			te.split = e.split(te.value, te.elig, e.amounts)
		}
	}
}

// fillSplits computes the splits and gives them to the applicable outcomes (tidx: their
// templates' evaluations).
func (e *evaluator) fillSplits(outs []Outcome, tidx []int32) {
	e.computeSplits()
	for i := range outs {
		if outs[i].Applicable {
			outs[i].Split = e.tevals[tidx[i]].split
		}
	}
}

// offer makes the applicable coupon i of positive value its template's candidate for the stack
// search when it expires before the template's candidate so far (ties: the smaller id).
func (e *evaluator) offer(te *tmplEval, outs []Outcome, i int) {
	o := &outs[i]
	if r := te.rep; r < 0 || cmpExpiry(o.ExpiresAt, outs[r].ExpiresAt) < 0 ||
		(o.ExpiresAt.Equal(outs[r].ExpiresAt) && o.CouponID < outs[r].CouponID) {
		te.rep = int32(i)
	}
}

// templateOf returns the index of the evaluation of c's template, -1 when it is missing. Templates
// are looked up once per key and version.
func (e *evaluator) templateOf(c *Coupon) int32 {
	mask := uint64(len(e.keySlots) - 1)
	h := quickHash(c.TemplateKey, c.TemplateVersion) & mask
	for ; e.keySlots[h] != 0; h = (h + 1) & mask {
		if k := &e.keys[e.keySlots[h]-1]; k.version == c.TemplateVersion && k.key == c.TemplateKey {
			return k.ti
		}
	}
	var t *Template
	if e.in.Templates != nil {
		t, _ = e.in.Templates(c.TemplateKey, c.TemplateVersion)
	}
	ti := int32(-1)
	if t != nil {
		ti = e.template(t)
	}
	e.keys = append(e.keys, keyTemplate{key: c.TemplateKey, version: c.TemplateVersion, ti: ti})
	e.keySlots[h] = int32(len(e.keys))
	return ti
}

// quickHash is a hash of a key and version for an evaluation's table of keys: FNV-1a over the
// key's first and last 16 bytes, mixed with its length and the version.
func quickHash(key string, version int) uint64 {
	h := uint64(len(key))*0x9e3779b97f4a7c15 ^ uint64(version)*0xbf58476d1ce4e5b9
	head, tail := key, ""
	if len(key) > 32 {
		head, tail = key[:16], key[len(key)-16:]
	}
	for i := 0; i < len(head); i++ {
		h = (h ^ uint64(head[i])) * 0x100000001b3
	}
	for i := 0; i < len(tail); i++ {
		h = (h ^ uint64(tail[i])) * 0x100000001b3
	}
	return h ^ h>>29
}

// keyTemplate is a template key and version met by an evaluation and the index of its template's
// evaluation (-1: missing).
type keyTemplate struct {
	key     string
	version int
	ti      int32
}

// template returns the index of t's evaluation, computing its hard reasons and eligible items on
// first use.
func (e *evaluator) template(t *Template) int32 {
	mask := uint64(len(e.slots) - 1)
	h := t.hash & mask
	for ; e.slots[h] != 0; h = (h + 1) & mask {
		if i := e.slots[h] - 1; e.tevals[i].t == t {
			return i
		}
	}
	i := int32(len(e.tevals))
	e.slots[h] = i + 1
	e.tevals = append(e.tevals, tmplEval{t: t, rep: -1})
	te := &e.tevals[i]
	var hard [numDims + 2]Reason
	n := 0
	if t.currency != e.cur.code {
		hard[n] = e.msg.currency(t.currency)
		n++
	}
	for i := range t.rules[:t.cartRules] {
		r := &t.rules[i]
		if v := cartValue(e.cart, r.d); !r.admits(v) {
			hard[n] = e.notForReason(r.d, v)
			n++
		}
	}
	if t.itemRules() {
		n = e.eligibleItems(te, hard[:], n)
	} else {
		te.elig = e.allIdx
	}
	if n == 0 {
		for _, i := range te.elig {
			te.base += e.amounts[i]
		}
		if te.base == 0 {
			hard[n] = e.msg.noPricedItem()
			n++
		}
	}
	if n > 0 {
		te.hard = e.addReasons(hard[:n]...)
	}
	return i
}

// eligibleItems finds the items every item-level rule admits. When there is none, it adds one
// reason per dimension that turned an item away first, in dimension order, naming the first such
// item's value. The rules are applied in turn to the items the earlier ones admitted, so an item
// is turned away by its first failing rule. Only the items whose value's hash bit is among the
// rule's bits (see withBits) are compared with its lists.
func (e *evaluator) eligibleItems(te *tmplEval, hard []Reason, n int) int {
	t := te.t
	live := e.live[:len(e.allBits)]
	copy(live, e.allBits)
	var failed [numDims]int32 // 1 + the index of the first item turned away by that dimension
	for ri := t.cartRules; ri < len(t.rules); ri++ {
		r := &t.rules[ri]
		d := r.d
		ex, in := r.ebits&e.cartBits[d], r.ibits&e.cartBits[d]
		for w, keep := range live {
			if keep == 0 {
				continue
			}
			for m := e.withBits(d, ex, w) & keep; m != 0; m &= m - 1 {
				i := w<<6 | bits.TrailingZeros64(m)
				if r.excludes(e.itemVals[i][d], e.itemHash[i][d]) {
					keep &^= m & -m
				}
			}
			if len(r.inc) > 0 {
				admitted := e.withBits(d, in, w) & keep
				for m := admitted; m != 0; m &= m - 1 {
					i := w<<6 | bits.TrailingZeros64(m)
					if !r.includes(e.itemVals[i][d], e.itemHash[i][d]) {
						admitted &^= m & -m
					}
				}
				keep = admitted
			}
			if gone := live[w] &^ keep; gone != 0 && failed[d] == 0 {
				failed[d] = int32(w<<6|bits.TrailingZeros64(gone)) + 1
			}
			live[w] = keep
		}
	}
	count := 0
	for _, m := range live {
		count += bits.OnesCount64(m)
	}
	switch {
	case count == len(e.allIdx):
		te.elig = e.allIdx
		return n
	case count > 0:
		elig := e.idx.take(count)
		k := 0
		for w, m := range live {
			for ; m != 0; m &= m - 1 {
				elig[k] = int32(w<<6 | bits.TrailingZeros64(m))
				k++
			}
		}
		te.elig = elig
		return n
	}
	for d := firstItemDim; d < numDims; d++ {
		if failed[d] > 0 {
			hard[n] = e.notForReason(d, e.itemVals[failed[d]-1][d])
			n++
		}
	}
	return n
}

// withBits is word w of the set of items whose value of dimension d has its hash bit (hashBit) in
// mask.
func (e *evaluator) withBits(d dim, mask uint64, w int) uint64 {
	var items uint64
	words := len(e.allBits)
	for ; mask != 0; mask &= mask - 1 {
		items |= e.bitItems[(int(d-firstItemDim)<<6|bits.TrailingZeros64(mask))*words+w]
	}
	return items
}

// qualify evaluates the template's condition and threshold once, and its value and split when
// both pass.
func (e *evaluator) qualify(te *tmplEval) {
	if te.softDone {
		return
	}
	te.softDone = true
	t := te.t
	if t.cond != nil && !e.condition(t) {
		te.soft = e.addReasons(e.msg.condition())
		return
	}
	if th := t.threshold; th > 0 {
		base := e.total
		if t.scopeApplicable {
			base = te.base
		}
		if base < th {
			te.soft = e.addReasons(e.msg.belowThreshold(t, th-base))
			return
		}
	}
	te.value = t.value(te.base)
}

// noUser stands for a missing user: an empty map, never written.
var noUser = map[string]any{}

// condition evaluates the template's CEL condition; an evaluation error counts as not met.
// Templates often share a condition: its answer is kept for the others (conditions compile in one
// environment and depend only on the user and the cart).
func (e *evaluator) condition(t *Template) bool {
	expr := t.cond.Expr()
	for i := range e.conds {
		if e.conds[i].expr == expr {
			return e.conds[i].ok
		}
	}
	if e.vars == nil {
		user := e.in.User
		if user == nil {
			user = noUser
		}
		e.vars = e.cel.fill(user, e.cart, &e.cur.code, e.amounts, &e.total)
	}
	ok, err := t.cond.EvalBool(context.Background(), e.vars)
	ok = err == nil && ok
	if len(e.conds) < maxConds {
		e.conds = append(e.conds, condAnswer{expr: expr, ok: ok})
	}
	return ok
}

// maxConds bounds the conditions an evaluation remembers.
const maxConds = 16

// condAnswer is a condition's answer for the evaluation's user and cart.
type condAnswer struct {
	expr string
	ok   bool
}

// split shares value over the items elig in proportion to weights.
func (e *evaluator) split(value int64, elig []int32, weights []int64) []Share {
	if cap(e.scratch) < len(elig) {
		e.scratch = make([]int64, len(elig))
	}
	parts := e.scratch[:len(elig)]
	e.sp.split(value, elig, weights, parts)
	out := e.shares.take(len(elig))
	for k, i := range elig {
		out[k] = Share{Index: int(i), SKU: e.cart.Items[i].SKU, Discount: parts[k]}
	}
	return out
}

// notForReason is the "not valid for" reason of a dimension's value, built once per evaluation.
func (e *evaluator) notForReason(d dim, v string) Reason {
	for i := range e.notFor {
		if r := &e.notFor[i]; r.d == d && r.v == v {
			return r.r
		}
	}
	r := e.msg.notFor(d, v)
	e.notFor = append(e.notFor, notForReason{d: d, v: v, r: r})
	return r
}

// notForReason is a cached "not valid for" reason.
type notForReason struct {
	d dim
	v string
	r Reason
}

// timeReasonAt is a not-started or expired reason and its time.
type timeReasonAt struct {
	at time.Time
	r  Reason
}

// The time reasons, indexes of evaluator.lastTime.
const (
	timeNotStarted = iota
	timeExpired
)

// timeReason is the not-started or expired reason of a coupon with that start or expiry; coupons
// issued together share the time, so the last one is kept.
func (e *evaluator) timeReason(k int, at time.Time) *Reason {
	l := &e.lastTime[k]
	if l.r.Code == "" || !l.at.Equal(at) {
		l.at = at
		if k == timeNotStarted {
			l.r = e.msg.notStarted(at)
		} else {
			l.r = e.msg.expired(at)
		}
	}
	return &l.r
}
