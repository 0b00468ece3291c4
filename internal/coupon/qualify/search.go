package qualify

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"strings"
)

// maxSearchNodes bounds the stack search (a node costs a pass over the candidates). Past it, the
// best stack found so far is kept: always a valid stack, at least the modular optimum valued
// exactly. Ordinary wallets need a few dozen nodes; see TestStackSearchBudget for how often the
// budget matters.
const maxSearchNodes = 256

// searcher is a branch and bound over the subsets of one family's group candidates, in
// application order. A node is a valid stack; its children add one later candidate, the most
// promising first; see bounds and hopeless for how a subtree is cut, complete for how the additive
// tail (amounts off that cannot run out, seller bonuses) is settled without branching, and same
// for interchangeable candidates. It is exact unless it reaches its node budget.
type searcher struct {
	c       []*cand
	consume bool
	r       []int64 // what is left of each item
	sp      *splitter
	undo    []int64 // the shares applied, for undoing
	count   []int32 // coupons per group in the current stack
	minLim  []int32 // the smallest max_per_order in the current stack, per group
	keyUsed []bool
	chosen  []int32
	cur     int64
	best    struct {
		v   int64
		idx []int32
	}
	nodes  int
	budget int
	maxLim int32
	// modular is where the candidates whose values can simply add up start (the amounts off of a
	// discount search, all of a bonus search); same[j] says c[j] is interchangeable with c[j-1];
	// dupKeys says two candidates share a template key.
	modular int
	same    []bool
	dupKeys bool
	// memo and byValue serve complete: see groupPick.
	memo        []groupPick
	pickPool    []int32
	byValue     [][]int32
	byValueDone bool
	picks       []*groupPick
	// mixed, pct and rate are bounds' scratch: per group, the best values of all kinds, of
	// percentages, and the highest rates.
	mixed, pct, rate topLists
	mark             []uint32
	epoch            uint32
	// small: the cart has at most 64 items, and the candidates' masks are set.
	small bool
	// Scratch of denseIndexes, byGroup and prune.
	groupOf, keyOf []int32
	lists          [][]int32
	kth            []int64
	top            []bool
	kept           []*cand
	moved          []int32
	vals           []int64
	// Scratch of incumbent, groupPick and consider.
	set, bestSet, inc, pickedBuf []int32
	topBuf, greedyVals           []int64
	memA, memB                   []*cand
	// suffix[k] is a bound of what the candidates from k on can add, computed once; see
	// staticBounds.
	suffix []int64
	// ub and most hold the bounds of the nodes on the current path (see bounds and mostSums), kids
	// their children; worth, beside ub, the values of the candidates bounds valued.
	ub, most, worth []int64
	kids            []kid
}

// reset readies the searcher for the candidates cs (in application order), reusing its arrays.
func (s *searcher) reset(cs []*cand, d dense, amounts []int64, consume bool, sp *splitter) {
	s.consume, s.sp, s.maxLim = consume, sp, d.maxLimit
	s.r = append(s.r[:0], amounts...)
	s.undo, s.chosen, s.cur, s.nodes = s.undo[:0], s.chosen[:0], 0, 0
	s.best.v, s.best.idx = 0, s.best.idx[:0]
	s.count = resize(s.count, d.groups)
	s.minLim = resize(s.minLim, d.groups)
	s.keyUsed = resize(s.keyUsed, d.keys)
	s.mixed.resize(d.groups, d.maxLimit)
	s.pct.resize(d.groups, d.maxLimit)
	s.rate.resize(d.groups, d.maxLimit)
	s.mark, s.epoch = resize(s.mark, len(amounts)), 0
	s.small = len(amounts) <= 64
	s.use(cs, d)
}

// use makes cs, in application order, the candidates of the search: the state that depends on
// them is computed again; the rest (what is left of the items, the counts) must be at rest.
func (s *searcher) use(cs []*cand, d dense) {
	s.c = cs
	s.groupLimits()
	s.memo, s.pickPool, s.byValueDone = s.memo[:0], s.pickPool[:0], false
	s.same, s.modular, s.dupKeys = resize(s.same, len(cs)), len(cs), false
	seen := resize(s.top, d.keys) // top is free until prune
	for j, c := range cs {
		if j > 0 && cs[j-1].kind == c.kind && cs[j-1].value == c.value && cmpTerms(cs[j-1], c) == 0 {
			s.same[j] = true
		}
		if seen[c.key] {
			s.dupKeys = true
		}
		seen[c.key] = true
		if s.modular == len(cs) && (!s.consume || c.kind == kindAmountOff) {
			s.modular = j
		}
	}
	s.top = seen
}

// groupLimits sets minLim for an empty stack: a group never holds more coupons than its
// candidates' largest max_per_order.
func (s *searcher) groupLimits() {
	clear(s.minLim)
	for _, c := range s.c {
		s.minLim[c.group] = max(s.minLim[c.group], c.limit)
	}
}

// staticBounds sets suffix[k], once the search's candidates are set: per group, the sum of the
// highest standalone values among the candidates from k on, as many as the group's largest
// max_per_order. Values only shrink as a stack grows and a group never holds more coupons than
// that, so it bounds any subtree from k; it costs nothing at a node, where bounds costs a pass over
// the candidates.
func (s *searcher) staticBounds() {
	s.suffix = resize(s.suffix, len(s.c)+1)
	s.mixed.reset()
	for k := len(s.c) - 1; k >= 0; k-- {
		c := s.c[k]
		s.suffix[k] = s.suffix[k+1] + s.mixed.insert(c.group, s.minLim[c.group], c.value)
	}
}

// release drops the references to one evaluation's candidates.
func (s *searcher) release() {
	s.c, s.sp = nil, nil
	clear(s.kept)
	clear(s.memA[:cap(s.memA)])
	clear(s.memB[:cap(s.memB)])
	clear(s.memo[:cap(s.memo)])
}

// dense are the numbers of stack groups and template keys of a search, and the largest
// max_per_order.
type dense struct {
	groups, keys int
	maxLimit     int32
}

// denseIndexes numbers the candidates' stack groups and template keys from 0, in the order the
// candidates meet them, from their numbers in the evaluation (gid and kid, below groups and keys).
func (s *searcher) denseIndexes(cs []*cand, groups, keys int) dense {
	groupOf, keyOf := resize(s.groupOf, groups), resize(s.keyOf, keys) // 1 + the dense index
	var d dense
	for _, c := range cs {
		if groupOf[c.gid] == 0 {
			d.groups++
			groupOf[c.gid] = int32(d.groups)
		}
		if keyOf[c.kid] == 0 {
			d.keys++
			keyOf[c.kid] = int32(d.keys)
		}
		c.group, c.key = groupOf[c.gid]-1, keyOf[c.kid]-1
		d.maxLimit = max(d.maxLimit, c.limit)
	}
	s.groupOf, s.keyOf = groupOf, keyOf
	return d
}

// byGroup lists the candidates of each group, highest standalone value first.
func (s *searcher) byGroup() [][]int32 {
	lists := s.lists
	if cap(lists) < len(s.count) {
		lists = make([][]int32, len(s.count))
	}
	lists = lists[:len(s.count)]
	for g := range lists {
		lists[g] = lists[g][:0]
	}
	for j, c := range s.c {
		lists[c.group] = append(lists[c.group], int32(j))
	}
	for _, list := range lists {
		slices.SortStableFunc(list, func(a, b int32) int { return cmp.Compare(s.c[b].value, s.c[a].value) })
	}
	s.lists = lists
	return lists
}

// incumbent is a good first stack (lists: byGroup): per group, the k coupons of highest
// standalone value whose max_per_order allows k (the k of highest sum), one per template; valued
// exactly, members that add nothing left out. It returns the members in application order, the
// stack's value, and whether that is less than the sum of the standalone values of the coupons
// picked (they took from the same items).
func (s *searcher) incumbent(lists [][]int32) ([]int32, int64, bool) {
	pick := s.chosen[:0] // the search has not started: chosen is free
	used := s.keyUsed    // likewise; cleared below
	set, bestSet := s.set[:0], s.bestSet[:0]
	for _, list := range lists {
		var bestSum int64
		bestSet = bestSet[:0]
		for k := int32(1); k <= s.maxLim; k++ {
			set = set[:0]
			var sum int64
			for _, j := range list {
				c := s.c[j]
				if c.limit < k || used[c.key] || slices.ContainsFunc(set, func(i int32) bool { return s.c[i].key == c.key }) {
					continue
				}
				set = append(set, j)
				sum += c.value
				if int32(len(set)) == k {
					break
				}
			}
			if int32(len(set)) < k {
				break
			}
			if sum > bestSum {
				bestSum, bestSet = sum, append(bestSet[:0], set...)
			}
		}
		for _, j := range bestSet {
			used[s.c[j].key] = true
		}
		pick = append(pick, bestSet...)
	}
	clear(used)
	s.set, s.bestSet = set, bestSet
	var whole int64
	for _, j := range pick {
		whole += s.c[j].value
	}
	kept, total := s.exact(pick)
	out := append(s.inc[:0], kept...)
	s.inc = out
	s.chosen = pick[:0] // keep the array pick may have grown
	return out, total, total < whole
}

// exact values the stack pick in application order, sorting it, and returns its members worth
// something (a member worth nothing on what the earlier ones left is dropped, in place) and its
// value. What is left of the items is as it was.
func (s *searcher) exact(pick []int32) ([]int32, int64) {
	slices.Sort(pick)
	var total int64
	kept := pick[:0]
	vals := s.vals[:0]
	for _, j := range pick {
		if v := s.apply(s.c[j]); v > 0 {
			kept = append(kept, j)
			vals = append(vals, v)
			total += v
		} else {
			s.unapply(s.c[j], v)
		}
	}
	for i := len(kept) - 1; i >= 0; i-- {
		s.unapply(s.c[kept[i]], vals[i])
	}
	s.vals = vals
	return kept, total
}

// greedy offers the search a second first stack, for when the incumbent's per-group choice by
// standalone values is spoilt by coupons that take from the same items: coupons taken one at a
// time, each the one worth most on what the earlier ones left (ties: the first in application
// order) among those the stacking rules still allow, then valued exactly (see exact). It keeps
// it when it beats the best stack so far (see consider).
func (s *searcher) greedy() {
	pick := s.chosen[:0] // the search has not started: chosen is free
	vals := s.greedyVals[:0]
	for {
		best, most := -1, int64(0)
		for j, c := range s.c {
			n := s.count[c.group] + 1
			if c.value <= most || n > c.limit || n > s.minLim[c.group] || s.keyUsed[c.key] {
				continue // a value only shrinks: one not above the best so far cannot beat it
			}
			if v := s.worthNow(c); v > most {
				best, most = j, v
			}
		}
		if best < 0 {
			break
		}
		c := s.c[best]
		s.take(c, most)
		s.cur += most
		s.count[c.group]++
		s.minLim[c.group] = min(s.minLim[c.group], c.limit)
		s.keyUsed[c.key] = true
		pick, vals = append(pick, int32(best)), append(vals, most)
	}
	// Put the state back: the takes in reverse, then the counts and limits of an empty stack.
	for i := len(pick) - 1; i >= 0; i-- {
		s.unapply(s.c[pick[i]], vals[i])
	}
	s.greedyVals = vals
	clear(s.count)
	clear(s.keyUsed)
	s.groupLimits()
	kept, total := s.exact(pick)
	s.chosen, s.cur = kept, total
	if len(kept) > 0 {
		s.consider()
	}
	s.chosen, s.cur = pick[:0], 0
}

// prune drops the candidates that cannot be in a stack worth v0 or more (lists: byGroup). The
// most any stack is worth is M, the sum over groups of the group's highest standalone values, as
// many as its largest max_per_order (and, for discounts, at most what the candidates cover). A
// stack that holds c, outside its group's top values, is worth at most M minus the lowest top
// value plus c's value. The incumbent's members are always kept. It returns the kept candidates
// and, per old index, the new one (-1 when dropped).
func (s *searcher) prune(lists [][]int32, inc []int32, v0 int64) ([]*cand, []int32) {
	kth := resize(s.kth, len(lists))
	top := resize(s.top, len(s.c))
	s.kth, s.top = kth, top
	var m int64
	for g, list := range lists {
		var allow int32
		for _, j := range list {
			allow = max(allow, s.c[j].limit)
		}
		for i, j := range list[:min(int(allow), len(list))] {
			m += s.c[j].value
			top[j] = true
			if i == int(allow)-1 {
				kth[g] = s.c[j].value
			}
		}
	}
	covered := m
	if s.consume {
		covered = 0
		s.epoch++
		for _, c := range s.c {
			for _, i := range c.elig {
				if s.mark[i] != s.epoch {
					s.mark[i] = s.epoch
					covered += s.r[i]
				}
			}
		}
	}
	for _, j := range inc {
		top[j] = true
	}
	kept := s.kept[:0]
	moved := resize(s.moved, len(s.c))
	for j, c := range s.c {
		moved[j] = -1
		if top[j] || min(m-kth[c.group]+c.value, covered) >= v0 {
			moved[j] = int32(len(kept))
			kept = append(kept, c)
		}
	}
	s.kept, s.moved = kept, moved
	return kept, moved
}

// dfs visits the node whose stack is the current one and whose children add a candidate from k
// on.
func (s *searcher) dfs(k int) {
	s.nodes++
	if len(s.chosen) > 0 {
		s.consider()
	}
	size := len(s.chosen) + 1 // of the stacks below this node
	if k >= len(s.c) || s.nodes > s.budget || s.cut(s.cur+s.suffix[k], size) {
		return
	}
	ubAt, mostAt := len(s.ub), len(s.most)
	s.branch(k)
	s.ub, s.most = s.ub[:ubAt], s.most[:mostAt]
}

// branch bounds what the candidates from k on could add to the current stack and enters the
// children that could make a better stack: those whose value plus what could follow them (bounded
// at this node) could beat the best stack, the highest such bounds first, so that good stacks are
// found early and cut more. Past the first candidate whose bound cannot beat it, none can.
func (s *searcher) branch(k int) {
	ubAt, mostAt := len(s.ub), len(s.most)
	s.bounds(k)
	s.mostSums()
	m := len(s.chosen)
	if s.hopeless(s.cur, s.ub[ubAt], m, m+1, s.most[mostAt:]) {
		return
	}
	last := len(s.c)
	if s.complete(max(k, s.modular)) {
		last = s.modular // the additive tail is settled; branch on the coupons before it
	}
	// The children that could beat the best stack, most promising first.
	kidsAt := len(s.kids)
	for j := k; j < last; j++ {
		ub, most := s.ub[ubAt:], s.most[mostAt:]
		if s.hopeless(s.cur, ub[j-k], m, m+1, most) {
			break
		}
		c := s.c[j]
		n := s.count[c.group] + 1
		if n > c.limit || n > s.minLim[c.group] || s.keyUsed[c.key] {
			continue
		}
		if s.same[j] && s.last() != int32(j-1) && !s.keyUsed[s.c[j-1].key] {
			continue // its twin before it was left out: leaving this one in instead changes nothing
		}
		v := s.worth[ubAt+j-k] // its value on what is left, as bounds found it
		if v <= 0 || s.hopeless(s.cur+v, ub[j+1-k], m+1, m+1, most) {
			continue
		}
		s.kids = append(s.kids, kid{j: int32(j), v: v, ub: v + ub[j+1-k]})
	}
	kids := s.kids[kidsAt:]
	for i := 1; i < len(kids); i++ {
		for x := i; x > 0 && kids[x].ub > kids[x-1].ub; x-- {
			kids[x], kids[x-1] = kids[x-1], kids[x]
		}
	}
	for x := range len(kids) {
		kd := s.kids[kidsAt+x] // the children may have moved them
		j, v := int(kd.j), kd.v
		if s.hopeless(s.cur+v, s.ub[ubAt+j+1-k], m+1, m+1, s.most[mostAt:]) {
			continue
		}
		c := s.c[j]
		n := s.count[c.group] + 1
		s.take(c, v)
		saved := s.minLim[c.group]
		s.count[c.group], s.minLim[c.group], s.keyUsed[c.key] = n, min(saved, c.limit), true
		s.chosen = append(s.chosen, int32(j))
		s.cur += v
		s.dfs(j + 1)
		s.cur -= v
		s.chosen = s.chosen[:m]
		s.count[c.group], s.minLim[c.group], s.keyUsed[c.key] = n-1, saved, false
		s.unapply(c, v)
		if s.nodes > s.budget {
			break
		}
	}
	s.kids = s.kids[:kidsAt]
}

// kid is a child of a node: the candidate it adds, its value and a bound of its subtree's stacks.
type kid struct {
	j     int32
	v, ub int64
}

// hopeless reports whether stacks made of fixed coupons worth base and of more coupons worth at
// most add (and at most most[t] for t more coupons), stacks of at least size coupons, cannot beat
// the best so far. Stacks that cannot be worth more than the best can at most tie it, with no
// more coupons than it.
func (s *searcher) hopeless(base, add int64, fixed, size int, most []int64) bool {
	ub := base + add
	if s.cut(ub, size) {
		return true
	}
	if ub > s.best.v {
		return false
	}
	t := len(s.best.idx) - fixed
	return t < 0 || base+most[min(t, len(most)-1)] < s.best.v
}

// mostSums appends to s.most the sums of the highest values kept by bounds (per group, those it
// may still add), highest first: the t-th sum bounds what t more coupons could add.
func (s *searcher) mostSums() {
	at := len(s.most)
	s.most = append(s.most, 0)
	for g, n := range s.mixed.n {
		s.most = append(s.most, s.mixed.vals[g*s.mixed.stride:g*s.mixed.stride+int(n)]...)
	}
	most := s.most[at:]
	slices.SortFunc(most[1:], func(a, b int64) int { return cmp.Compare(b, a) })
	for t := 1; t < len(most); t++ {
		most[t] += most[t-1]
	}
}

// cut reports whether stacks worth at most ub, of at least size coupons, cannot beat the best so
// far: less value, or as much with more coupons.
func (s *searcher) cut(ub int64, size int) bool {
	return ub < s.best.v || (ub == s.best.v && size > len(s.best.idx))
}

// last is the index of the last coupon in the current stack, -1 when empty.
func (s *searcher) last() int32 {
	if len(s.chosen) == 0 {
		return -1
	}
	return s.chosen[len(s.chosen)-1]
}

// complete settles the candidates from the modular segment on, when their values simply add up:
// seller bonuses always, amounts off when none can run out of items (every candidate's items
// hold at least the most the candidates could take together, so each takes its full amount). Then
// the best way to finish the current stack is, per group, the n highest values that the
// max_per_order allows (ties: fewer coupons, then earlier expiries); it is considered, and
// complete reports true. Otherwise it does nothing and reports false. Past the start of the
// segment it only reports whether nothing is left.
func (s *searcher) complete(k int) bool {
	if k >= len(s.c) {
		return true
	}
	if k != s.modular || s.dupKeys {
		return false
	}
	var most, add int64
	picks := s.picks[:0]
	for g := range s.count {
		p := s.groupPick(int32(g))
		picks = append(picks, p)
		most += p.most
		add += p.sum
	}
	s.picks = picks
	if s.consume {
		for _, c := range s.c[k:] {
			if s.count[c.group] >= min(s.minLim[c.group], c.limit) {
				continue // cannot join
			}
			var base int64
			for _, i := range c.elig {
				base += s.r[i]
			}
			if base < most {
				return false
			}
		}
	}
	if add == 0 {
		return true
	}
	at := len(s.chosen)
	for _, p := range picks {
		s.chosen = append(s.chosen, s.pickPool[p.at:p.at+p.n]...)
	}
	slices.Sort(s.chosen[at:])
	s.cur += add
	s.consider()
	s.cur -= add
	s.chosen = s.chosen[:at]
	return true
}

// maxPickMemo bounds the entries of a search's groupPick memo (groups × (max+1)²).
const maxPickMemo = 1 << 14

// groupPick is what group g adds to a completion from the modular segment, given how many
// coupons of it the stack holds and their smallest max_per_order: most, the highest sum of
// amounts it could take; and the best set when values add up, picks and their sum. It depends on
// nothing else, so it is computed once per group state.
type groupPick struct {
	done      bool
	most, sum int64
	// The picks are pickPool[at:at+n].
	at, n int32
}

func (s *searcher) groupPick(g int32) *groupPick {
	m := int(s.maxLim) + 1
	var p *groupPick
	if size := len(s.count) * m * m; size <= maxPickMemo {
		if len(s.memo) != size {
			s.memo = resize(s.memo[:cap(s.memo)], size)
		}
		p = &s.memo[(int(g)*m+int(s.count[g]))*m+int(s.minLim[g])]
		if p.done {
			return p
		}
		p.done = true
	} else {
		p = &groupPick{}
	}
	if !s.byValueDone {
		s.byValue, s.byValueDone = s.groupLists(s.modular), true
	}
	list := s.byValue[g]
	count, allow := s.count[g], s.minLim[g]-s.count[g]
	if allow <= 0 {
		return p
	}
	// most: the allow highest amounts (or bonuses) among those that may join.
	top := s.topBuf[:0]
	for _, j := range list {
		c := s.c[j]
		if c.limit <= count {
			continue
		}
		v := c.t.amount
		if !s.consume {
			v = c.value
		}
		if int32(len(top)) < allow {
			top = append(top, v)
		} else if v > top[len(top)-1] {
			top[len(top)-1] = v
		} else {
			continue
		}
		slices.SortFunc(top, func(a, b int64) int { return cmp.Compare(b, a) })
	}
	for _, v := range top {
		p.most += v
	}
	s.topBuf = top
	picked := s.pickedBuf[:0]
	for n := int32(1); n <= allow; n++ {
		var sum int64
		picked = picked[:0]
		for _, j := range list {
			if int32(len(picked)) == n {
				break
			}
			if c := s.c[j]; c.limit >= count+n {
				picked = append(picked, j)
				sum += c.value
			}
		}
		if int32(len(picked)) < n {
			break
		}
		if sum > p.sum {
			p.sum, p.at, p.n = sum, int32(len(s.pickPool)), int32(len(picked))
			s.pickPool = append(s.pickPool, picked...)
		}
	}
	s.pickedBuf = picked
	return p
}

// groupLists lists, per group, the candidates from k on by value (highest first), then expiry,
// then id.
func (s *searcher) groupLists(k int) [][]int32 {
	out := s.byValue
	if cap(out) < len(s.count) {
		out = make([][]int32, len(s.count))
	}
	out = out[:len(s.count)]
	for g := range out {
		out[g] = out[g][:0]
	}
	for j := k; j < len(s.c); j++ {
		g := s.c[j].group
		out[g] = append(out[g], int32(j))
	}
	for _, list := range out {
		slices.SortFunc(list, func(a, b int32) int {
			ca, cb := s.c[a], s.c[b]
			if c := cmp.Compare(cb.value, ca.value); c != 0 {
				return c
			}
			if c := cmpExp(ca.exp, cb.exp); c != 0 {
				return c
			}
			return strings.Compare(ca.id, cb.id)
		})
	}
	return out
}

// consider keeps the current stack when it beats the best so far.
func (s *searcher) consider() {
	switch {
	case s.cur != s.best.v:
		if s.cur < s.best.v {
			return
		}
	case len(s.chosen) != len(s.best.idx):
		if len(s.chosen) > len(s.best.idx) {
			return
		}
	default:
		if slices.Equal(s.chosen, s.best.idx) {
			return // the same stack (both in application order)
		}
		s.memA, s.memB = s.members(s.memA, s.chosen), s.members(s.memB, s.best.idx)
		if cmpMembers(s.memA, s.memB) >= 0 {
			return
		}
	}
	s.best.v = s.cur
	s.best.idx = append(s.best.idx[:0], s.chosen...)
}

// members appends to buf[:0] the candidates idx.
func (s *searcher) members(buf []*cand, idx []int32) []*cand {
	buf = buf[:0]
	for _, j := range idx {
		buf = append(buf, s.c[j])
	}
	return buf
}

// apply adds c to the current stack: its value on what is left of its items, taken off them.
func (s *searcher) apply(c *cand) int64 {
	v := s.value(c)
	s.take(c, v)
	return v
}

// value is c's value on what is left of its items.
func (s *searcher) value(c *cand) int64 {
	var base int64
	for _, i := range c.elig {
		base += s.r[i]
	}
	return c.t.value(base)
}

// take takes c's value v off what is left of its items (discounts only).
func (s *searcher) take(c *cand, v int64) {
	if !s.consume || v == 0 {
		return
	}
	at := len(s.undo)
	s.undo = slices.Grow(s.undo, len(c.elig))[:at+len(c.elig)]
	parts := s.undo[at:]
	s.sp.split(v, c.elig, s.r, parts)
	for k, i := range c.elig {
		s.r[i] -= parts[k]
	}
}

func (s *searcher) unapply(c *cand, v int64) {
	if !s.consume || v == 0 {
		return
	}
	at := len(s.undo) - len(c.elig)
	for k, i := range c.elig {
		s.r[i] += s.undo[at+k]
	}
	s.undo = s.undo[:at]
}

// bounds appends to s.ub, for each j from k to len(s.c), a bound of what the candidates from j on
// could add to the current stack (0 for j = len(s.c)): the least of
//   - per group, the highest values the group may still add, each valued on what is left now (a
//     value can only shrink as coupons are added);
//   - for discounts, what is left of the items they cover;
//   - for discounts and j = k only, the same split into percentages and amounts off (each kind
//     with the group's whole allowance), where the percentages, applied to what the earlier ones
//     left, take at most R × (1 − Π(1 − rate)) of the R left on the items they cover, with the
//     highest rates per group. (Without that, the split is never below the first bound: a group's
//     highest values are some of its highest percentages and some of its highest amounts off.)
//
// One pass from the last candidate back to k computes them all. Candidates come in application
// order, percentages before amounts off, so the pass meets the amounts off first: until it meets
// a percentage, the first bound is the amounts off's part of the split.
func (s *searcher) bounds(k int) {
	s.mixed.reset()
	s.pct.reset()
	s.rate.reset()
	s.epoch++
	at := len(s.ub)
	s.ub = slices.Grow(s.ub, len(s.c)-k+1)[:at+len(s.c)-k+1]
	s.worth = slices.Grow(s.worth[:at], len(s.c)-k+1)[:at+len(s.c)-k+1]
	ub, worth := s.ub[at:], s.worth[at:]
	ub[len(ub)-1] = 0
	var covered, pctCovered, mixed, pctSum, amtSum int64
	var coveredMask, pctMask uint64 // for carts of at most 64 items, instead of the marks
	pctEpoch := s.epoch + 1
	for j := len(s.c) - 1; j >= k; j-- {
		ub[j-k] = ub[j-k+1]
		c := s.c[j]
		g := c.group
		allow := s.minLim[g] - s.count[g]
		if allow <= 0 || c.limit <= s.count[g] || s.keyUsed[c.key] {
			continue
		}
		pct := c.kind == kindPercentOff
		switch {
		case !s.consume:
		case s.small:
			covered += s.sumOf(c.mask &^ coveredMask)
			coveredMask |= c.mask
			if pct {
				pctCovered += s.sumOf(c.mask &^ pctMask)
				pctMask |= c.mask
			}
		default:
			for _, i := range c.elig {
				if s.mark[i] < s.epoch {
					s.mark[i] = s.epoch
					covered += s.r[i]
				}
				if pct && s.mark[i] < pctEpoch {
					s.mark[i] = pctEpoch
					pctCovered += s.r[i]
				}
			}
		}
		w := s.worthNow(c)
		worth[j-k] = w
		if w <= 0 {
			continue
		}
		mixed += s.mixed.insert(g, allow, w)
		switch {
		case !s.consume:
			ub[j-k] = mixed
			continue
		case pct:
			pctSum += s.pct.insert(g, allow, w)
			s.rate.insert(g, allow, c.t.bp)
		default:
			amtSum = mixed // no percentage met yet
		}
		ub[j-k] = min(mixed, covered)
	}
	s.epoch++ // pctEpoch is used up
	if !s.consume || pctSum == 0 {
		return
	}
	keep := 1.0
	for g, n := range s.rate.n {
		for _, bp := range s.rate.vals[g*s.rate.stride : g*s.rate.stride+int(n)] {
			keep *= 1 - float64(bp)/MaxPercentBP
		}
	}
	// The margin (a billionth, and a cent) absorbs the float's rounding.
	compounded := int64(math.MaxInt64)
	if x := float64(pctCovered) * (1 - keep); x < 1e18 {
		compounded = int64(math.Ceil(x+x*1e-9)) + 1
	}
	ub[0] = min(ub[0], min(pctSum, compounded)+amtSum)
}

// worthNow is c's value on what is left of its items. A discount stack worth cur has taken cur
// off the items, so at least c's base less cur is left of c's: when c is worth its standalone
// value on that much, it is worth it now, and its items need not be read.
func (s *searcher) worthNow(c *cand) int64 {
	if s.consume {
		if least := c.base - s.cur; least >= 0 && c.t.value(least) == c.value {
			return c.value
		}
	}
	return s.value(c)
}

// sumOf is what is left of the items of mask (a cart of at most 64 items).
func (s *searcher) sumOf(mask uint64) int64 {
	var sum int64
	for ; mask != 0; mask &= mask - 1 {
		sum += s.r[bits.TrailingZeros64(mask)]
	}
	return sum
}

// topLists keeps, per group, the highest values offered, highest first, as many as the group's
// allowance (at most stride).
type topLists struct {
	vals   []int64 // per group, stride slots
	n      []int32
	stride int
}

func (t *topLists) resize(groups int, stride int32) {
	t.vals, t.n, t.stride = resize(t.vals, groups*int(stride)), resize(t.n, groups), int(stride)
}

func (t *topLists) reset() { clear(t.n) }

// insert offers w to group g, which keeps its allow highest values; it returns how much the sum
// of the kept values grew.
func (t *topLists) insert(g int32, allow int32, w int64) int64 {
	top := t.vals[int(g)*t.stride:] // its first allow slots are the group's
	n := int(t.n[g])
	grew := w
	if n == int(allow) {
		if w <= top[n-1] {
			return 0
		}
		n--
		grew -= top[n]
	} else {
		t.n[g]++
	}
	i := n
	for i > 0 && top[i-1] < w {
		top[i] = top[i-1]
		i--
	}
	top[i] = w
	return grew
}
