package qualify

import (
	"time"
)

// The template types.
const (
	// TypeAmountOff takes Amount off the order.
	TypeAmountOff = "amount_off"
	// TypePercentOff takes PercentBP basis points of the eligible amount off, at most Cap.
	TypePercentOff = "percent_off"
	// TypeSellerBonus (加价券) adds to what the platform pays the user: Amount (fixed) or PercentBP of
	// the eligible amount, at most Cap, once the threshold is reached.
	TypeSellerBonus = "seller_bonus"
)

// The threshold scopes.
const (
	// ScopeCart: the threshold is compared with the whole cart's amount.
	ScopeCart = "cart"
	// ScopeApplicable: the threshold is compared with the amount of the applicable items only.
	ScopeApplicable = "applicable"
)

// The stacking modes.
const (
	// StackExclusive: the coupon is used alone.
	StackExclusive = "exclusive"
	// StackGroup: the coupon stacks with coupons of other groups and with at most
	// Stacking.MaxPerOrder coupons of its own group.
	StackGroup = "group"
)

// Spec is a coupon template as merchants write it (the config-center kind coupon_template). Money
// is int64 minor units of Currency.
type Spec struct {
	Type string `json:"type"`
	// Amount is the amount off (amount_off) or the fixed bonus (seller_bonus without PercentBP).
	Amount int64 `json:"amount,omitempty"`
	// PercentBP is the percentage in basis points (1 % = 100) for percent_off and percentage
	// seller_bonus.
	PercentBP int64 `json:"percent_bp,omitempty"`
	// Cap bounds a percentage discount or bonus; required with PercentBP.
	Cap int64 `json:"cap,omitempty"`
	// Currency is an ISO 4217 code; default "CNY".
	Currency      string        `json:"currency,omitempty"`
	Threshold     Threshold     `json:"threshold"`
	Applicability Applicability `json:"applicability"`
	Validity      Validity      `json:"validity"`
	// Quantity is the total number that may be issued; 0 means unlimited.
	Quantity int64 `json:"quantity,omitempty"`
	// PerUser is how many one user may hold over all time; 0 means unlimited.
	PerUser  int64    `json:"per_user,omitempty"`
	Stacking Stacking `json:"stacking"`
	// Condition is an optional CEL expression over user (map) and cart (map) that must be true.
	Condition   string            `json:"condition,omitempty"`
	Title       map[string]string `json:"title"`
	Description map[string]string `json:"description,omitempty"`
}

// Threshold is the minimum amount a coupon needs.
type Threshold struct {
	// Amount in minor units; 0 means no threshold.
	Amount int64 `json:"amount"`
	// Scope is ScopeCart (default) or ScopeApplicable.
	Scope string `json:"scope,omitempty"`
}

// Rule includes and excludes values of one dimension. An empty Include means every value; Exclude
// wins over Include.
type Rule struct {
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
}

// Applicability says which carts and items a coupon applies to. BusinessLine and Channel are
// cart-level; the others are item-level.
type Applicability struct {
	BusinessLine Rule `json:"business_line"`
	Channel      Rule `json:"channel"`
	Category     Rule `json:"category"`
	Brand        Rule `json:"brand"`
	Model        Rule `json:"model"`
	SKU          Rule `json:"sku"`
}

// Validity is a fixed window (From/Until) or N days from issue (Days); exactly one.
type Validity struct {
	From  *time.Time `json:"from,omitempty"`
	Until *time.Time `json:"until,omitempty"`
	Days  int        `json:"days,omitempty"`
}

// Stacking says what a coupon may be used with.
type Stacking struct {
	// Mode is StackExclusive (default) or StackGroup.
	Mode string `json:"mode,omitempty"`
	// Group names the stack group (required with StackGroup).
	Group string `json:"group,omitempty"`
	// MaxPerOrder bounds the coupons of this group in one order (default 1).
	MaxPerOrder int `json:"max_per_order,omitempty"`
}

// Cart is what a user is about to buy (or sell, for seller bonuses).
type Cart struct {
	BusinessLine string `json:"business_line,omitempty"`
	Channel      string `json:"channel,omitempty"`
	// Currency is an ISO 4217 code; default "CNY". Coupons of another currency do not apply.
	Currency string `json:"currency,omitempty"`
	Items    []Item `json:"items"`
}

// Item is one cart line. UnitPrice is in minor units.
type Item struct {
	SKU       string `json:"sku"`
	Category  string `json:"category,omitempty"`
	Brand     string `json:"brand,omitempty"`
	Model     string `json:"model,omitempty"`
	UnitPrice int64  `json:"unit_price"`
	Quantity  int64  `json:"quantity"`
}

// Coupon is a wallet coupon as the engine sees it.
type Coupon struct {
	ID              string    `json:"id"`
	TemplateKey     string    `json:"template"`
	TemplateVersion int       `json:"template_version"`
	StartsAt        time.Time `json:"starts_at"`
	ExpiresAt       time.Time `json:"expires_at"`
}

// The reason codes of a coupon that does not apply.
const (
	ReasonBelowThreshold   = "below_threshold"
	ReasonNoApplicableItem = "no_applicable_item"
	ReasonBusinessLine     = "business_line"
	ReasonChannel          = "channel"
	ReasonCategory         = "category"
	ReasonBrand            = "brand"
	ReasonModel            = "model"
	ReasonSKU              = "sku"
	ReasonCurrency         = "currency"
	ReasonNotStarted       = "not_started"
	ReasonExpired          = "expired"
	ReasonCondition        = "condition"
	ReasonTemplateMissing  = "template_missing"
	// ReasonStacking: applicable alone, but not in the best stack (exclusive, or its group is full).
	ReasonStacking = "stacking"
	// ReasonLimitReached: the group's maximum per order is reached by better coupons.
	ReasonLimitReached = "limit_reached"
)

// Reason tells why a coupon does not apply (or is left out of the best stack).
type Reason struct {
	Code string `json:"code"`
	// Message is for people, in the requested language: "¥12.00 more for ¥30.00 off".
	Message string `json:"message"`
	// Shortfall is how much more is needed (below_threshold), in minor units.
	Shortfall int64 `json:"shortfall,omitempty"`
}

// Share is one item's part of a coupon's value.
type Share struct {
	// Index is the item's position in Cart.Items.
	Index    int    `json:"index"`
	SKU      string `json:"sku"`
	Discount int64  `json:"discount"`
}

// Outcome is one coupon's answer.
type Outcome struct {
	CouponID   string `json:"coupon_id"`
	Template   string `json:"template"`
	Type       string `json:"type"`
	Applicable bool   `json:"applicable"`
	// Discount is the coupon's value for this cart: the amount off, or the bonus for seller_bonus.
	Discount int64 `json:"discount"`
	// Split shares Discount over the applicable items (largest remainder): the shares sum to
	// Discount and none is negative; for discounts none exceeds its item's amount (a seller bonus is
	// shared in proportion to the items' amounts and may exceed them).
	Split     []Share   `json:"split,omitempty"`
	Reasons   []Reason  `json:"reasons,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Pick is a set of coupons used together.
type Pick struct {
	CouponIDs []string `json:"coupon_ids"`
	Discount  int64    `json:"discount"`
}

// Best is the engine's recommendation.
type Best struct {
	// Single is the best one coupon (ties: earliest expiry, then coupon id); nil when none applies.
	Single *Pick `json:"single"`
	// Stack is the best combination the stacking rules allow; nil when none applies.
	Stack *Pick `json:"stack"`
}

// Result is the qualification of a whole wallet.
type Result struct {
	// Amount is the cart's total in minor units.
	Amount  int64     `json:"amount"`
	Coupons []Outcome `json:"coupons"`
	Best    Best      `json:"best"`
}
