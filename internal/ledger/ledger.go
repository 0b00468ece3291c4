// Package ledger is perk's append-only, double-entry ledger of points, growth value and any asset a
// merchant defines. Every entry moves an amount from a debit account to a credit account, so the
// accounts of one asset always sum to zero and a merchant's outstanding liability is known at any
// time. Users' balances are cached on their account rows, updated in the entry's transaction, and
// checked against the entries by Verify. Points are held in lots by expiry; spending takes the
// earliest-expiring lot first, an expiry sweep expires what remains of past-due lots, and holds
// reserve points for a redemption until captured or released.
package ledger

import (
	"math"
	"regexp"
	"time"
)

// The built-in assets every merchant has.
const (
	AssetPoints = "points"
	AssetGrowth = "growth"
)

// The reserved system accounts (owners that are not users). Their ids start with SystemPrefix,
// which no user id may.
const (
	SystemPrefix = "sys:"
	// AccountIssuance is the merchant's issuance account: every grant moves value out of it, so its
	// balance is minus everything ever issued.
	AccountIssuance = "sys:issuance"
	// AccountSpent receives what users spend (captured holds included).
	AccountSpent = "sys:spent"
	// AccountExpired receives what expires.
	AccountExpired = "sys:expired"
	// AccountAdjustment is the counterpart of manual adjustments, both ways.
	AccountAdjustment = "sys:adjustment"
)

// systemShards is how many rows each system account is split over, so that concurrent
// transactions do not all queue on one hot row.
const systemShards = 16

// Kind is what an entry records.
type Kind string

// The entry kinds.
const (
	KindGrant   Kind = "grant"   // issuance → user
	KindSpend   Kind = "spend"   // user → spent
	KindCapture Kind = "capture" // user → spent, settling a hold
	KindExpire  Kind = "expire"  // user → expired, what remained of a past-due lot
	KindAdjust  Kind = "adjust"  // adjustment → user (positive) or user → adjustment (negative)
)

// Lot expiry sentinels as stored: the debt lot sorts first, never-expiring lots last.
const (
	debtLot  int64 = 0
	neverLot int64 = math.MaxInt64
)

var (
	assetPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
	// keyPattern bounds business keys: printable ASCII without spaces, 1 to 200 characters.
	keyPattern = regexp.MustCompile(`^[\x21-\x7e]{1,200}$`)
)

// internalKeyPrefix starts the business keys the ledger makes itself (expiry, capture); callers
// may not use it.
const internalKeyPrefix = "ledger:"

// Entry is one posted movement. It never changes once written.
type Entry struct {
	ID       string `json:"id"`
	TenantID string `json:"tenant_id"`
	// UserID is the user whose account is one side of the entry.
	UserID string `json:"user_id"`
	Kind   Kind   `json:"kind"`
	Asset  string `json:"asset"`
	// Amount is moved from Debit to Credit; it is always positive.
	Amount int64  `json:"amount"`
	Debit  string `json:"debit_account"`
	Credit string `json:"credit_account"`
	// Delta is the signed effect on the user's balance (+Amount or -Amount).
	Delta       int64  `json:"delta"`
	BusinessKey string `json:"business_key"`
	SourceKind  string `json:"source_kind,omitempty"`
	SourceID    string `json:"source_id,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// LotExpiresAt is the expiry of the lot a grant or positive adjustment went to, or of the lot an
	// expire entry expired; nil for never.
	LotExpiresAt *time.Time `json:"lot_expires_at,omitempty"`
	// HoldID names the hold a capture settled.
	HoldID    string    `json:"hold_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Account is a user's position in one asset.
type Account struct {
	Asset string `json:"asset"`
	// Balance is the sum of the user's entries in the asset.
	Balance int64 `json:"balance"`
	// Held is reserved by active holds; Available = Balance - Held is what may be spent.
	Held      int64 `json:"held"`
	Available int64 `json:"available"`
	// ExpiringSoon is what will expire within the service's ExpiringWindow unless spent first.
	ExpiringSoon int64 `json:"expiring_soon"`
	// ExpiringBefore is the end of that window.
	ExpiringBefore time.Time `json:"expiring_before"`
}

// Asset is an asset a merchant may post in.
type Asset struct {
	Asset   string `json:"asset"`
	Name    string `json:"name,omitempty"`
	BuiltIn bool   `json:"built_in"`
}

// HoldState is where a hold is in its life.
type HoldState string

// The hold states.
const (
	HoldActive   HoldState = "active"
	HoldCaptured HoldState = "captured"
	HoldReleased HoldState = "released"
	HoldExpired  HoldState = "expired" // released by the TTL sweep
)

// Hold reserves part of a user's available balance.
type Hold struct {
	ID          string    `json:"id"`
	TenantID    string    `json:"tenant_id"`
	UserID      string    `json:"user_id"`
	Asset       string    `json:"asset"`
	Amount      int64     `json:"amount"`
	Captured    int64     `json:"captured"`
	State       HoldState `json:"state"`
	BusinessKey string    `json:"business_key"`
	SourceKind  string    `json:"source_kind,omitempty"`
	SourceID    string    `json:"source_id,omitempty"`
	// EntryID is the capture entry, once captured.
	EntryID   string     `json:"entry_id,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	SettledAt *time.Time `json:"settled_at,omitempty"`
}

// Liability is a merchant's position in one asset. Outstanding is what its users hold; by double
// entry it equals minus the sum of the system accounts: Issued - Spent - Expired + Adjusted.
type Liability struct {
	Asset       string `json:"asset"`
	Outstanding int64  `json:"outstanding"`
	// Issued is everything ever granted: minus the balance of sys:issuance.
	Issued  int64 `json:"issued"`
	Spent   int64 `json:"spent"`
	Expired int64 `json:"expired"`
	// Adjusted is the net of manual adjustments (positive when more was added than removed).
	Adjusted int64 `json:"adjusted"`
}

// Expiring is an amount that will expire in one period unless spent first.
type Expiring struct {
	// Period is the last local day ("2026-03-31") or month ("2026-03") on which the amount is valid.
	Period string `json:"period"`
	// ExpiresAt is the earliest expiry instant within the period.
	ExpiresAt time.Time `json:"expires_at"`
	Amount    int64     `json:"amount"`
}

// Page is one page of a list.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next_cursor,omitempty"`
}
