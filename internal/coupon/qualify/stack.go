package qualify

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"
)

// The coupon families: a stack holds discounts or seller bonuses, never both.
const (
	famDiscount = iota
	famBonus
	numFamilies
)

func (c *cand) family() int { return kindFamily(c.kind) }

func family(t *Template) int { return kindFamily(t.kind) }

// kindFamily is the family of a kind.
func kindFamily(kind int8) int {
	if kind == kindSellerBonus {
		return famBonus
	}
	return famDiscount
}

// cand is one coupon the stack search may use: the best coupon of its template (earliest expiry,
// then id) when that coupon applies.
type cand struct {
	o     int32 // index in the outcomes
	t     *Template
	value int64 // standalone value
	base  int64 // the amount of its eligible items
	elig  []int32
	mask  uint64 // elig as bits, when the cart has at most 64 items
	exp   expiry
	id    string
	// group and key are dense indexes of the stack group and template key, within the search;
	// gid and kid within the evaluation (tmplEval's group and key).
	group, key int32
	gid, kid   int32
	limit      int32
	// kind and excl are the template's, copied so that ordering candidates reads the candidates
	// only.
	kind int8
	excl bool
}

// newCand is the candidate of coupon o (expiring at exp, id) of template te.
func newCand(o int32, te *tmplEval, exp expiry, id string) cand {
	t := te.t
	return cand{o: o, t: t, value: te.value, base: te.base, elig: te.elig, mask: te.mask, exp: exp, id: id,
		gid: te.group, kid: te.key, limit: t.limit, kind: t.kind, excl: t.excl}
}

// expiry is an expiry as two numbers that order as the times do, "no expiry" last: Unix seconds
// and nanoseconds, and for "no expiry" (zero) the largest seconds and a nanosecond no time has.
type expiry struct {
	sec  int64
	nsec int32
}

func expiryOf(t time.Time) expiry {
	if t.IsZero() {
		return expiry{sec: math.MaxInt64, nsec: 1e9}
	}
	return instantOf(t)
}

// startOf is a start as an expiry: "no start" (zero) is before any time.
func startOf(t time.Time) expiry {
	if t.IsZero() {
		return expiry{sec: math.MinInt64}
	}
	return instantOf(t)
}

// instantOf is t as an expiry, the zero time included.
func instantOf(t time.Time) expiry { return expiry{sec: t.Unix(), nsec: int32(t.Nanosecond())} }

// before reports whether a comes before b.
func (a expiry) before(b expiry) bool { return a.sec < b.sec || (a.sec == b.sec && a.nsec < b.nsec) }

// cmpExp compares expiries, "no expiry" last.
func cmpExp(a, b expiry) int {
	if c := cmp.Compare(a.sec, b.sec); c != 0 {
		return c
	}
	return cmp.Compare(a.nsec, b.nsec)
}

// cmpApply is the order in which a stack applies its coupons: percentages first, then amounts off
// (the usual checkout order: 折扣 before 满减), then seller bonuses; within a kind by standalone
// value, higher first. Equal values are ordered by what makes coupons interchangeable (group,
// terms, eligible items), then by expiry and id, so that interchangeable coupons sit together,
// earliest expiry first.
func cmpApply(a, b *cand) int {
	if c := cmp.Compare(a.kind, b.kind); c != 0 {
		return c
	}
	if c := cmp.Compare(b.value, a.value); c != 0 {
		return c
	}
	if c := cmpTerms(a, b); c != 0 {
		return c
	}
	if c := cmpExp(a.exp, b.exp); c != 0 {
		return c
	}
	return strings.Compare(a.id, b.id)
}

// sortApply sorts candidates in application order (cmpApply), using keys as scratch. There are a
// few dozen at most: a binary insertion sort of keys that hold each candidate's kind and value (see
// applyKey) reads the candidates only to break ties, and then moves them once.
func sortApply(cs []*cand, keys []applyKey) []applyKey {
	if len(cs) > 64 {
		slices.SortFunc(cs, cmpApply)
		return keys
	}
	keys = keys[:0]
	for i, c := range cs {
		k := applyKey{kv: uint64(c.kind)<<56 | uint64(MaxAmount-c.value), i: int32(i)}
		lo, hi := 0, len(keys) // k goes after the keys that do not come after it
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if p := keys[m]; p.kv < k.kv || (p.kv == k.kv && cmpApply(cs[p.i], c) <= 0) {
				lo = m + 1
			} else {
				hi = m
			}
		}
		keys = append(keys, k)
		copy(keys[lo+1:], keys[lo:len(keys)-1])
		keys[lo] = k
	}
	// Place them: cs[k.i] goes to k's rank. Each cycle of the permutation is followed from its
	// smallest rank, the candidate there held aside until its place is free.
	for r := range keys {
		if keys[r].i < 0 || keys[r].i == int32(r) {
			continue
		}
		held, at := cs[r], r
		for {
			from := int(keys[at].i)
			keys[at].i = -1
			if from == r {
				cs[at] = held
				break
			}
			cs[at] = cs[from]
			at = from
		}
	}
	return keys
}

// applyKey is a candidate's index and its kind and value as one number that orders as cmpApply
// begins: kind first, then the higher value (values are at most MaxAmount).
type applyKey struct {
	kv uint64
	i  int32
}

// cmpTerms compares what decides a coupon's effect in a stack; 0 means interchangeable.
func cmpTerms(a, b *cand) int {
	ta, tb := a.t, b.t
	if c := strings.Compare(ta.group, tb.group); c != 0 {
		return c
	}
	if c := cmp.Compare(a.limit, b.limit); c != 0 {
		return c
	}
	if c := cmp.Compare(ta.bp, tb.bp); c != 0 {
		return c
	}
	if c := cmp.Compare(ta.cap, tb.cap); c != 0 {
		return c
	}
	if c := cmp.Compare(ta.amount, tb.amount); c != 0 {
		return c
	}
	if c := cmp.Compare(a.exclusive(), b.exclusive()); c != 0 {
		return c
	}
	return slices.Compare(a.elig, b.elig)
}

func (c *cand) exclusive() int {
	if c.excl {
		return 1
	}
	return 0
}

// stack is a chosen combination: its value and its members in application order.
type stack struct {
	v    int64
	fam  int
	excl bool
	c    []*cand
}

// better reports whether a beats b: more value, then fewer coupons, then earlier expiries (sorted,
// compared in turn), then smaller coupon ids.
func (a *stack) better(b *stack) bool {
	if a.v != b.v {
		return a.v > b.v
	}
	if len(a.c) != len(b.c) {
		return len(a.c) < len(b.c)
	}
	return cmpMembers(a.c, b.c) < 0
}

// cmpMembers compares stacks of as many coupons by their expiries (sorted, compared in turn), then
// their ids (likewise).
func cmpMembers(a, b []*cand) int {
	// Stacks are small: the scratch lives on the stack unless one holds more than 8 coupons.
	var ebuf [2][8]expiry
	var ibuf [2][8]string
	ea, eb := ebuf[0][:0], ebuf[1][:0]
	ia, ib := ibuf[0][:0], ibuf[1][:0]
	for _, c := range a {
		ea, ia = insertSorted(ea, c.exp, cmpExp), insertSorted(ia, c.id, strings.Compare)
	}
	for _, c := range b {
		eb, ib = insertSorted(eb, c.exp, cmpExp), insertSorted(ib, c.id, strings.Compare)
	}
	if c := slices.CompareFunc(ea, eb, cmpExp); c != 0 {
		return c
	}
	return slices.Compare(ia, ib)
}

// insertSorted inserts v into the sorted s.
func insertSorted[T any](s []T, v T, cmp func(a, b T) int) []T {
	s = append(s, v)
	i := len(s) - 1
	for ; i > 0 && cmp(s[i-1], v) > 0; i-- {
		s[i] = s[i-1]
	}
	s[i] = v
	return s
}

// betterAlone reports whether a, used alone, beats b used alone: stack.better for stacks of one.
func betterAlone(a, b *cand) bool {
	if a.value != b.value {
		return a.value > b.value
	}
	if c := cmpExp(a.exp, b.exp); c != 0 {
		return c < 0
	}
	return a.id < b.id
}

// bestStack finds the best stack and gives the applicable coupons it leaves out their reason.
func (e *evaluator) bestStack(res *Result) {
	cands := e.candidates()
	var best *stack
	for f := range numFamilies {
		if s := e.bestOfFamily(cands, f); s != nil && (best == nil || s.better(best)) {
			best = s
		}
	}
	if best == nil {
		return
	}
	pick := e.mem.pick(pickStack, len(best.c))
	pick.Discount = best.v
	for i, c := range best.c {
		pick.CouponIDs[i] = c.id
	}
	res.Best.Stack = pick
	e.leftOut(best)
}

// candidates returns, per template, its candidate picked by scan.
func (e *evaluator) candidates() []cand {
	cands := e.cands[:0]
	for ti := range e.tevals {
		te := &e.tevals[ti]
		if te.rep < 0 {
			continue
		}
		cands = append(cands, newCand(te.rep, te, e.times[te.rep].exp, e.in.Coupons[te.rep].ID))
	}
	e.cands = cands
	return cands
}

// bestOfFamily is the better of the family's best exclusive coupon alone and its best group
// stack; nil when the family has no candidate.
func (e *evaluator) bestOfFamily(cands []cand, fam int) *stack {
	var alone *cand
	group := e.group[:0]
	for i := range cands {
		c := &cands[i]
		if c.family() != fam {
			continue
		}
		if !c.excl {
			group = append(group, c)
			continue
		}
		if alone == nil || betterAlone(c, alone) {
			alone = c
		}
	}
	e.group = group
	var best *stack
	if alone != nil {
		st := &e.stacks[fam][0]
		*st = stack{v: alone.value, fam: fam, excl: true, c: append(st.c[:0], alone)}
		best = st
	}
	if len(group) > 0 {
		st := &e.stacks[fam][1]
		e.searchGroup(st, group, fam == famDiscount)
		st.fam = fam
		if len(st.c) > 0 && (best == nil || st.better(best)) {
			best = st
		}
	}
	return best
}

// searchGroup finds the best group stack of one family, into out. Unless the root settles
// everything (seller bonuses of distinct templates, whose values add up), it starts from the
// modular optimum (per group, the best standalone values its limits allow, valued exactly in
// application order) or, when that one's coupons take from the same items, from the greedy stack
// if it is better, drops the candidates that cannot be part of anything better, and runs the
// branch and bound on the rest. Within its node budget the search is exact: where it starts
// changes only its speed.
func (e *evaluator) searchGroup(out *stack, group []*cand, consume bool) {
	e.applyKeys = sortApply(group, e.applyKeys)
	s := &e.search
	groups, keys := e.numbered()
	d := s.denseIndexes(group, groups, keys)
	s.reset(group, d, e.amounts, consume, &e.sp)
	if consume || s.dupKeys {
		lists := s.byGroup()
		inc, v0, spoilt := s.incumbent(lists)
		s.best.v, s.best.idx = v0, append(s.best.idx[:0], inc...)
		if spoilt {
			s.greedy()
		}
		kept, moved := s.prune(lists, s.best.idx, s.best.v)
		if len(kept) < len(group) {
			for i, j := range s.best.idx {
				s.best.idx[i] = moved[j]
			}
			s.use(kept, d)
		}
	}
	if !consume && !s.dupKeys {
		// Seller bonuses of distinct templates add up: the root settles everything (complete),
		// as the search would at its first node.
		s.nodes = 1
		s.complete(0)
	} else {
		s.staticBounds()
		s.budget = cmp.Or(e.budget, maxSearchNodes)
		s.dfs(0)
	}
	e.nodes = max(e.nodes, s.nodes)
	*out = stack{v: s.best.v, c: out.c[:0]}
	for _, j := range s.best.idx {
		out.c = append(out.c, s.c[j])
	}
}

// groupUse is how a group is used by the best stack, for leftOut: id is its number in the
// evaluation (see idTable).
type groupUse struct {
	name         string
	id           int32
	count, limit int
}

// useOf returns the use of stack group id, nil when the stack has none of it.
func useOf(groups []groupUse, id int32) *groupUse {
	for i := range groups {
		if g := &groups[i]; g.id == id {
			return g
		}
	}
	return nil
}

// fullReason is a "group is full" reason, built once per group and limit.
type fullReason struct {
	group *groupUse
	limit int
	r     reasonSpan
}

// groupFull is the reason of a coupon left out because its group allows limit per order.
func (e *evaluator) groupFull(g *groupUse, limit int) reasonSpan {
	for i := range e.full {
		if f := &e.full[i]; f.limit == limit && f.group == g {
			return f.r
		}
	}
	r := e.addReasons(e.msg.groupFull(g.name, limit))
	e.full = append(e.full, fullReason{group: g, limit: limit, r: r})
	return r
}

// The fixed reasons of leftOut, indexes of its array of shared reasons.
const (
	leftOtherFamily = iota
	leftExclusiveChosen
	leftExclusiveSelf
	leftOneTemplate
	leftAddsNothing
	numLeft
)

// leftOut gives each applicable coupon outside the best stack the reason it is left out. Coupons
// left out for the same reason share it; the reason depends on the coupon's template only.
func (e *evaluator) leftOut(best *stack) {
	in := resize(e.inStack, len(e.cs))
	e.inStack = in
	groups := e.groups[:0]
	for _, c := range best.c {
		in[c.o] = true
		if best.excl {
			continue
		}
		g := useOf(groups, c.gid)
		if g == nil {
			groups = append(groups, groupUse{name: c.t.group, id: c.gid, limit: MaxPerOrderLimit})
			g = &groups[len(groups)-1]
		}
		g.count++
		g.limit = min(g.limit, int(c.t.limit))
	}
	e.groups = groups
	var fixed [numLeft]reasonSpan
	byTemplate := resize(e.leftBy, len(e.tevals))
	e.leftBy = byTemplate
	for _, i := range e.appl {
		if in[i] {
			continue
		}
		ti := e.cs[i].ti
		if byTemplate[ti].n == 0 {
			te := &e.tevals[ti] // its copies of the template's terms: the template is not read
			k := leftAddsNothing
			switch {
			case kindFamily(te.kind) != best.fam:
				k = leftOtherFamily
			case best.excl:
				k = leftExclusiveChosen
			case te.excl:
				k = leftExclusiveSelf
			case best.holds(te.key):
				k = leftOneTemplate
			default:
				if g := useOf(groups, te.group); g != nil && g.count+1 > min(g.limit, int(te.t.limit)) {
					byTemplate[ti] = e.groupFull(g, min(g.limit, int(te.t.limit)))
				}
			}
			if byTemplate[ti].n == 0 {
				if fixed[k].n == 0 {
					fixed[k] = e.addReasons(e.msg.leftOut(k))
				}
				byTemplate[ti] = fixed[k]
			}
		}
		e.cs[i].rs = byTemplate[ti]
	}
	clear(byTemplate)
	clear(groups)
}

// holds reports whether the stack holds a coupon of template key key (see idTable).
func (a *stack) holds(key int32) bool {
	for _, c := range a.c {
		if c.kid == key {
			return true
		}
	}
	return false
}
