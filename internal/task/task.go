// Package task is perk's task center: task definitions (config-center kind "task"), users'
// progress per period driven by behaviour events, claim and synchronous completion, streaks, and
// the user-task state machine
//
//	claimed → completed → rewarded
//	              └─────→ failed → rewarded
//	claimed → expired
//	claimed | completed | failed → terminated
//
// A completed stage creates its grant (source "task"/<user task id>/<stage>) in the transaction
// that completes it, with the other grants of the batch (reward.Service.CreateManyTx): a grant
// whose flow only writes to the database is delivered in that transaction, and a user task whose
// stage grants all succeeded is rewarded in it too; any other grant (one that calls out, or one
// whose delivery failed) runs right after the commit, and its outcome (grant.succeeded,
// grant.failed, grant.dead on the DOMAIN stream) moves the user task on.
// Every transition writes a task.* domain event in its transaction.
package task

import "time"

// KindTask is the config-center kind of task definitions.
const KindTask = "task"

// SourceKind is the grant source kind of task rewards: the source id is the user task id (stage
// rewards) or the streak's run ("<streak id>/<first day>", streak rewards).
const SourceKind = "task"

// EventSourceKind is the source kind of the task.* domain events: their source id is the user
// task id.
const EventSourceKind = "user_task"

// The domain events the module writes, in the transaction of the change they announce.
const (
	EventClaimed    = "task.claimed"    // a user task was created (claimed, auto-claimed or assigned)
	EventProgressed = "task.progressed" // a stage other than the last completed
	EventCompleted  = "task.completed"  // the last stage completed; its grant was created
	EventRewarded   = "task.rewarded"   // every grant of the user task succeeded
	EventFailed     = "task.failed"     // a grant of the completed user task failed (it is retried)
	EventExpired    = "task.expired"    // the period ended before completion
	EventTerminated = "task.terminated" // an operator stopped the task
	EventRefused    = "task.refused"    // a completion was refused (budget); the task stays claimed
)

// State is where a user task is.
type State string

// The user-task states.
const (
	StateClaimed    State = "claimed"
	StateCompleted  State = "completed"
	StateRewarded   State = "rewarded"
	StateFailed     State = "failed"
	StateExpired    State = "expired"
	StateTerminated State = "terminated"
)

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	switch s {
	case StateClaimed, StateCompleted, StateRewarded, StateFailed, StateExpired, StateTerminated:
		return true
	}
	return false
}

// done reports whether every stage of the user task is complete (whatever its grants did).
func (s State) done() bool { return s == StateCompleted || s == StateRewarded || s == StateFailed }

// Reasons recorded on a user task (UserTask.Reason).
const (
	// ReasonBudget: a completion was refused because the task's budget is spent.
	ReasonBudget = "budget_exhausted"
)

// UserTask is one user's progress on one task in one period (and round, when the task may be
// completed several times per period).
type UserTask struct {
	// ID is "ut_<ulid>".
	ID       string `json:"id"`
	TenantID string `json:"tenant_id"`
	UserID   string `json:"user_id"`
	Task     string `json:"task"`
	// PeriodKey is the period ("2026-11-21", "2026-W47", "2026-11", "once"), with "#<round>" for
	// rounds after the first.
	PeriodKey string `json:"period_key"`
	Period    string `json:"period"`
	Round     int    `json:"round"`
	// TaskVersion is the task's version the user task started under; it keeps using that spec.
	TaskVersion int   `json:"task_version"`
	State       State `json:"state"`
	// Progress is the metric: a count, a sum, the number of distinct values or a streak length.
	Progress int64 `json:"progress"`
	// Values are the distinct values seen (distinct metric), at most the largest target.
	Values []string `json:"values,omitempty"`
	// Stage counts the completed stages; StagesDone lists them.
	Stage      int   `json:"stage"`
	StagesDone []int `json:"stages_done"`
	// Reason says why the user task is where it is (a refused completion, a termination).
	Reason      string     `json:"reason,omitempty"`
	ClaimedAt   time.Time  `json:"claimed_at"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
	RewardedAt  *time.Time `json:"rewarded_at,omitempty"`
	// ExpiresAt is when the period ends (nil: never).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
	// Grants are the grants the user task earned (filled by Get, Complete and Replay).
	Grants []GrantRef `json:"grants,omitempty"`

	rev      int64  // optimistic concurrency: bumped by every write
	done     uint64 // StagesDone as a bit set
	dirty    bool
	inserted bool
	// head is the row's head as last read or written (see saveProgress).
	head rowHead
}

// GrantRef is one grant a user task (or a streak) earned, and where it stands.
type GrantRef struct {
	GrantID string `json:"grant_id"`
	// Kind is "stage" (Seq is the stage index) or "streak" (Seq is the streak length reached).
	Kind  string `json:"kind"`
	Seq   int    `json:"seq"`
	State string `json:"state"`
	// Cost is what the grant delivers: points, growth and coupons.
	Cost Cost `json:"cost"`
}

// Cost is what a reward is worth, by asset ("points", "growth", "coupons").
type Cost struct {
	Points  int64 `json:"points,omitempty"`
	Growth  int64 `json:"growth,omitempty"`
	Coupons int64 `json:"coupons,omitempty"`
}

func (c Cost) add(o Cost) Cost {
	return Cost{Points: c.Points + o.Points, Growth: c.Growth + o.Growth, Coupons: c.Coupons + o.Coupons}
}

// The grant kinds of GrantRef.
const (
	grantStage  = "stage"
	grantStreak = "streak"
)

// eventData is the payload of the task.* events.
type eventData struct {
	UserTaskID string   `json:"user_task_id"`
	Task       string   `json:"task"`
	Version    int      `json:"version"`
	Period     string   `json:"period"`
	PeriodKey  string   `json:"period_key"`
	State      State    `json:"state"`
	From       State    `json:"from,omitempty"`
	Stage      int      `json:"stage"`
	Progress   int64    `json:"progress"`
	Reason     string   `json:"reason,omitempty"`
	GrantIDs   []string `json:"grant_ids,omitempty"`
}
