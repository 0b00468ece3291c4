package reward

import "github.com/perkhq/perk/internal/platform/problem"

// CheckRewards validates an inline reward list the way CreateTx does — types, amounts, expiry
// policies, coupon templates — and files each problem under root, e.g.
// "spec.stages[0].rewards[1].amount". Coupon rewards are accepted only when reg has an
// issue_coupon component that can issue (the coupon module is installed); a nil reg has none.
// Modules that embed reward lists in their own config (tasks) call it at publish.
func CheckRewards(fs *problem.Fields, reg *Registry, root string, rewards []Reward) {
	compileRewards(fs, root, rewards, couponsIn(reg))
}

// couponsIn reports whether reg can issue coupons: its issue_coupon is the built-in one with an
// issuer, or a component registered in its place.
func couponsIn(reg *Registry) bool {
	if reg == nil {
		return false
	}
	c, ok := reg.Get(ComponentIssueCoupon)
	if !ok {
		return false
	}
	builtIn, isBuiltIn := c.(couponComponent)
	return !isBuiltIn || builtIn.issuer != nil
}
