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
// pooled: what an evaluation hands back (outcomes, splits, reasons, picks) is freshly allocated,
// or taken from a Buffer's memory (see resultMem); the scratch is kept for the next evaluation.
type evaluator struct {
	input Input
	in    *Input // &input
	msg   messages
	cart  *Cart
	cur   *currency
	// now is in.Now as an expiry; times are the coupons' start and expiry times, the Wallet's or
	// timeBuf.
	now            expiry
	times, timeBuf []couponTime
	amounts        []int64
	total          int64
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
	// versions numbers the template versions of a Wallet (see templateIn).
	versions []int32
	// incMask and excMask are, per rule slot of the Wallet's item index, the items its rule
	// includes and excludes, for a cart of at most 64 items (see ruleMasks).
	incMask, excMask []uint64
	tevals           []tmplEval
	// cs are the coupons' answers (see couponEval); appl lists the applicable coupons.
	cs      []couponEval
	appl    []int32
	sp      splitter
	scratch []int64
	idx     slab[int32]
	// shares carves the splits the result holds: it starts empty for every evaluation.
	shares slab[Share]
	// rbuf holds the evaluation's reasons, named by spans, until writeOutcomes copies them into
	// one block of the result.
	rbuf []Reason
	// splitItems is how many shares the splits of the applicable templates hold: they are
	// allocated at once, by computeSplits, when every coupon has been qualified.
	splitItems int
	// missing is the reason of the coupons whose template is missing, shared.
	missing reasonSpan
	// notFor caches the "not valid for" reasons of this cart's values (see notForReason), by
	// dimension and item (the cart first), lastTime the last not-started and expired reasons.
	notFor   []Reason
	lastTime [2]timeReasonAt
	// The stack search's and leftOut's scratch.
	inStack   []bool
	groups    []groupUse
	full      []fullReason
	leftBy    []reasonSpan
	cands     []cand
	group     []*cand
	applyKeys []applyKey
	// stacks are, per family, its best exclusive coupon alone and its best group stack.
	stacks [numFamilies][2]stack
	search searcher
	// groupIDs and keyIDs number the stack groups and the template keys of the templates met.
	groupIDs, keyIDs idTable
	// mem is where the result's memory comes from (see resultMem).
	mem resultMem
	// strs holds the messages of the evaluator's last evaluations.
	strs interner
	// nodes is the most nodes a stack search of this evaluation visited; budget, when set,
	// replaces maxSearchNodes (for tests).
	nodes, budget int
}

// tmplEval is what a template gives for the cart, shared by every coupon of that template.
type tmplEval struct {
	t *Template
	// elig are the indexes of the eligible items and base their amount; mask has their bits when
	// the cart has at most 64 items.
	elig []int32
	mask uint64
	// split is set by computeSplits for the templates that apply (wantSplit).
	split []Share
	base  int64
	// soft (condition, threshold) and value are computed once a coupon needs them (softDone).
	value int64
	soft  reasonSpan
	// hard are the reasons that do not depend on the coupon: currency, business line, channel,
	// no eligible item.
	hard reasonSpan
	// rep is the outcome index of the template's candidate for the stack search (-1: none).
	rep int32
	// group and key number the template's stack group and key within the evaluation (the
	// Wallet's numbers, or idTable's); kind and excl are the template's, so that later passes
	// need not read it.
	group, key          int32
	kind                int8
	excl                bool
	softDone, wantSplit bool
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
	e.input = *in // a copy, so that the caller's Input need not escape to the heap
	if w := in.Wallet; w != nil {
		e.input.Coupons, e.input.Templates = w.coupons, nil
		e.versions = resize(e.versions, len(w.templates))
		e.times = w.times
	} else {
		e.timeBuf = timesOf(reuse(e.timeBuf, len(in.Coupons)), in.Coupons)
		e.times = e.timeBuf
	}
	in = &e.input
	e.now = instantOf(in.Now)
	e.in, e.cart = &e.input, &e.input.Cart
	e.msg = messages{zh: strings.HasPrefix(in.Lang, "zh"), strs: &e.strs}
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
	e.notFor = resize(e.notFor, int(numDims)*(len(in.Cart.Items)+1))
	if w := in.Wallet; w != nil && w.items != nil && len(e.allBits) == 1 {
		e.ruleMasks(w.items)
	}
	e.tevals = e.tevals[:0]
	e.groupIDs.reset()
	e.keyIDs.reset()
	if in.Wallet == nil { // a Wallet has its templates numbered (see templateIn)
		size := 16
		for size < 2*len(in.Coupons) {
			size *= 2
		}
		e.slots = resize(e.slots, size)
		e.keySlots = resize(e.keySlots, size)
	}
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
	e.groupIDs.release()
	e.keyIDs.release()
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
	e.in, e.cart, e.vars, e.input, e.times = nil, nil, nil, Input{}, nil
	e.cel.reset()
	clear(e.conds)
	e.conds = e.conds[:0]
	e.shares = slab[Share]{}
	e.mem = resultMem{}
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
// best stack. The result's memory comes from mem when it is not nil (and what was used is left in
// it), else it is allocated.
func evaluate(in *Input, mem *resultMem) Result {
	e := getEvaluator(in)
	defer e.release()
	if mem == nil {
		return e.run()
	}
	e.mem = *mem
	res := e.run()
	*mem = e.mem
	return res
}

// resultMem is the memory a Result references: its outcomes, the splits' shares, the reasons, and
// the picks and their coupon ids. An evaluation takes each array from it when it is large enough,
// else allocates one, and leaves there the arrays it used, for a Buffer's next evaluation.
type resultMem struct {
	outs    []Outcome
	shares  []Share
	reasons []Reason
	// picks holds the picks, and ids their coupon ids (in picks.ids unless there are many).
	picks *picks
	ids   []string
}

// picks are the best single coupon and the best stack, allocated at once with room for the ids of
// a stack of up to 7 coupons.
type picks struct {
	p   [2]Pick
	ids [8]string
}

// Which pick of picks.p.
const (
	pickSingle = iota
	pickStack
)

// pick returns pick k of the result, with room for n coupon ids.
func (m *resultMem) pick(k, n int) *Pick {
	if m.picks == nil {
		m.picks = new(picks)
	}
	if m.ids == nil {
		m.ids = m.picks.ids[:0]
	}
	if cap(m.ids)-len(m.ids) < n {
		m.ids = make([]string, 0, max(n, 8))
	}
	l := len(m.ids)
	m.ids = m.ids[:l+n]
	m.picks.p[k] = Pick{CouponIDs: m.ids[l : l+n : l+n]}
	return &m.picks.p[k]
}

// reuse returns s with length n, reusing its array when it is large enough; the contents are
// left as they are. It is never nil: an empty result has an empty list of outcomes, not none.
func reuse[T any](s []T, n int) []T {
	if s == nil || cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func (e *evaluator) run() Result {
	in := e.in
	e.cs = reuse(e.cs, len(in.Coupons))
	e.appl = e.appl[:0]
	e.mem.ids = e.mem.ids[:0]
	best := -1
	for i := range in.Coupons {
		ce := e.qualifyCoupon(i)
		e.cs[i] = ce
		if !ce.applies {
			continue
		}
		e.appl = append(e.appl, int32(i))
		if te := &e.tevals[ce.ti]; te.value > 0 {
			if best < 0 || e.betterSingle(i, best) {
				best = i
			}
			e.offer(te, i)
		}
	}
	e.computeSplits()
	res := Result{Amount: e.total}
	if best >= 0 {
		res.Best.Single = e.mem.pick(pickSingle, 1)
		res.Best.Single.CouponIDs[0] = in.Coupons[best].ID
		res.Best.Single.Discount = e.tevals[e.cs[best].ti].value
	}
	e.bestStack(&res)
	res.Coupons = e.writeOutcomes()
	return res
}

// couponEval is one coupon's answer until writeOutcomes writes it: pointer-free and small, so that
// the evaluation's passes over the coupons read a few kilobytes rather than the outcomes.
type couponEval struct {
	ti int32 // its template's evaluation, -1 when the template is missing
	// rs are its reasons: why it does not apply, or why it is left out of the best stack.
	rs      reasonSpan
	applies bool
}

// qualifyCoupon qualifies coupon i. The split of an applicable coupon is left to computeSplits.
func (e *evaluator) qualifyCoupon(i int) couponEval {
	c := &e.in.Coupons[i]
	var ti int32
	if w := e.in.Wallet; w != nil {
		ti = e.templateIn(w, i)
	} else {
		ti = e.templateOf(c)
	}
	if ti < 0 {
		if e.missing.n == 0 {
			e.missing = e.addReasons(e.msg.templateMissing())
		}
		return couponEval{ti: -1, rs: e.missing}
	}
	te := &e.tevals[ti]
	var timeReason *Reason
	switch ct := &e.times[i]; {
	case e.now.before(ct.start):
		timeReason = e.timeReason(timeNotStarted, c.StartsAt)
	case !e.now.before(ct.exp):
		timeReason = e.timeReason(timeExpired, c.ExpiresAt)
	}
	switch {
	case timeReason != nil:
		rs := e.addReasons(*timeReason)
		e.rbuf = append(e.rbuf, e.rbuf[te.hard.off:te.hard.off+te.hard.n]...)
		rs.n += te.hard.n
		return couponEval{ti: ti, rs: rs}
	case te.hard.n > 0:
		return couponEval{ti: ti, rs: te.hard}
	}
	e.qualify(te)
	if te.soft.n > 0 {
		return couponEval{ti: ti, rs: te.soft}
	}
	if !te.wantSplit { // the template's first applicable coupon
		te.wantSplit = true
		e.splitItems += len(te.elig)
	}
	return couponEval{ti: ti, applies: true}
}

// outcome qualifies coupon i into o, all but its split and reasons (see fill).
func (e *evaluator) outcome(o *Outcome, i int) couponEval {
	ce := e.qualifyCoupon(i)
	e.fill(o, &e.in.Coupons[i], ce)
	return ce
}

// fill writes every field of coupon c's outcome but its split and reasons.
func (e *evaluator) fill(o *Outcome, c *Coupon, ce couponEval) {
	o.CouponID, o.Template, o.ExpiresAt = c.ID, c.TemplateKey, c.ExpiresAt
	o.Type, o.Applicable, o.Discount = e.typeAndValue(ce)
}

// typeAndValue are the type, applicability and value of an outcome.
func (e *evaluator) typeAndValue(ce couponEval) (string, bool, int64) {
	if ce.ti < 0 {
		return "", false, 0
	}
	te := &e.tevals[ce.ti]
	if !ce.applies {
		return kindTypes[te.kind], false, 0
	}
	return kindTypes[te.kind], true, te.value
}

// writeOutcomes writes the outcomes, in wallet order and in one pass over their memory: every
// field of each is written once, so reused memory needs no clearing first. The reasons are copied
// into one block.
func (e *evaluator) writeOutcomes() []Outcome {
	outs := reuse(e.mem.outs, len(e.cs))
	e.mem.outs = outs
	var block []Reason
	if len(e.rbuf) > 0 {
		block = reuse(e.mem.reasons, len(e.rbuf))
		e.mem.reasons = block
		copy(block, e.rbuf)
	}
	for i := range outs {
		ce, c := e.cs[i], &e.in.Coupons[i]
		var split []Share
		if ce.applies {
			split = e.tevals[ce.ti].split
		}
		var reasons []Reason
		if sp := ce.rs; sp.n > 0 {
			reasons = block[sp.off : sp.off+sp.n : sp.off+sp.n]
		}
		o := &outs[i]
		o.CouponID, o.Template, o.ExpiresAt = c.ID, c.TemplateKey, c.ExpiresAt
		o.Type, o.Applicable, o.Discount = e.typeAndValue(ce)
		o.Split, o.Reasons = split, reasons
	}
	return outs
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

// computeSplits computes the splits of the templates that apply, in one block.
func (e *evaluator) computeSplits() {
	if e.splitItems == 0 {
		return
	}
	e.mem.shares = reuse(e.mem.shares, e.splitItems)
	e.shares = slab[Share]{buf: e.mem.shares[:0]}
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
func (e *evaluator) offer(te *tmplEval, i int) {
	if r := te.rep; r < 0 || e.earlier(i, int(r)) {
		te.rep = int32(i)
	}
}

// earlier reports whether coupon i expires before coupon j, "no expiry" last (ties: the smaller
// id).
func (e *evaluator) earlier(i, j int) bool {
	if a, b := e.times[i].exp, e.times[j].exp; a != b {
		return a.before(b)
	}
	return e.in.Coupons[i].ID < e.in.Coupons[j].ID
}

// betterSingle reports whether the applicable coupon i is a better single coupon than j: higher
// value, then earlier expiry, then smaller id.
func (e *evaluator) betterSingle(i, j int) bool {
	if vi, vj := e.tevals[e.cs[i].ti].value, e.tevals[e.cs[j].ti].value; vi != vj {
		return vi > vj
	}
	return e.earlier(i, j)
}

// templateOf returns the index of the evaluation of c's template, -1 when it is missing. Templates
// are looked up once per key and version.
func (e *evaluator) templateOf(c *Coupon) int32 {
	mask := uint64(len(e.keySlots) - 1)
	hash := keyHash(c.TemplateKey, c.TemplateVersion)
	h := hash & mask
	for ; e.keySlots[h] != 0; h = (h + 1) & mask {
		k := &e.keys[e.keySlots[h]-1]
		if k.hash == hash && k.version == c.TemplateVersion && k.key == c.TemplateKey {
			return k.ti
		}
	}
	ti := int32(-1)
	if t := find(e.in.Templates, c.TemplateKey, c.TemplateVersion); t != nil {
		ti = e.template(t)
	}
	e.keys = append(e.keys, keyTemplate{hash: hash, key: c.TemplateKey, version: c.TemplateVersion,
		ti: ti})
	e.keySlots[h] = int32(len(e.keys))
	return ti
}

// idTable numbers strings (stack groups, template keys) from 0 in the order they are met: an
// open-addressing table of their numbers (1 + number; 0: free) on their hashes, kept at most half
// full.
type idTable struct {
	slots  []int32
	names  []string
	hashes []uint64
}

// id returns the number of name, whose hash is h.
func (t *idTable) id(h uint64, name string) int32 {
	if 2*(len(t.names)+1) > len(t.slots) {
		t.grow()
	}
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for ; t.slots[i] != 0; i = (i + 1) & mask {
		if n := t.slots[i] - 1; t.hashes[n] == h && t.names[n] == name {
			return n
		}
	}
	t.names, t.hashes = append(t.names, name), append(t.hashes, h)
	t.slots[i] = int32(len(t.names))
	return int32(len(t.names) - 1)
}

// grow doubles the table (16 slots at first) and places the names again.
func (t *idTable) grow() {
	t.slots = resize(t.slots, max(16, 2*len(t.slots)))
	mask := uint64(len(t.slots) - 1)
	for n, h := range t.hashes {
		i := h & mask
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = int32(n + 1)
	}
}

// len is how many names the table holds.
func (t *idTable) len() int { return len(t.names) }

// reset empties the table, keeping its arrays.
func (t *idTable) reset() {
	clear(t.slots)
	t.names, t.hashes = t.names[:0], t.hashes[:0]
}

// release drops the names.
func (t *idTable) release() { clear(t.names) }

// keyHash is a hash of a template key and version for an evaluation's table of keys. Keys are
// short: it reads them eight bytes at a time, inline, which costs less than a call of maphash.
func keyHash(key string, version int) uint64 {
	h := uint64(len(key)) ^ uint64(version)*0x9e3779b97f4a7c15
	for ; len(key) > 8; key = key[8:] {
		h = (h ^ le64(key)) * 0xbf58476d1ce4e5b9
		h ^= h >> 31
	}
	// The last 1 to 8 bytes: two loads that overlap when there are fewer than 8.
	var tail uint64
	switch n := len(key); {
	case n >= 4:
		tail = uint64(le32(key)) | uint64(le32(key[n-4:]))<<32
	case n > 0:
		tail = uint64(key[0]) | uint64(key[n/2])<<8 | uint64(key[n-1])<<16
	}
	h = (h ^ tail) * 0xbf58476d1ce4e5b9 // the finalizer of splitmix64
	h = (h ^ h>>27) * 0x94d049bb133111eb
	return h ^ h>>31
}

// le64 is the first eight bytes of s as a little-endian number (one load).
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// le32 is the first four bytes of s as a little-endian number (one load).
func le32(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// keyTemplate is a template key and version met by an evaluation, their hash (see keyHash) and
// the index of their template's evaluation (-1: missing).
type keyTemplate struct {
	hash    uint64
	key     string
	version int
	ti      int32
}

// template returns the index of t's evaluation, computing its hard reasons and eligible items and
// numbering its stack group and key on first use.
func (e *evaluator) template(t *Template) int32 {
	mask := uint64(len(e.slots) - 1)
	h := t.hash & mask
	for ; e.slots[h] != 0; h = (h + 1) & mask {
		if i := e.slots[h] - 1; e.tevals[i].t == t {
			return i
		}
	}
	i := e.newTemplate(t, -1)
	e.slots[h] = i + 1
	te := &e.tevals[i]
	te.group, te.key = e.groupIDs.id(t.groupHash, t.group), e.keyIDs.id(t.keyHash, t.Key)
	return i
}

// newTemplate adds t's evaluation, its hard reasons and eligible items computed, and returns its
// index, its item rules' masks from slot at on when at >= 0 (see eligibleIndexed).
func (e *evaluator) newTemplate(t *Template, at int32) int32 {
	i := int32(len(e.tevals))
	e.tevals = append(e.tevals, tmplEval{t: t, rep: -1, kind: t.kind, excl: t.excl})
	e.hardReasons(&e.tevals[i], at)
	return i
}

// numbered is how many stack groups and template keys the evaluation numbered (see tmplEval's
// group and key).
func (e *evaluator) numbered() (groups, keys int) {
	if w := e.in.Wallet; w != nil {
		return w.groups, w.keys
	}
	return e.groupIDs.len(), e.keyIDs.len()
}

// hardReasons finds the template's eligible items and their amount, and its reasons that do not
// depend on the coupon, appended to rbuf (nothing else appends there meanwhile); slot, when not
// negative, is the first slot of its item rules' masks (see eligibleIndexed).
func (e *evaluator) hardReasons(te *tmplEval, slot int32) {
	t := te.t
	at := len(e.rbuf)
	if t.cur != e.cur { // both come from currencies: one pointer per code
		e.rbuf = append(e.rbuf, e.msg.currency(t.Spec.Currency))
	}
	for i := range t.rules[:t.cartRules] {
		r := &t.rules[i]
		if v := cartValue(e.cart, r.d); !r.admits(v) {
			e.rbuf = append(e.rbuf, e.notForReason(r.d, -1))
		}
	}
	te.elig = e.allIdx
	switch {
	case !t.itemRules():
	case slot >= 0 && len(e.allBits) == 1: // see ruleMasks
		e.eligibleIndexed(te, slot)
	default:
		e.eligibleItems(te)
	}
	if len(e.allBits) == 1 {
		te.mask = e.allBits[0]
		if len(te.elig) < len(e.allIdx) {
			te.mask = e.live[0] // what eligibleItems left
		}
	}
	if len(e.rbuf) == at {
		if len(te.elig) == len(e.allIdx) {
			te.base = e.total // every item: the cart's total is their sum
		} else {
			for _, i := range te.elig {
				te.base += e.amounts[i]
			}
		}
		if te.base == 0 {
			e.rbuf = append(e.rbuf, e.msg.noPricedItem())
		}
	}
	te.hard = reasonSpan{off: int32(at), n: int32(len(e.rbuf) - at)}
}

// eligibleItems finds the items every item-level rule admits. When there is none, it appends to
// rbuf one reason per dimension that turned an item away first, in dimension order, naming the
// first such item's value. The rules are applied in turn to the items the earlier ones admitted,
// so an item is turned away by its first failing rule. Only the items whose value's hash bit is
// among the rule's bits (see withBits) are compared with its lists.
func (e *evaluator) eligibleItems(te *tmplEval) {
	t := te.t
	live := e.live[:len(e.allBits)]
	copy(live, e.allBits)
	var failed [numDims]int32 // 1 + the index of the first item turned away by that dimension
	for ri := int(t.cartRules); ri < len(t.rules); ri++ {
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
	e.setEligible(te, &failed)
}

// setEligible sets the template's eligible items, those of e.live; when there is none, it
// appends to rbuf one reason per dimension that turned an item away first (failed: 1 + that
// item's index), in dimension order.
func (e *evaluator) setEligible(te *tmplEval, failed *[numDims]int32) {
	live := e.live[:len(e.allBits)]
	count := 0
	for _, m := range live {
		count += bits.OnesCount64(m)
	}
	switch {
	case count == len(e.allIdx):
		te.elig = e.allIdx
		return
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
		return
	}
	te.elig = nil
	for d := firstItemDim; d < numDims; d++ {
		if failed[d] > 0 {
			e.rbuf = append(e.rbuf, e.notForReason(d, int(failed[d]-1)))
		}
	}
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

// notForReason is the "not valid for" reason of dimension d's value on the cart (item < 0, for a
// cart-level dimension) or on item item, built once per evaluation.
func (e *evaluator) notForReason(d dim, item int) Reason {
	slot := &e.notFor[int(d)*(len(e.amounts)+1)+item+1]
	if slot.Code == "" {
		v := cartValue(e.cart, d)
		if item >= 0 {
			v = e.itemVals[item][d]
		}
		*slot = e.msg.notFor(d, v)
	}
	return *slot
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
