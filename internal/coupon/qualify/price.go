package qualify

import (
	"fmt"
	"slices"
	"strings"

	"github.com/perkhq/perk/internal/platform/problem"
)

// CodeRefused is the problem code of a combination Price refuses.
const CodeRefused = "coupons-refused"

func price(in *Input, ids []string) (Pick, []Outcome, error) {
	if len(ids) == 0 {
		var fs problem.Fields
		fs.Add("coupon_ids", "at least one coupon is required")
		return Pick{}, nil, fs.Err("no coupon chosen")
	}
	e := getEvaluator(in)
	defer e.release()
	var fs problem.Fields
	outs, tis := e.chosen(&fs, ids)
	if len(fs) == 0 {
		e.checkTogether(&fs, ids, tis)
	}
	if len(fs) > 0 {
		err := problem.Conflict("the chosen coupons cannot be used on this cart").WithCode(CodeRefused)
		err.Fields = fs
		return Pick{}, nil, err
	}
	e.fillSplits(outs, tis)
	return e.priceTogether(outs, tis)
}

// chosen qualifies the chosen coupons, filing those that are unknown, repeated or not applicable.
func (e *evaluator) chosen(fs *problem.Fields, ids []string) ([]Outcome, []int32) {
	wallet := make(map[string]int, len(e.in.Coupons))
	for i := range e.in.Coupons {
		if _, dup := wallet[e.in.Coupons[i].ID]; !dup {
			wallet[e.in.Coupons[i].ID] = i
		}
	}
	seen := make(map[string]int, len(ids))
	outs := make([]Outcome, len(ids))
	tis := make([]int32, len(ids))
	for k, id := range ids {
		path := fmt.Sprintf("coupon_ids[%d]", k)
		if first, dup := seen[id]; dup {
			fs.Add(path, "%s", e.msg.pick(fmt.Sprintf("listed twice (first at [%d])", first), fmt.Sprintf("重复选择（同[%d]）", first)))
			continue
		}
		seen[id] = k
		i, ok := wallet[id]
		if !ok {
			fs.Add(path, "%s", e.msg.pick("not in the wallet", "不在券包中"))
			continue
		}
		ce := e.outcome(&outs[k], i)
		tis[k] = ce.ti
		if !ce.applies {
			msgs := make([]string, ce.rs.n)
			for j, r := range e.reasons(ce.rs) {
				msgs[j] = r.Message
			}
			fs.Add(path, "%s", strings.Join(msgs, "; "))
		}
	}
	return outs, tis
}

// checkTogether files the coupons the stacking rules do not allow together: a mix of discounts
// and seller bonuses, an exclusive coupon with others, two coupons of one template, and coupons
// past their group's max_per_order.
func (e *evaluator) checkTogether(fs *problem.Fields, ids []string, tis []int32) {
	if len(ids) < 2 {
		return
	}
	fam := family(e.tevals[tis[0]].t)
	keys := make(map[string]bool, len(ids))
	limits := map[string]int{}
	for k := range ids {
		t := e.tevals[tis[k]].t
		g, limit := t.Spec.Stacking.Group, t.Spec.Stacking.MaxPerOrder
		if have, ok := limits[g]; !t.exclusive() && (!ok || limit < have) {
			limits[g] = limit
		}
	}
	counts := map[string]int{}
	for k := range ids {
		t := e.tevals[tis[k]].t
		path := fmt.Sprintf("coupon_ids[%d]", k)
		switch {
		case family(t) != fam:
			fs.Add(path, "%s", e.msg.otherFamily().Message)
		case t.exclusive():
			fs.Add(path, "%s", e.msg.exclusiveWithOthers().Message)
		case keys[t.Key]:
			fs.Add(path, "%s", e.msg.oneTemplate().Message)
		default:
			g := t.Spec.Stacking.Group
			counts[g]++
			if counts[g] > limits[g] {
				fs.Add(path, "%s", e.msg.groupFull(g, limits[g]).Message)
			}
		}
		keys[t.Key] = true
	}
}

// priceTogether values an allowed combination in application order; each outcome carries the
// coupon's part of the combination and its split.
func (e *evaluator) priceTogether(outs []Outcome, tis []int32) (Pick, []Outcome, error) {
	cs := make([]*cand, len(outs))
	for k := range outs {
		te := &e.tevals[tis[k]]
		c := newCand(int32(k), te, expiryOf(outs[k].ExpiresAt), outs[k].CouponID)
		cs[k] = &c
	}
	order := slices.Clone(cs)
	slices.SortFunc(order, cmpApply)
	consume := family(cs[0].t) == famDiscount
	s := &e.search
	groups, keys := e.numbered()
	d := s.denseIndexes(order, groups, keys)
	s.reset(order, d, e.amounts, consume, &e.sp)
	pick := Pick{CouponIDs: make([]string, len(order))}
	for i, c := range order {
		v := s.apply(c)
		pick.CouponIDs[i] = c.id
		pick.Discount += v
		o := &outs[c.o]
		if !consume {
			continue // a seller bonus is its standalone value
		}
		split := make([]Share, len(c.elig))
		at := len(s.undo) - len(c.elig)
		for k, item := range c.elig {
			split[k] = Share{Index: int(item), SKU: e.cart.Items[item].SKU}
			if v > 0 {
				split[k].Discount = s.undo[at+k]
			}
		}
		o.Discount, o.Split = v, split
	}
	return pick, outs, nil
}
