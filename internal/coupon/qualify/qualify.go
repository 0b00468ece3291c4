package qualify

import (
	"time"
)

// Lookup finds a template version.
type Lookup func(key string, version int) (*Template, bool)

// Input is what Evaluate and Price are given.
type Input struct {
	Now       time.Time
	Cart      Cart
	Coupons   []Coupon
	Templates Lookup
	// Wallet, when set, holds the coupons and their templates instead of Coupons and Templates,
	// which are then ignored.
	Wallet *Wallet
	// User is the user's attributes for CEL conditions (may be nil).
	User map[string]any
	// Lang is "en" (default) or "zh-CN", for reason messages.
	Lang string
}

// Evaluate qualifies every coupon against a valid cart and picks the best single coupon and the
// best stack.
//
// The cart must have passed ValidateCart (a bad one does not panic, but its answer means nothing).
// Outcomes come in wallet order; coupons of one template may share their Split and Reasons
// arrays, and coupons that fail or are left out for the same reason may share their Reasons
// array, so treat the result as read-only. Evaluate is safe for concurrent use.
func Evaluate(in Input) Result { return evaluate(&in, nil) }

// Buffer keeps the memory of a Result between evaluations, for callers that evaluate one wallet
// after another (a request handler with a sync.Pool of buffers): once a buffer has grown to the
// wallets it sees, Evaluate on it allocates only what a CEL condition's evaluation allocates (and
// the strings of messages not met lately), so the garbage collector has next to nothing to do and
// the tail latency stays close to the median.
//
// The zero Buffer is ready to use. A Buffer is not safe for concurrent use; it keeps the memory of
// the largest wallet it evaluated, so a pool should not keep the buffers of outsized wallets.
type Buffer struct {
	res Result
	mem resultMem
}

// Evaluate is the package's Evaluate, into b: the same answer, but the Result and the arrays it
// references (outcomes, splits, reasons, picks) live in b's memory and are overwritten by b's next
// Evaluate: encode or copy what you need before evaluating again. Strings (ids, messages) are never
// overwritten and stay valid.
func (b *Buffer) Evaluate(in Input) *Result {
	b.res = evaluate(&in, &b.mem)
	return &b.res
}

// Price values one chosen combination (a redemption): every coupon must apply and the set must be
// allowed together by the stacking rules. It returns the combination's pick and each coupon's
// outcome; a refused combination is a problem.Conflict error naming the coupons and reasons.
//
// The outcomes come in the order of couponIDs; each Discount and Split is the coupon's part of the
// combination (applied in the stack's order, each on what the earlier ones left), and the pick
// lists the ids in application order. A combination is refused with one field per offending coupon,
// "coupon_ids[1]": the reason; no id at all is a problem.Invalid error.
func Price(in Input, couponIDs []string) (Pick, []Outcome, error) { return price(&in, couponIDs) }

// Index holds one tenant's live templates, by key and by dimension.
type Index struct {
	ts    []*Template // sorted by key
	byKey map[string]int32
	// post finds, per dimension and value, the templates posted under it (a span of ids): each
	// template is posted under the values of its most specific include list (sku, model, brand,
	// category, channel, business line), or is a wildcard (wild) when it has none.
	post [numDims]map[string]span
	ids  []int32
	wild []int32
	// sure[i] says that finding template i implies it admits the cart: its only rule is the
	// include list it is posted under, or it is a wildcard without any rule.
	sure []bool
}

// NewIndex indexes templates. When a key comes in several versions, the highest is kept; nil
// templates are skipped. The index is immutable and safe for concurrent use.
func NewIndex(ts []*Template) *Index { return newIndex(ts) }

// Get returns the template of that key.
func (ix *Index) Get(key string) (*Template, bool) {
	i, ok := ix.byKey[key]
	if !ok {
		return nil, false
	}
	return ix.ts[i], true
}

// Candidates returns the templates whose business line, channel and item dimensions admit the
// cart (at least one item), without evaluating thresholds: the "which coupons could this cart
// use" question, answered from the dimension postings. They come in key order.
func (ix *Index) Candidates(c Cart) []*Template { return ix.candidates(&c) }

// Len is the number of templates.
func (ix *Index) Len() int { return len(ix.ts) }
