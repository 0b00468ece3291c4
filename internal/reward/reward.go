// Package reward delivers what users earn, exactly once, however the process crashes. A grant is
// the promise of a reward: unique on its source (tenant, source kind, source id, seq), it names a
// flow — a published, versioned config resource of kind "flow", or an inline list of rewards
// compiled to one — and the executor runs that flow's steps (grant points, grant growth, issue a
// coupon, call a merchant system, emit an event, or any registered component), each applied once:
// a step that writes to the database commits its effect and its step row in one transaction, a
// step that calls out sends "<grant_id>/<step>" as its idempotency key.
//
// Grants run inline right after the caller's commit (ExecuteAfterCommit), from the bus (Consume)
// and from the replay sweeper (Sweep, Run) that every node may run. A failed grant is retried with
// exponential backoff and jitter; after its flow's max attempts it is dead: visible (Owed, List)
// and replayable (Retry).
package reward

import (
	"context"
	"encoding/json"
	"regexp"
	"time"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// KindFlow is the config-center kind of reward flows.
const KindFlow = "flow"

// The domain events the module emits, through the outbox, in the transaction of the change.
const (
	// EventCreated: a grant was created (the asynchronous executor consumes it).
	EventCreated = "grant.created"
	// EventSucceeded: every step of the grant is done.
	EventSucceeded = "grant.succeeded"
	// EventFailed: an attempt failed; the grant will be retried at next_attempt_at.
	EventFailed = "grant.failed"
	// EventDead: the grant ran out of attempts; it waits for a replay (Retry).
	EventDead = "grant.dead"
	// EventRetried: a failed or dead grant was put back to pending by hand.
	EventRetried = "grant.retried"
)

// SourceAPI is the source kind of grants made through POST /v1/grants.
const SourceAPI = "api"

// State is where a grant is in its life.
type State string

// The grant states: pending → running → succeeded | failed (retrying) | dead.
const (
	StatePending   State = "pending"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateDead      State = "dead"
)

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	switch s {
	case StatePending, StateRunning, StateSucceeded, StateFailed, StateDead:
		return true
	}
	return false
}

// StepState is what happened to one step of a grant.
type StepState string

// The step states. A step with no row yet is reported as pending.
const (
	StepPending     StepState = "pending"
	StepSucceeded   StepState = "succeeded"
	StepSkipped     StepState = "skipped" // its condition was false
	StepWaiting     StepState = "waiting" // it waits for a confirmation (call_external)
	StepFailed      StepState = "failed"  // its last attempt failed; it runs again on the next one
	StepCompensated StepState = "compensated"
)

func (s StepState) done() bool { return s == StepSucceeded || s == StepSkipped }

// Grant is one reward owed to a user and its delivery.
type Grant struct {
	ID         string `json:"id"`
	TenantID   string `json:"tenant_id"`
	UserID     string `json:"user_id"`
	SourceKind string `json:"source_kind"`
	SourceID   string `json:"source_id"`
	Seq        int    `json:"seq"`
	// FlowKey and FlowVersion name the pinned flow version; both are empty for inline rewards.
	FlowKey     string `json:"flow,omitempty"`
	FlowVersion int    `json:"flow_version,omitempty"`
	// Params are the caller's parameters, visible to the steps' conditions (params.x).
	Params        json.RawMessage `json:"params"`
	State         State           `json:"state"`
	Attempts      int             `json:"attempts"`
	MaxAttempts   int             `json:"max_attempts"`
	NextAttemptAt *time.Time      `json:"next_attempt_at,omitempty"`
	LastError     string          `json:"last_error,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
	CompletedAt   *time.Time      `json:"completed_at,omitempty"`
	// Steps are the flow's steps with what happened to each (filled by Get, Execute and Create).
	Steps []Step `json:"steps,omitempty"`

	flowID     string
	flowSpec   string
	claimedBy  string
	claimedTil int64
}

// Step is one step of a grant's flow and what happened to it.
type Step struct {
	Name      string          `json:"name"`
	Component string          `json:"component"`
	State     StepState       `json:"state"`
	Output    json.RawMessage `json:"output,omitempty"`
	Attempts  int             `json:"attempts"`
	LastError string          `json:"last_error,omitempty"`
	// WaitUntil is when a waiting step times out.
	WaitUntil *time.Time `json:"wait_until,omitempty"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

// Page is one page of grants, with the cursor of the next page ("" on the last page).
type Page struct {
	Items []Grant `json:"items"`
	Next  string  `json:"next_cursor,omitempty"`
}

// Reward is one entry of an inline reward list; the list compiles to a flow with one step each.
type Reward struct {
	// Type is "points", "growth" or "coupon".
	Type string `json:"type"`
	// Amount is what a points or growth reward grants (> 0).
	Amount int64 `json:"amount,omitempty"`
	// Expiry is the points' expiry policy (default never).
	Expiry *ledger.Expiry `json:"expiry,omitempty"`
	// Template is the coupon template key of a coupon reward.
	Template string `json:"template,omitempty"`
	// Reason is written on the ledger entry.
	Reason string `json:"reason,omitempty"`
}

// The reward types of an inline list.
const (
	RewardPoints = "points"
	RewardGrowth = "growth"
	RewardCoupon = "coupon"
)

// Ledger posts grants in the caller's transaction, unique on (tenant, business key): a repeated key
// returns the existing entry with created=false. GrantManyTx posts many with set-based statements
// (the fast path). *ledger.Service is one.
type Ledger interface {
	GrantTx(ctx context.Context, tx *sqldb.Tx, p ledger.GrantParams) (ledger.Entry, bool, error)
	GrantManyTx(ctx context.Context, tx *sqldb.Tx, ps []ledger.GrantParams) ([]ledger.Entry, []bool, error)
}

// CouponIssuer issues a coupon into a user's wallet in the caller's transaction, idempotently on
// the business key. The coupon module provides it; without one, flows using issue_coupon are
// refused at publish.
type CouponIssuer interface {
	IssueTx(ctx context.Context, tx *sqldb.Tx, p IssueCouponParams) (couponID string, err error)
}

// IssueCouponParams names the coupon to issue.
type IssueCouponParams struct {
	TenantID string
	UserID   string
	// Template is the coupon template's config key.
	Template string
	// BusinessKey is "<grant_id>/<step>": the same key must not issue twice.
	BusinessKey string
	SourceKind  string
	SourceID    string
}

var (
	sourceKindPattern = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,31}$`)
	sourceIDPattern   = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)
	stepNamePattern   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,47}$`)
	flowKeyPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	eventTypePattern  = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`)
)

// maxParamsBytes bounds a grant's params.
const maxParamsBytes = 16 << 10
