// Package coupon is perk's coupon module: templates as config (kinds coupon_template and
// issue_rule), issuance under total and per-user limits that never over-issue, the user's wallet,
// qualification of a cart against the wallet (the pure engine is the subpackage qualify),
// redemption with lock, confirm, release and rollback, and the lifecycle sweeps (expiry, lock
// release, archive).
//
// A wallet coupon pins the template version it was issued under. Every state change writes a
// domain event through the outbox in its own transaction:
//
//	issued ──lock──► locked ──confirm──► redeemed ──rollback──► issued (restored) | expired
//	  │                 └──release / TTL──► issued
//	  ├──expiry sweep──► expired
//	  └──revoke──► revoked
package coupon

import (
	"regexp"
	"time"

	"github.com/perkhq/perk/internal/coupon/qualify"
)

// The config-center kinds the module registers (RegisterKinds).
const (
	// KindTemplate is a coupon template; its spec is a qualify.Spec.
	KindTemplate = "coupon_template"
	// KindIssueRule issues a template when a behaviour event matches; its spec is an IssueRule.
	KindIssueRule = "issue_rule"
)

// State is where a wallet coupon is in its life.
type State string

// The coupon states.
const (
	// StateIssued: in the wallet and usable (once started, until it expires).
	StateIssued State = "issued"
	// StateLocked: reserved by a redemption that is neither confirmed nor released.
	StateLocked State = "locked"
	// StateRedeemed: used by a confirmed redemption.
	StateRedeemed State = "redeemed"
	// StateExpired: passed its expiry unused.
	StateExpired State = "expired"
	// StateRevoked: withdrawn by the merchant.
	StateRevoked State = "revoked"
)

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	switch s {
	case StateIssued, StateLocked, StateRedeemed, StateExpired, StateRevoked:
		return true
	}
	return false
}

// The domain events the module emits, in the transaction of the change. Coupon events carry the
// user and, as source, the coupon; redemption events the redemption.
const (
	EventIssued   = "coupon.issued"
	EventLocked   = "coupon.locked"
	EventRedeemed = "coupon.redeemed"
	EventReleased = "coupon.released"
	EventExpired  = "coupon.expired"
	EventRevoked  = "coupon.revoked"
	// EventRestored: a rollback put a redeemed coupon back in the wallet.
	EventRestored = "coupon.restored"

	EventRedemptionLocked     = "redemption.locked"
	EventRedemptionConfirmed  = "redemption.confirmed"
	EventRedemptionReleased   = "redemption.released"
	EventRedemptionRolledBack = "redemption.rolled_back"
)

// The source kinds of coupons the module issues itself.
const (
	// SourceAPI: issued through Issue (POST /v1/coupon-templates/{key}/issue).
	SourceAPI = "api"
	// SourceIssueRule: issued by an issue_rule on a behaviour event.
	SourceIssueRule = "issue_rule"
)

// The problem codes the module answers with (besides invalid and not-found).
const (
	// CodeSoldOut: the template's total quantity is issued.
	CodeSoldOut = "coupon-sold-out"
	// CodeLimitReached: the user holds the template's per-user limit.
	CodeLimitReached = "coupon-limit-reached"
	// CodeUnavailable: a coupon named in a lock is not the user's, not issued, or locked by another
	// redemption.
	CodeUnavailable = "coupon-unavailable"
	// CodeKeyConflict: an issuance business key was used for another template.
	CodeKeyConflict = "coupon-key-conflict"
	// CodeCouponState: the coupon's state does not allow the change (revoke).
	CodeCouponState = "coupon-state"
	// CodeTemplateEnded: the template's fixed validity window is over; its coupons would be born
	// expired.
	CodeTemplateEnded = "coupon-template-ended"
	// CodeTemplateNotFound: no published coupon template has the key.
	CodeTemplateNotFound = "coupon-template-not-found"
	// CodeCouponNotFound: no coupon of the tenant has the id.
	CodeCouponNotFound = "coupon-not-found"
	// CodeRedemptionNotFound: no redemption of the tenant has the id.
	CodeRedemptionNotFound = "redemption-not-found"
	// CodeRedemptionState: the redemption's state does not allow the change.
	CodeRedemptionState = "redemption-state"
	// CodeRedemptionExpired: the lock's TTL passed before the confirmation; the coupons are released.
	CodeRedemptionExpired = "redemption-expired"
	// CodeOrderConflict: the order already has a redemption made from another request.
	CodeOrderConflict = "redemption-order-conflict"
)

// Coupon is one coupon in a user's wallet.
type Coupon struct {
	ID       string `json:"id"`
	TenantID string `json:"tenant_id"`
	UserID   string `json:"user_id"`
	// Template and TemplateVersion pin the template version the coupon was issued under.
	Template        string    `json:"template"`
	TemplateVersion int       `json:"template_version"`
	State           State     `json:"state"`
	IssuedAt        time.Time `json:"issued_at"`
	StartsAt        time.Time `json:"starts_at"`
	ExpiresAt       time.Time `json:"expires_at"`
	// SourceKind and SourceID name what issued it ("api", "grant", "issue_rule").
	SourceKind  string `json:"source_kind"`
	SourceID    string `json:"source_id"`
	BusinessKey string `json:"business_key"`
	// RedemptionID is the redemption that locked or redeemed it.
	RedemptionID string `json:"redemption_id,omitempty"`
	// Discount is its share of the redemption's discount while locked or redeemed.
	Discount     int64      `json:"discount,omitempty"`
	RedeemedAt   *time.Time `json:"redeemed_at,omitempty"`
	RevokeReason string     `json:"revoke_reason,omitempty"`
	UpdatedAt    time.Time  `json:"updated_at"`
	// Archived tells a coupon read from the archive (ended, past the retention).
	Archived bool `json:"archived,omitempty"`
}

// Page is one page of a wallet, with the cursor of the next page ("" on the last page).
type Page struct {
	Items []Coupon `json:"items"`
	Next  string   `json:"next_cursor,omitempty"`
}

// RedemptionState is where a redemption is in its life.
type RedemptionState string

// The redemption states: locked → confirmed → rolled_back, or locked → released.
const (
	RedemptionLocked     RedemptionState = "locked"
	RedemptionConfirmed  RedemptionState = "confirmed"
	RedemptionReleased   RedemptionState = "released"
	RedemptionRolledBack RedemptionState = "rolled_back"
)

// Why a redemption was released.
const (
	ReleaseByRequest = "released"
	ReleaseByTTL     = "expired"
)

// Redemption is the use of coupons on one order.
type Redemption struct {
	ID        string       `json:"id"`
	TenantID  string       `json:"tenant_id"`
	UserID    string       `json:"user_id"`
	OrderID   string       `json:"order_id"`
	CouponIDs []string     `json:"coupon_ids"`
	Cart      qualify.Cart `json:"cart"`
	// Discount is the combination's value; Coupons has each coupon's part and its split over the
	// cart's items.
	Discount      int64             `json:"discount"`
	Coupons       []qualify.Outcome `json:"coupons"`
	State         RedemptionState   `json:"state"`
	LockExpiresAt time.Time         `json:"lock_expires_at"`
	// ReleaseReason is "released" (by request) or "expired" (TTL) for a released redemption.
	ReleaseReason string `json:"release_reason,omitempty"`
	// Restored lists the coupons a rollback put back in the wallet.
	Restored     []string   `json:"restored,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	ConfirmedAt  *time.Time `json:"confirmed_at,omitempty"`
	ReleasedAt   *time.Time `json:"released_at,omitempty"`
	RolledBackAt *time.Time `json:"rolled_back_at,omitempty"`
}

// RollbackPolicy says what a rollback does with the redeemed coupons.
type RollbackPolicy string

// The rollback policies.
const (
	// RestoreIfValid puts each coupon back as issued if it has not expired, else marks it expired.
	RestoreIfValid RollbackPolicy = "restore_if_valid"
	// NeverRestore leaves the coupons redeemed (used up); only the redemption is rolled back.
	NeverRestore RollbackPolicy = "never_restore"
)

func (p RollbackPolicy) valid() bool { return p == RestoreIfValid || p == NeverRestore }

// Stats sums up one template's coupons, live and archived.
type Stats struct {
	Template string `json:"template"`
	// Issued counts every coupon ever issued (whatever its state now).
	Issued int64 `json:"issued"`
	// Available counts the coupons in state issued (usable or not yet started).
	Available int64 `json:"available"`
	Locked    int64 `json:"locked"`
	Redeemed  int64 `json:"redeemed"`
	Expired   int64 `json:"expired"`
	Revoked   int64 `json:"revoked"`
	// DiscountCost sums the redeemed coupons' shares of their confirmed redemptions (minor units).
	DiscountCost int64 `json:"discount_cost"`
	// RedemptionRate is Redeemed / Issued (0 when nothing was issued).
	RedemptionRate float64 `json:"redemption_rate"`
}

// Limits of requests.
const (
	// MaxIssueUsers bounds the users of one Issue call.
	MaxIssueUsers = 10_000
	// MaxLockCoupons bounds the coupons of one redemption.
	MaxLockCoupons = 20
	// DefaultLockTTL is a lock's TTL when the request names none.
	DefaultLockTTL = 15 * time.Minute
	// MaxLockTTL bounds a lock's TTL.
	MaxLockTTL = 24 * time.Hour
	// MinLockTTL is the shortest lock TTL accepted.
	MinLockTTL = time.Second
	// maxWalletCoupons bounds the usable coupons Qualify reads (soonest expiry first).
	maxWalletCoupons = 1000
)

var (
	keyPattern        = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	sourceKindPattern = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,31}$`)
	printablePattern  = regexp.MustCompile(`^[\x21-\x7e]{1,200}$`)
	orderIDPattern    = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)
)
