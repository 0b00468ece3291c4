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
	if c := cmp.Compare(a.t.kind, b.t.kind); c != 0 {
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
	if c.t.exclusive() {
		return 1
	}
	return 0
}

// bestSingle is the applicable coupon of highest positive value; ties go to the earliest expiry,
// then the smallest coupon id.
func bestSingle(outs []Outcome) *Pick {
	best := -1
	for i := range outs {
		o := &outs[i]
		if !o.Applicable || o.Discount <= 0 {
			continue
		}
		if best < 0 || betterSingle(o, &outs[best]) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	return &Pick{CouponIDs: []string{outs[best].CouponID}, Discount: outs[best].Discount}
}

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
	ea, eb := make([]time.Time, len(a)), make([]time.Time, len(b))
	ia, ib := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ea[i], ia[i] = a[i].exp, a[i].id
	}
	for i := range b {
		eb[i], ib[i] = b[i].exp, b[i].id
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

// bestStack finds the best stack and gives the applicable coupons it leaves out their reason.
func (e *evaluator) bestStack(res *Result, tidx []int32) {
	cands := e.candidates(res.Coupons, tidx)
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

// candidates returns, per template, the applicable coupon of positive value that expires first
// (then the smallest id).
func (e *evaluator) candidates(outs []Outcome, tidx []int32) []cand {
	n := 0
	for i := range outs {
		o := &outs[i]
		if !o.Applicable || o.Discount <= 0 {
			continue
		}
		r := &e.tevals[tidx[i]].rep
		switch {
		case *r < 0:
			*r = int32(i)
			n++
		case cmpExpiry(o.ExpiresAt, outs[*r].ExpiresAt) < 0 ||
			(o.ExpiresAt.Equal(outs[*r].ExpiresAt) && o.CouponID < outs[*r].CouponID):
			*r = int32(i)
		}
	}
	cands := e.cands[:0]
	for ti := range e.tevals {
		te := &e.tevals[ti]
		if te.rep < 0 {
			continue
		}
		cands = append(cands, cand{o: te.rep, t: te.t, value: te.value, elig: te.elig,
			exp: outs[te.rep].ExpiresAt, id: outs[te.rep].CouponID, limit: int32(te.t.Spec.Stacking.MaxPerOrder)})
	}
	e.cands = cands
	return cands
}

// bestOfFamily is the better of the family's best exclusive coupon alone and its best group
// stack; nil when the family has no candidate.
func (e *evaluator) bestOfFamily(cands []cand, fam int) *stack {
	var best *stack
	group := e.group[:0]
	for i := range cands {
		c := &cands[i]
		if family(c.t) != fam {
			continue
		}
		if !c.t.exclusive() {
			group = append(group, c)
			continue
		}
		s := &stack{v: c.value, fam: fam, excl: true, c: []*cand{c}}
		if best == nil || s.better(best) {
			best = s
		}
	}
	e.group = group
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

// leftOut gives each applicable coupon outside the best stack the reason it is left out.
func (e *evaluator) leftOut(outs []Outcome, tidx []int32, best *stack) {
	in := make([]bool, len(outs))
	type groupUse struct {
		name         string
		count, limit int
		full         Reason // the "group is full" reason, built once
		fullLimit    int
	}
	var groups []groupUse
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
	inStack := func(key string) bool {
		return slices.ContainsFunc(best.c, func(c *cand) bool { return c.t.Key == key })
	}
	for i := range outs {
		o := &outs[i]
		if !o.Applicable || in[i] {
			continue
		}
		t := e.tevals[tidx[i]].t
		var r Reason
		switch g := useOf(t.Spec.Stacking.Group); {
		case family(t) != best.fam:
			r = e.msg.otherFamily()
		case best.excl:
			r = e.msg.exclusiveChosen()
		case t.exclusive():
			r = e.msg.exclusiveSelf()
		case inStack(t.Key):
			r = e.msg.oneTemplate()
		case g != nil && g.count+1 > min(g.limit, t.Spec.Stacking.MaxPerOrder):
			limit := min(g.limit, t.Spec.Stacking.MaxPerOrder)
			if g.full.Code == "" || g.fullLimit != limit {
				g.full, g.fullLimit = e.msg.groupFull(g.name, limit), limit
			}
			r = g.full
		default:
			r = e.msg.addsNothing()
		}
		o.Reasons = e.reasonList(r)
	}
}
