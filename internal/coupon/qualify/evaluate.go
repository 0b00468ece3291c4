package qualify

import (
	"context"
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
	// itemHash are the hashes of the items' values, by dimension (hashOf).
	itemHash [][numDims]uint64
	allIdx   []int32
	vars     map[string]any
	cel      celVars
	// slots is an open-addressing table of the templates met (1 + their index in tevals, 0:
	// free), a power of two in size, at least twice the coupons.
	slots   []int32
	tevals  []tmplEval
	tidx    []int32
	sp      splitter
	scratch []int64
	eligBuf []int32
	idx     slab[int32]
	// shares and reasons carve what the result holds: they start empty for every evaluation.
	shares  slab[Share]
	reasons slab[Reason]
	// splitItems is how many shares the splits of the applicable templates hold: they are
	// allocated at once, by computeSplits, when every coupon has been qualified.
	splitItems int
	// missing is the reason of the coupons whose template is missing, shared.
	missing []Reason
	// notFor caches the "not valid for" reasons of this cart's values, lastTime the last
	// not-started and expired reasons.
	notFor   []notForReason
	lastTime [2]timeReasonAt
	// The stack search's and leftOut's scratch.
	inStack []bool
	groups  []groupUse
	full    []fullReason
	leftBy  [][]Reason
	cands   []cand
	group   []*cand
	search  searcher
	// nodes is the most nodes a stack search of this evaluation visited; budget, when set,
	// replaces maxSearchNodes (for tests).
	nodes, budget int
}

// tmplEval is what a template gives for the cart, shared by every coupon of that template.
type tmplEval struct {
	t *Template
	// hard are the reasons that do not depend on the coupon: currency, business line, channel,
	// no eligible item.
	hard []Reason
	// elig are the indexes of the eligible items and base their amount.
	elig []int32
	base int64
	// soft (condition, threshold), value and split are computed once a coupon needs them.
	softDone bool
	soft     []Reason
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
	e.in, e.cart = in, &in.Cart
	e.msg = messages{zh: strings.HasPrefix(in.Lang, "zh")}
	e.cur = currencyOf(in.Cart.Currency)
	e.amounts, e.total = lineAmounts(e.amounts, in.Cart.Items)
	e.itemHash = resize(e.itemHash, len(in.Cart.Items))
	for i := range in.Cart.Items {
		it, h := &in.Cart.Items[i], &e.itemHash[i]
		for d := firstItemDim; d < numDims; d++ {
			h[d] = hashOf(itemValue(it, d))
		}
	}
	e.allIdx = resize(e.allIdx, len(in.Cart.Items))
	for i := range e.allIdx {
		e.allIdx[i] = int32(i)
	}
	e.tevals = e.tevals[:0]
	size := 16
	for size < 2*len(in.Coupons) {
		size *= 2
	}
	e.slots = resize(e.slots, size)
	e.idx.buf = e.idx.buf[:0]
	e.idx.next = 8 * len(in.Cart.Items)
	n := min(len(in.Coupons), 4096)
	e.reasons = slab[Reason]{next: n*3/4 + 8}
	e.splitItems = 0
	e.nodes, e.budget = 0, 0
	return e
}

// release drops what the evaluation referenced and pools the evaluator.
func (e *evaluator) release() {
	clear(e.tevals)
	clear(e.cands)
	clear(e.group)
	clear(e.notFor)
	clear(e.full)
	e.full = e.full[:0]
	e.missing = nil
	e.lastTime = [2]timeReasonAt{}
	e.notFor = e.notFor[:0]
	e.in, e.cart, e.vars = nil, nil, nil
	e.cel.reset()
	e.shares, e.reasons = slab[Share]{}, slab[Reason]{}
	e.search.release()
	if cap(e.tevals) > 4096 || len(e.slots) > 1<<14 || len(e.amounts) > MaxItems {
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
	e.tidx = resize(e.tidx, len(in.Coupons))
	for i := range in.Coupons {
		e.tidx[i] = e.outcome(&res.Coupons[i], &in.Coupons[i])
	}
	e.computeSplits()
	if best := e.scan(res.Coupons, e.tidx); best >= 0 {
		res.Best.Single = &Pick{CouponIDs: []string{res.Coupons[best].CouponID}, Discount: res.Coupons[best].Discount}
	}
	e.bestStack(&res, e.tidx)
	return res
}

// outcome qualifies one coupon into o (zero); it returns the index of its template's evaluation
// (-1 when the template is missing). The split of an applicable coupon is left to fillSplits.
func (e *evaluator) outcome(o *Outcome, c *Coupon) int32 {
	o.CouponID, o.Template, o.ExpiresAt = c.ID, c.TemplateKey, c.ExpiresAt
	var t *Template
	if e.in.Templates != nil {
		t, _ = e.in.Templates(c.TemplateKey, c.TemplateVersion)
	}
	if t == nil {
		if e.missing == nil {
			e.missing = e.reasonList(e.msg.templateMissing())
		}
		o.Reasons = e.missing
		return -1
	}
	o.Type = t.typ
	ti := e.template(t)
	te := &e.tevals[ti]
	var timeReason *Reason
	switch now := e.in.Now; {
	case !c.StartsAt.IsZero() && now.Before(c.StartsAt):
		timeReason = e.timeReason(timeNotStarted, c.StartsAt)
	case !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt):
		timeReason = e.timeReason(timeExpired, c.ExpiresAt)
	}
	switch {
	case timeReason != nil:
		rs := e.reasons.take(1 + len(te.hard))
		rs[0] = *timeReason
		copy(rs[1:], te.hard)
		o.Reasons = rs
		return ti
	case len(te.hard) > 0:
		o.Reasons = te.hard
		return ti
	}
	e.qualify(te)
	if len(te.soft) > 0 {
		o.Reasons = te.soft
		return ti
	}
	o.Applicable, o.Discount = true, te.value
	if !te.wantSplit {
		te.wantSplit = true
		e.splitItems += len(te.elig)
	}
	return ti
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

// scan passes once over the outcomes once the splits are computed: it gives the applicable ones
// their split, picks each template's candidate for the stack search (its applicable coupon of
// positive value that expires first, then the smallest id) and returns the index of the best
// single coupon (highest positive value, then earliest expiry, then smallest id; -1: none).
func (e *evaluator) scan(outs []Outcome, tidx []int32) int {
	best := -1
	for i := range outs {
		o := &outs[i]
		if !o.Applicable {
			continue
		}
		te := &e.tevals[tidx[i]]
		o.Split = te.split
		if o.Discount <= 0 {
			continue
		}
		if best < 0 || betterSingle(o, &outs[best]) {
			best = i
		}
		if r := te.rep; r < 0 || cmpExpiry(o.ExpiresAt, outs[r].ExpiresAt) < 0 ||
			(o.ExpiresAt.Equal(outs[r].ExpiresAt) && o.CouponID < outs[r].CouponID) {
			te.rep = int32(i)
		}
	}
	return best
}

func (e *evaluator) reasonList(r Reason) []Reason {
	rs := e.reasons.take(1)
	rs[0] = r
	return rs
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
		te.hard = e.reasons.take(n)
		copy(te.hard, hard[:n])
	}
	return i
}

// eligibleItems finds the items every item-level rule admits. When there is none, it adds one
// reason per dimension that turned an item away first, in dimension order, naming the first such
// item's value.
func (e *evaluator) eligibleItems(te *tmplEval, hard []Reason, n int) int {
	items := e.cart.Items
	var failed [numDims]int32 // 1 + the index of the first item turned away by that dimension
	elig := e.eligBuf[:0]
	for i := range items {
		if d := te.t.admitsItemHashed(&items[i], &e.itemHash[i]); d >= 0 {
			if failed[d] == 0 {
				failed[d] = int32(i) + 1
			}
			continue
		}
		elig = append(elig, int32(i))
	}
	e.eligBuf = elig
	switch {
	case len(elig) == len(items):
		te.elig = e.allIdx
		return n
	case len(elig) > 0:
		te.elig = e.idx.take(len(elig))
		copy(te.elig, elig)
		return n
	}
	for d := firstItemDim; d < numDims; d++ {
		if failed[d] > 0 {
			hard[n] = e.notForReason(d, itemValue(&items[failed[d]-1], d))
			n++
		}
	}
	return n
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
		te.soft = e.reasonList(e.msg.condition())
		return
	}
	if th := t.threshold; th > 0 {
		base := e.total
		if t.scopeApplicable {
			base = te.base
		}
		if base < th {
			te.soft = e.reasonList(e.msg.belowThreshold(t, th-base))
			return
		}
	}
	te.value = t.value(te.base)
}

// noUser stands for a missing user: an empty map, never written.
var noUser = map[string]any{}

// condition evaluates the template's CEL condition; an evaluation error counts as not met.
func (e *evaluator) condition(t *Template) bool {
	if e.vars == nil {
		user := e.in.User
		if user == nil {
			user = noUser
		}
		e.vars = e.cel.fill(user, e.cart, e.cur.code, e.amounts, e.total)
	}
	ok, err := t.cond.EvalBool(context.Background(), e.vars)
	return err == nil && ok
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
