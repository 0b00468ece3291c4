package task

import (
	"time"

	"github.com/perkhq/perk/internal/reward"
)

// Kind is a task's kind: how its periods are cut.
type Kind string

// The task kinds.
const (
	KindOneOff  Kind = "one_off" // one period, "once"
	KindDaily   Kind = "daily"   // a period per day in the tenant's time zone
	KindWeekly  Kind = "weekly"  // a period per ISO week
	KindMonthly Kind = "monthly" // a period per calendar month
	KindWindow  Kind = "window"  // one period, bounded by the active window (required)
	KindStaged  Kind = "staged"  // several stages; period per Spec.Period
)

// Period is the period of a staged task.
type Period string

// The periods of a staged task.
const (
	PeriodNone    Period = "none"
	PeriodDaily   Period = "daily"
	PeriodWeekly  Period = "weekly"
	PeriodMonthly Period = "monthly"
)

// The metric types.
const (
	MetricCount    = "count"    // matching events
	MetricSum      = "sum"      // the sum of an integer field of the events' data
	MetricDistinct = "distinct" // distinct values of a field of the events' data
	MetricStreak   = "streak"   // consecutive days with a matching event
)

// The claim modes.
const (
	ClaimAuto     = "auto"     // the first matching event claims the task
	ClaimManual   = "manual"   // events count only after the user claims it
	ClaimAudience = "audience" // assigned to the users the audience matches, at their first matching event
)

// Spec is the spec of a task definition (config kind "task"), as stored: normalised, defaults
// filled.
type Spec struct {
	Kind    Kind    `json:"kind"`
	Trigger Trigger `json:"trigger"`
	Metric  Metric  `json:"metric"`
	// Stages: exactly one unless the kind is staged.
	Stages []Stage `json:"stages"`
	// Period cuts a staged task's periods (default none); other kinds have none.
	Period  Period  `json:"period,omitempty"`
	Claim   Claim   `json:"claim"`
	Limits  Limits  `json:"limits"`
	Visible *Window `json:"visible,omitempty"`
	// Active bounds when events count and claims are accepted; a window task requires it.
	Active *Window `json:"active,omitempty"`
	Streak *Streak `json:"streak,omitempty"`
	// Title and Description by language: "zh-CN" and "en".
	Title       map[string]string `json:"title"`
	Description map[string]string `json:"description,omitempty"`
	Icon        string            `json:"icon,omitempty"`
	Order       int               `json:"order"`
}

// Trigger says which events move the task.
type Trigger struct {
	EventTypes []string `json:"event_types"`
	// Filter is a CEL condition over event {id, type, source, time, data} and user (attributes).
	Filter string `json:"filter,omitempty"`
}

// Metric is what the stages' targets measure.
type Metric struct {
	Type string `json:"type"`
	// Field is a path in the event's data ("amount", "item.sku") for sum and distinct.
	Field string `json:"field,omitempty"`
}

// Stage is one target and what reaching it earns: inline rewards or a flow.
type Stage struct {
	Target  int64           `json:"target"`
	Rewards []reward.Reward `json:"rewards,omitempty"`
	Flow    string          `json:"flow,omitempty"`
	// After is the index of an earlier stage that must complete first.
	After *int `json:"after,omitempty"`
}

// Claim says how a user comes to have the task.
type Claim struct {
	Mode string `json:"mode"`
	// Audience is a CEL condition over user: who is assigned the task (mode audience) or who may
	// have it at all (other modes).
	Audience string `json:"audience,omitempty"`
}

// Limits bound completions.
type Limits struct {
	// PerPeriod is how many times a user may complete the task per period (default 1).
	PerPeriod int     `json:"per_period"`
	Budget    *Budget `json:"budget,omitempty"`
}

// Budget bounds the task's completions and the points its rewards cost, over all users.
type Budget struct {
	Completions int64 `json:"completions,omitempty"`
	CostPoints  int64 `json:"cost_points,omitempty"`
}

// Window is a time range [From, Until); either end may be open.
type Window struct {
	From  *time.Time `json:"from,omitempty"`
	Until *time.Time `json:"until,omitempty"`
}

// contains reports whether t is inside the window (a nil window contains everything).
func (w *Window) contains(t time.Time) bool {
	if w == nil {
		return true
	}
	return (w.From == nil || !t.Before(*w.From)) && (w.Until == nil || t.Before(*w.Until))
}

// Streak configures consecutive-day rewards, make-up cards and freezes.
type Streak struct {
	Rewards []StreakReward `json:"rewards,omitempty"`
	// Cycle restarts the rewards after the last one: with rewards at day 7, days 14, 21 … earn it too.
	Cycle bool `json:"cycle,omitempty"`
	// MakeupCardsPerMonth is how many missed days a user may fill per month (补签).
	MakeupCardsPerMonth int `json:"makeup_cards_per_month,omitempty"`
	// FreezePerMonth is how many missed days per month are bridged automatically.
	FreezePerMonth int `json:"freeze_per_month,omitempty"`
}

// StreakReward is what reaching a streak length earns.
type StreakReward struct {
	Day     int             `json:"day"`
	Rewards []reward.Reward `json:"rewards,omitempty"`
	Flow    string          `json:"flow,omitempty"`
}

// perPeriod is the completions a user may make per period.
func (s *Spec) perPeriod() int { return max(s.Limits.PerPeriod, 1) }

// maxTarget is the largest stage target.
func (s *Spec) maxTarget() int64 {
	var m int64
	for _, st := range s.Stages {
		m = max(m, st.Target)
	}
	return m
}

// hasStreak reports whether the task keeps a streak tracker.
func (s *Spec) hasStreak() bool { return s.Metric.Type == MetricStreak || s.Streak != nil }

// title picks the title in lang, else English, else Chinese.
func (s *Spec) text(m map[string]string, lang string) string {
	for _, l := range []string{lang, "en", "zh-CN"} {
		if v, ok := m[l]; ok && v != "" {
			return v
		}
	}
	return ""
}
