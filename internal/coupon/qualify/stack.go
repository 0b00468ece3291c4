package qualify

import (
	"cmp"
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

func (c *cand) family() int {
	if c.kind == kindSellerBonus {
		return famBonus
	}
	return famDiscount
}

func family(t *Template) int {
	if t.kind == kindSellerBonus {
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
	elig  []int32
	exp   time.Time
	id    string
	// group and key are dense indexes of the stack group and template key, within the search.
	group, key int32
	limit      int32
	// kind and excl are the template's, copied so that ordering candidates reads the candidates
	// only.
	kind int8
	excl bool
}

// newCand is the candidate of coupon o (expiring at exp, id) of template te.
func newCand(o int32, te *tmplEval, exp time.Time, id string) cand {
	t := te.t
	return cand{o: o, t: t, value: te.value, elig: te.elig, exp: exp, id: id,
		limit: int32(t.Spec.Stacking.MaxPerOrder), kind: t.kind, excl: t.excl}
}

// cmpExpiry compares expiries, "no expiry" (zero) last.
func cmpExpiry(a, b time.Time) int {
	switch {
	case a.Equal(b):
		return 0
	case a.IsZero():
		return 1
	case b.IsZero():
		return -1
	case a.Before(b):
		return -1
	}
	return 1
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
	if c := cmpExpiry(a.exp, b.exp); c != 0 {
		return c
	}
	return strings.Compare(a.id, b.id)
}

// cmpTerms compares what decides a coupon's effect in a stack; 0 means interchangeable.
func cmpTerms(a, b *cand) int {
	sa, sb := &a.t.Spec, &b.t.Spec
	if c := strings.Compare(sa.Stacking.Group, sb.Stacking.Group); c != 0 {
		return c
	}
	if c := cmp.Compare(a.limit, b.limit); c != 0 {
		return c
	}
	if c := cmp.Compare(sa.PercentBP, sb.PercentBP); c != 0 {
		return c
	}
	if c := cmp.Compare(sa.Cap, sb.Cap); c != 0 {
		return c
	}
	if c := cmp.Compare(sa.Amount, sb.Amount); c != 0 {
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

// betterSingle reports whether a is a better single coupon than b: higher value, then earlier
// expiry, then smaller id.
func betterSingle(a, b *Outcome) bool {
	if a.Discount != b.Discount {
		return a.Discount > b.Discount
	}
	if c := cmpExpiry(a.ExpiresAt, b.ExpiresAt); c != 0 {
		return c < 0
	}
	return a.CouponID < b.CouponID
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

func cmpMembers(a, b []*cand) int {
	// Stacks are small: the scratch lives on the stack unless one holds more than 8 coupons.
	var ebuf [2][8]time.Time
	var ibuf [2][8]string
	ea, eb := ebuf[0][:0], ebuf[1][:0]
	ia, ib := ibuf[0][:0], ibuf[1][:0]
	for _, c := range a {
		ea, ia = append(ea, c.exp), append(ia, c.id)
	}
	for _, c := range b {
		eb, ib = append(eb, c.exp), append(ib, c.id)
	}
	slices.SortFunc(ea, cmpExpiry)
	slices.SortFunc(eb, cmpExpiry)
	if c := slices.CompareFunc(ea, eb, cmpExpiry); c != 0 {
		return c
	}
	slices.Sort(ia)
	slices.Sort(ib)
	return slices.Compare(ia, ib)
}

// betterAlone reports whether a, used alone, beats b used alone: stack.better for stacks of one.
func betterAlone(a, b *cand) bool {
	if a.value != b.value {
		return a.value > b.value
	}
	if c := cmpExpiry(a.exp, b.exp); c != 0 {
		return c < 0
	}
	return a.id < b.id
}

// bestStack finds the best stack and gives the applicable coupons it leaves out their reason.
func (e *evaluator) bestStack(res *Result, tidx []int32) {
	cands := e.candidates(res.Coupons)
	var best *stack
	for f := range numFamilies {
		if s := e.bestOfFamily(cands, f); s != nil && (best == nil || s.better(best)) {
			best = s
		}
	}
	if best == nil {
		return
	}
	pick := &Pick{CouponIDs: make([]string, len(best.c)), Discount: best.v}
	for i, c := range best.c {
		pick.CouponIDs[i] = c.id
	}
	res.Best.Stack = pick
	e.leftOut(res.Coupons, tidx, best)
}

// candidates returns, per template, its candidate picked by scan.
func (e *evaluator) candidates(outs []Outcome) []cand {
	cands := e.cands[:0]
	for ti := range e.tevals {
		te := &e.tevals[ti]
		if te.rep < 0 {
			continue
		}
		cands = append(cands, newCand(te.rep, te, outs[te.rep].ExpiresAt, outs[te.rep].CouponID))
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
		best = &stack{v: alone.value, fam: fam, excl: true, c: []*cand{alone}}
	}
	if len(group) > 0 {
		s := e.searchGroup(group, fam == famDiscount)
		s.fam = fam
		if len(s.c) > 0 && (best == nil || s.better(best)) {
			best = s
		}
	}
	return best
}

// searchGroup finds the best group stack of one family. It starts from the modular optimum (per
// group, the best standalone values its limits allow, valued exactly in application order), drops
// the candidates that cannot be part of anything better, and runs the branch and bound on the
// rest.
func (e *evaluator) searchGroup(group []*cand, consume bool) *stack {
	slices.SortFunc(group, cmpApply)
	s := &e.search
	d := s.denseIndexes(group)
	s.reset(group, d, e.amounts, consume, &e.sp)
	inc, v0 := s.incumbent()
	kept, moved := s.prune(inc, v0)
	if len(kept) < len(group) {
		for i, j := range inc {
			inc[i] = moved[j]
		}
		s.reset(kept, d, e.amounts, consume, &e.sp)
	}
	s.best.v, s.best.idx = v0, append(s.best.idx[:0], inc...)
	s.budget = cmp.Or(e.budget, maxSearchNodes)
	s.dfs(0)
	e.nodes = max(e.nodes, s.nodes)
	out := &stack{v: s.best.v, c: make([]*cand, len(s.best.idx))}
	for i, j := range s.best.idx {
		out.c[i] = s.c[j]
	}
	return out
}

// groupUse is how a group is used by the best stack, for leftOut.
type groupUse struct {
	name         string
	count, limit int
}

// fullReason is a "group is full" reason, built once per group and limit.
type fullReason struct {
	group string
	limit int
	r     []Reason
}

// groupFull is the reason of a coupon left out because its group allows limit per order.
func (e *evaluator) groupFull(group string, limit int) []Reason {
	for i := range e.full {
		if f := &e.full[i]; f.limit == limit && f.group == group {
			return f.r
		}
	}
	r := e.reasonList(e.msg.groupFull(group, limit))
	e.full = append(e.full, fullReason{group: group, limit: limit, r: r})
	return r
}

// full reports whether the group use g has no room for a coupon of t.
func full(g *groupUse, t *Template) bool {
	return g != nil && g.count+1 > min(g.limit, t.Spec.Stacking.MaxPerOrder)
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
// left out for the same reason share its (read-only) one-reason slice.
func (e *evaluator) leftOut(outs []Outcome, tidx []int32, best *stack) {
	in := resize(e.inStack, len(outs))
	e.inStack = in
	groups := e.groups[:0]
	useOf := func(name string) *groupUse {
		for i := range groups {
			if groups[i].name == name {
				return &groups[i]
			}
		}
		return nil
	}
	for _, c := range best.c {
		in[c.o] = true
		if best.excl {
			continue
		}
		g := useOf(c.t.Spec.Stacking.Group)
		if g == nil {
			groups = append(groups, groupUse{name: c.t.Spec.Stacking.Group, limit: MaxPerOrderLimit})
			g = &groups[len(groups)-1]
		}
		g.count++
		g.limit = min(g.limit, c.t.Spec.Stacking.MaxPerOrder)
	}
	e.groups = groups
	inStack := func(t *Template) bool {
		for _, c := range best.c {
			if c.t == t || c.t.Key == t.Key {
				return true
			}
		}
		return false
	}
	var fixed [numLeft][]Reason
	byTemplate := resize(e.leftBy, len(e.tevals)) // a coupon's reason depends on its template only
	e.leftBy = byTemplate
	for i := range outs {
		o := &outs[i]
		if !o.Applicable || in[i] {
			continue
		}
		if r := byTemplate[tidx[i]]; r != nil {
			o.Reasons = r
			continue
		}
		t := e.tevals[tidx[i]].t
		var k int
		switch {
		case family(t) != best.fam:
			k = leftOtherFamily
		case best.excl:
			k = leftExclusiveChosen
		case t.exclusive():
			k = leftExclusiveSelf
		case inStack(t):
			k = leftOneTemplate
		case full(useOf(t.Spec.Stacking.Group), t):
			g := useOf(t.Spec.Stacking.Group)
			o.Reasons = e.groupFull(g.name, min(g.limit, t.Spec.Stacking.MaxPerOrder))
			byTemplate[tidx[i]] = o.Reasons
			continue
		default:
			k = leftAddsNothing
		}
		if fixed[k] == nil {
			fixed[k] = e.reasonList(e.msg.leftOut(k))
		}
		o.Reasons, byTemplate[tidx[i]] = fixed[k], fixed[k]
	}
	clear(byTemplate)
	clear(groups)
}
