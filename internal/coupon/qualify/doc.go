// Package qualify is the coupon module's pure core: the coupon template spec and its validation,
// compiled templates held in memory and indexed by dimension, and the qualification engine that
// answers, for a cart and a wallet, what every coupon is worth, how it splits over the items, why
// the others do not apply, and the best single pick and best stack. It does no I/O.
//
// # Templates
//
// Decode reads a coupon_template spec strictly (unknown members refused with their path, values
// of the wrong JSON type too) and checks it, every problem named by its field
// ("spec.threshold.amount"); Compile turns a valid spec into an immutable Template (CEL condition
// compiled, include/exclude lists sorted). NewIndex holds a tenant's live templates with postings
// per dimension value, so Candidates(cart) reads only the postings of the cart's values plus the
// templates that include everything.
//
// # Qualification
//
// Evaluate answers, for each wallet coupon, whether it applies, its value (amount off, percentage
// off with its cap, or seller bonus) and its split over the eligible items by largest remainder
// (no cent lost, no share below zero, no discount share above its item), or the reasons it does
// not apply. A coupon fails for hard reasons first (template missing, not started, expired,
// currency, business line, channel, no item of an included category/brand/model/SKU, eligible
// items free), then its CEL condition, then its threshold; the threshold hint ("¥12.00 more for
// ¥30.00 off") is only given when the threshold is the one thing missing. The work that depends
// only on the template and the cart is done once per template, however many coupons share it.
// Buffer.Evaluate gives the same answer into memory reused from one evaluation to the next, for
// callers that evaluate many wallets in turn and care about the tail latency.
//
// # Best pick and best stack
//
// Best.Single is the coupon of highest value (ties: earliest expiry, then coupon id). Best.Stack is
// the most valuable combination the stacking rules allow: one exclusive coupon alone, or group
// coupons with at most one coupon per template and, per group, no more coupons than the smallest
// max_per_order among the group's chosen templates. Discounts and seller bonuses never mix: the
// better family wins. A stack applies its discounts in a fixed order — percentages first, then
// amounts off (the usual checkout order, 折扣 before 满减), each kind by standalone value, then
// expiry, then id — each computed on what the earlier ones left of its items, so the stacked
// discounts on an item never exceed the item. Seller bonuses are computed on the items' amounts
// and add up. Thresholds are compared with the cart before discounts. Ties between stacks go to
// fewer coupons, then earlier expiries, then smaller ids.
//
// The stack is found by a branch and bound over the candidates (per template, its coupon that
// expires first), started from the per-group optimum of standalone values (or, when coupons of
// that pick take from the same items, from a greedy stack if it is better), pruned by bounds that
// hold at the cent (on what the stack could still gain, and on how few coupons could still tie
// the best), with the most promising children first and the additive tail (amounts off that
// cannot run out of items, seller bonuses) settled per group without branching. It is exact
// within a budget of 256 nodes, which ordinary wallets stay well inside; past it the best stack
// found so far is returned.
package qualify
