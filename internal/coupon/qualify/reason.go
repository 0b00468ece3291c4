package qualify

import (
	"strconv"
	"time"
)

// The reason messages, in English and Chinese. Money is formatted with the currency's symbol and
// minor digits.

// messages builds reason messages in one language.
type messages struct {
	zh bool
	// strs, when set, holds the messages built before (see interner).
	strs *interner
}

// str is the message built in b.
func (m messages) str(b []byte) string {
	if m.strs == nil {
		return string(b)
	}
	return m.strs.str(b)
}

// interner keeps the messages an evaluator built lately, so that it allocates each message once:
// stack groups, cart values, thresholds and expiry times recur from one evaluation to the next,
// and a message allocated per evaluation is work for the garbage collector. It holds at most
// maxInterned messages (then it starts again). Strings are immutable: results share them freely.
type interner struct {
	m map[string]string
}

// maxInterned bounds an interner.
const maxInterned = 1024

func (in *interner) str(b []byte) string {
	if s, ok := in.m[string(b)]; ok { // no allocation: the conversion is only looked up
		return s
	}
	if in.m == nil {
		in.m = make(map[string]string, maxInterned)
	} else if len(in.m) >= maxInterned {
		clear(in.m)
	}
	s := string(b)
	in.m[s] = s
	return s
}

func (m messages) pick(en, zh string) string {
	if m.zh {
		return zh
	}
	return en
}

// belowThreshold: "¥12.00 more for ¥30.00 off" / "再买¥12.00可减¥30.00".
func (m messages) belowThreshold(t *Template, shortfall int64) Reason {
	s, cur := &t.Spec, t.cur
	applicable := s.Threshold.Scope == ScopeApplicable
	bonus := t.kind == kindSellerBonus
	b := make([]byte, 0, 64)
	if m.zh {
		if bonus {
			b = append(b, "再卖"...)
		} else {
			b = append(b, "再买"...)
		}
		b = appendMoney(b, cur, shortfall)
		if applicable {
			b = append(b, "指定商品"...)
		}
		if bonus {
			b = append(b, "可加价"...)
		} else {
			b = append(b, "可减"...)
		}
		b = appendOffer(b, t)
	} else {
		b = appendMoney(b, cur, shortfall)
		if applicable {
			b = append(b, " more of eligible items for "...)
		} else {
			b = append(b, " more for "...)
		}
		if bonus {
			b = append(b, "a "...)
			b = appendOffer(b, t)
			b = append(b, " bonus"...)
		} else {
			b = appendOffer(b, t)
			b = append(b, " off"...)
		}
	}
	return Reason{Code: ReasonBelowThreshold, Message: m.str(b), Shortfall: shortfall}
}

// appendOffer appends what the template gives: "¥30.00" or "15%".
func appendOffer(b []byte, t *Template) []byte {
	if t.kind == kindPercentOff || (t.kind == kindSellerBonus && t.Spec.PercentBP > 0) {
		return appendPercent(b, t.Spec.PercentBP)
	}
	return appendMoney(b, t.cur, t.Spec.Amount)
}

var (
	dimEN = [numDims]string{"business line", "channel", "category", "brand", "model", "SKU"}
	dimZH = [numDims]string{"业务线", "渠道", "品类", "品牌", "型号", "商品"}
)

// notFor: `not valid for category "phone"` / `不适用于品类"phone"`.
func (m messages) notFor(d dim, value string) Reason {
	var buf [160]byte
	b := buf[:0]
	switch {
	case m.zh && value == "":
		b = append(append(b, "不适用于该"...), dimZH[d]...)
	case m.zh:
		b = appendQuoted(append(append(b, "不适用于"...), dimZH[d]...), value)
	case value == "":
		b = append(append(b, "not valid for this "...), dimEN[d]...)
	default:
		b = appendQuoted(append(append(append(b, "not valid for "...), dimEN[d]...), ' '), value)
	}
	return Reason{Code: dimReasons[d], Message: m.str(b)}
}

// appendQuoted appends s quoted as strconv.Quote does, without its work when s is plain ASCII.
func appendQuoted(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return strconv.AppendQuote(b, s)
		}
	}
	return append(append(append(b, '"'), s...), '"')
}

const timeLayout = "2006-01-02 15:04 MST"

func (m messages) notStarted(at time.Time) Reason {
	var buf [64]byte
	b := buf[:0]
	if m.zh {
		b = append(at.UTC().AppendFormat(b, timeLayout), "起可用"...)
	} else {
		b = at.UTC().AppendFormat(append(b, "valid from "...), timeLayout)
	}
	return Reason{Code: ReasonNotStarted, Message: m.str(b)}
}

func (m messages) expired(at time.Time) Reason {
	var buf [64]byte
	b := buf[:0]
	if m.zh {
		b = append(at.UTC().AppendFormat(append(b, "已于"...), timeLayout), "过期"...)
	} else {
		b = at.UTC().AppendFormat(append(b, "expired at "...), timeLayout)
	}
	return Reason{Code: ReasonExpired, Message: m.str(b)}
}

func (m messages) currency(code string) Reason {
	return Reason{Code: ReasonCurrency, Message: m.pick("for "+code+" only", "仅限"+code)}
}

func (m messages) condition() Reason {
	return Reason{Code: ReasonCondition, Message: m.pick("the coupon's conditions are not met", "不满足使用条件")}
}

func (m messages) templateMissing() Reason {
	return Reason{Code: ReasonTemplateMissing, Message: m.pick("the coupon's template is not available", "券模板不可用")}
}

func (m messages) noPricedItem() Reason {
	return Reason{Code: ReasonNoApplicableItem, Message: m.pick("no eligible item has a price", "没有可计价的可用商品")}
}

// The reasons of applicable coupons left out of the best stack, and of refused combinations.
func (m messages) otherFamily() Reason {
	return Reason{Code: ReasonStacking, Message: m.pick("discounts and seller bonuses cannot be combined", "优惠券与加价券不可同时使用")}
}

func (m messages) exclusiveChosen() Reason {
	return Reason{Code: ReasonStacking, Message: m.pick("an exclusive coupon that gives more is used alone", "已选用更优惠的不可叠加券")}
}

func (m messages) exclusiveSelf() Reason {
	return Reason{Code: ReasonStacking, Message: m.pick("exclusive: it is used alone, and the best stack gives more", "该券不可叠加，叠加组合更优惠")}
}

// leftOut is the fixed reason k (leftOtherFamily, …) of a coupon left out of the best stack.
func (m messages) leftOut(k int) Reason {
	switch k {
	case leftOtherFamily:
		return m.otherFamily()
	case leftExclusiveChosen:
		return m.exclusiveChosen()
	case leftExclusiveSelf:
		return m.exclusiveSelf()
	case leftOneTemplate:
		return m.oneTemplate()
	}
	return m.addsNothing()
}

func (m messages) exclusiveWithOthers() Reason {
	return Reason{Code: ReasonStacking, Message: m.pick("exclusive: it must be used alone", "该券不可与其他券同时使用")}
}

func (m messages) addsNothing() Reason {
	return Reason{Code: ReasonStacking, Message: m.pick("it adds nothing to the best stack", "叠加后无额外优惠")}
}

func (m messages) oneTemplate() Reason {
	return Reason{Code: ReasonLimitReached, Message: m.pick("one coupon per template per order", "同一种券每单限用1张")}
}

// groupFull: `group "platform" allows 1 per order` / `"platform"组每单限用1张`.
func (m messages) groupFull(group string, limit int) Reason {
	var buf [128]byte
	b := buf[:0]
	if m.zh {
		b = appendQuoted(b, group)
		b = append(strconv.AppendInt(append(b, "组每单限用"...), int64(limit), 10), "张"...)
	} else {
		b = appendQuoted(append(b, "group "...), group)
		b = append(strconv.AppendInt(append(b, " allows "...), int64(limit), 10), " per order"...)
	}
	return Reason{Code: ReasonLimitReached, Message: m.str(b)}
}
