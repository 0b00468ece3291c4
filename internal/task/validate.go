package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"unicode/utf8"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/rules"
	"github.com/perkhq/perk/internal/reward"
)

// Definition limits.
const (
	MaxStages       = 20
	MaxEventTypes   = 20
	MaxPerPeriod    = 20
	MaxTarget       = 1_000_000_000_000
	MaxDistinct     = 1000 // the largest target of a distinct metric: every value is stored
	MaxStreakDays   = 3660
	MaxStreakRules  = 31
	maxTitle        = 100
	maxDescription  = 2000
	maxIcon         = 2048
	maxMonthlyCards = 31
)

var (
	fieldPattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,7}$`)
	flowKeyPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	languages      = []string{"zh-CN", "en"}
)

// RegisterKinds registers the config kind "task" on a catalog registry. rewards is the reward
// engine's component registry (reward.Service.Components), used to validate inline rewards (a
// coupon reward needs the coupon module); nil accepts points and growth only. Publishing checks
// everything — shapes, ranges, CEL conditions (with line:column), the flows stages name (a flow
// that is not published is refused) — with field paths like "spec.stages[1].target"; the stored
// spec is normalised, defaults filled. Drafts are checked for what they hold.
func RegisterKinds(reg *catalog.Registry, rewards *reward.Registry) error {
	return reg.Register(catalog.Kind{Name: KindTask, Index: buildIndex,
		Validate: func(ctx context.Context, in catalog.ValidateInput) (json.RawMessage, error) {
			spec, err := validate(ctx, in, rewards)
			if err != nil || in.Draft() {
				return nil, err
			}
			return json.Marshal(spec)
		}})
}

// validator checks one spec.
type validator struct {
	ctx     context.Context
	in      catalog.ValidateInput
	rewards *reward.Registry
	fs      problem.Fields
	// required is false for drafts: missing fields and unresolved references are tolerated.
	required bool
}

// validate checks a spec and returns it normalised.
func validate(ctx context.Context, in catalog.ValidateInput, rewards *reward.Registry) (Spec, error) {
	v := &validator{ctx: ctx, in: in, rewards: rewards, required: !in.Draft()}
	var spec Spec
	if !checkShape(&v.fs, "spec", in.Spec, reflect.TypeFor[Spec]()) {
		return Spec{}, v.fs.Err("invalid task")
	}
	if err := json.Unmarshal(in.Spec, &spec); err != nil {
		return Spec{}, problem.Invalid("invalid task").WithField("spec", err.Error())
	}
	if err := v.check(&spec); err != nil {
		return Spec{}, err
	}
	return spec, v.fs.Err("invalid task")
}

func (v *validator) add(path, format string, args ...any) { v.fs.Add(path, format, args...) }

// check validates every part of spec, filling defaults. The error is for failed lookups.
func (v *validator) check(s *Spec) error {
	v.checkKind(s)
	v.checkTrigger(&s.Trigger)
	v.checkMetric(s)
	if err := v.checkStages(s); err != nil {
		return err
	}
	v.checkClaim(&s.Claim)
	v.checkLimits(&s.Limits)
	v.checkWindows(s)
	if err := v.checkStreak(s); err != nil {
		return err
	}
	v.checkTexts(s)
	return nil
}

func (v *validator) checkKind(s *Spec) {
	switch s.Kind {
	case KindOneOff, KindDaily, KindWeekly, KindMonthly, KindWindow:
		if s.Period != "" && s.Period != PeriodNone {
			v.add("spec.period", "only staged tasks have a period; the kind sets it")
		}
		s.Period = ""
	case KindStaged:
		switch s.Period {
		case "":
			s.Period = PeriodNone
		case PeriodNone, PeriodDaily, PeriodWeekly, PeriodMonthly:
		default:
			v.add("spec.period", "must be none, daily, weekly or monthly")
		}
	case "":
		if v.required {
			v.add("spec.kind", "is required: one_off, daily, weekly, monthly, window or staged")
		}
	default:
		v.add("spec.kind", "unknown kind %q: one_off, daily, weekly, monthly, window or staged", s.Kind)
	}
}

func (v *validator) checkTrigger(t *Trigger) {
	switch {
	case len(t.EventTypes) == 0 && v.required:
		v.add("spec.trigger.event_types", "at least one event type is required")
	case len(t.EventTypes) > MaxEventTypes:
		v.add("spec.trigger.event_types", "at most %d event types", MaxEventTypes)
	}
	seen := map[string]bool{}
	for i, typ := range t.EventTypes {
		path := fmt.Sprintf("spec.trigger.event_types[%d]", i)
		switch {
		case !bus.ValidBehaviourType(typ):
			v.add(path, "must be an event type: a dotted lower-case name of at most %d characters, e.g. checkin or order.paid",
				bus.MaxBehaviourTypeLen)
		case seen[typ]:
			v.add(path, "duplicate event type %q", typ)
		}
		seen[typ] = true
	}
	if t.Filter != "" {
		v.checkCEL("spec.trigger.filter", triggerEnv, t.Filter)
	}
}

// checkCEL compiles a condition; a compile error keeps its line:column.
func (v *validator) checkCEL(path string, env *rules.Env, expr string) {
	if _, err := env.Compile(expr, rules.BoolType); err != nil {
		var ce *rules.CompileError
		if errors.As(err, &ce) {
			v.add(path, "%s", ce.Error())
			return
		}
		v.add(path, "%v", err)
	}
}

func (v *validator) checkMetric(s *Spec) {
	m := &s.Metric
	switch m.Type {
	case MetricSum, MetricDistinct:
		switch {
		case m.Field == "" && v.required:
			v.add("spec.metric.field", "is required for a %s metric: a path in the event's data, e.g. amount", m.Type)
		case m.Field != "" && !fieldPattern.MatchString(m.Field):
			v.add("spec.metric.field", "must be a data path like amount or item.sku")
		}
	case MetricCount, MetricStreak:
		if m.Field != "" {
			v.add("spec.metric.field", "a %s metric has no field", m.Type)
		}
	case "":
		if v.required {
			v.add("spec.metric.type", "is required: count, sum, distinct or streak")
		}
	default:
		v.add("spec.metric.type", "unknown metric %q: count, sum, distinct or streak", m.Type)
	}
}

func (v *validator) checkStages(s *Spec) error {
	n := len(s.Stages)
	switch {
	case s.Kind == KindStaged && n < 2 && (v.required || n > 0):
		v.add("spec.stages", "a staged task has at least 2 stages")
	case s.Kind != KindStaged && s.Kind != "" && n != 1 && (v.required || n > 1):
		v.add("spec.stages", "a %s task has exactly one stage", s.Kind)
	case n > MaxStages:
		v.add("spec.stages", "at most %d stages", MaxStages)
	}
	for i := range s.Stages {
		if err := v.checkStage(s, i); err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) checkStage(s *Spec, i int) error {
	st := &s.Stages[i]
	path := fmt.Sprintf("spec.stages[%d]", i)
	switch {
	case st.Target <= 0 && (v.required || st.Target < 0):
		v.add(path+".target", "must be positive")
	case st.Target > MaxTarget:
		v.add(path+".target", "must be at most %d", int64(MaxTarget))
	case s.Metric.Type == MetricDistinct && st.Target > MaxDistinct:
		v.add(path+".target", "a distinct metric counts at most %d values", MaxDistinct)
	case s.Metric.Type == MetricStreak && st.Target > MaxStreakDays:
		v.add(path+".target", "a streak is at most %d days", MaxStreakDays)
	}
	if st.After != nil && (*st.After < 0 || *st.After >= i) {
		v.add(path+".after", "must be the index of an earlier stage (0 to %d)", i-1)
	}
	return v.checkRewards(path, st.Rewards, st.Flow)
}

// checkRewards checks a rewards-or-flow pair at path.
func (v *validator) checkRewards(path string, rewards []reward.Reward, flow string) error {
	switch {
	case len(rewards) > 0 && flow != "":
		v.add(path, "name a flow or list rewards, not both")
	case len(rewards) > 0:
		reward.CheckRewards(&v.fs, v.rewards, path+".rewards", rewards)
	case flow != "":
		return v.checkFlow(path+".flow", flow)
	case v.required:
		v.add(path+".rewards", "list rewards or name a flow")
	}
	return nil
}

// checkFlow refuses a flow key that names no published flow (at publish).
func (v *validator) checkFlow(path, key string) error {
	if !flowKeyPattern.MatchString(key) {
		v.add(path, "must be a flow key (a slug)")
		return nil
	}
	if !v.required || v.in.Lookup == nil {
		return nil
	}
	_, ok, err := v.in.Lookup.Published(v.ctx, reward.KindFlow, key)
	if err != nil {
		return fmt.Errorf("task: look up flow %s: %w", key, err)
	}
	if !ok {
		v.add(path, "unknown flow %q: no published flow has this key", key)
	}
	return nil
}

func (v *validator) checkClaim(c *Claim) {
	switch c.Mode {
	case "":
		c.Mode = ClaimAuto
	case ClaimAuto, ClaimManual:
	case ClaimAudience:
		if c.Audience == "" && v.required {
			v.add("spec.claim.audience", "is required with mode audience: a CEL condition over user")
		}
	default:
		v.add("spec.claim.mode", "must be auto, manual or audience")
	}
	if c.Audience != "" {
		v.checkCEL("spec.claim.audience", audienceEnv, c.Audience)
	}
}

func (v *validator) checkLimits(l *Limits) {
	switch {
	case l.PerPeriod == 0:
		l.PerPeriod = 1
	case l.PerPeriod < 0 || l.PerPeriod > MaxPerPeriod:
		v.add("spec.limits.per_period", "must be between 1 and %d", MaxPerPeriod)
	}
	b := l.Budget
	if b == nil {
		return
	}
	if b.Completions < 0 {
		v.add("spec.limits.budget.completions", "must be positive")
	}
	if b.CostPoints < 0 {
		v.add("spec.limits.budget.cost_points", "must be positive")
	}
	if b.Completions == 0 && b.CostPoints == 0 {
		v.add("spec.limits.budget", "set completions, cost_points or both")
	}
}

func (v *validator) checkWindows(s *Spec) {
	for _, w := range []struct {
		path string
		win  *Window
	}{{"spec.visible", s.Visible}, {"spec.active", s.Active}} {
		if w.win != nil && w.win.From != nil && w.win.Until != nil && !w.win.From.Before(*w.win.Until) {
			v.add(w.path+".until", "must be after from")
		}
	}
	if s.Kind == KindWindow && v.required && (s.Active == nil || s.Active.From == nil || s.Active.Until == nil) {
		v.add("spec.active", "a window task needs an active window with from and until")
	}
}

func (v *validator) checkStreak(s *Spec) error {
	st := s.Streak
	if st == nil {
		return nil
	}
	countDaily := s.Kind == KindDaily && s.Metric.Type == MetricCount && len(s.Stages) == 1 && s.Stages[0].Target == 1
	if s.Metric.Type != MetricStreak && !countDaily && (v.required || s.Kind != "") {
		v.add("spec.streak", "streaks need a daily task counting one event (metric count, target 1) or a streak metric")
	}
	if st.MakeupCardsPerMonth < 0 || st.MakeupCardsPerMonth > maxMonthlyCards {
		v.add("spec.streak.makeup_cards_per_month", "must be between 0 and %d", maxMonthlyCards)
	}
	if st.FreezePerMonth < 0 || st.FreezePerMonth > maxMonthlyCards {
		v.add("spec.streak.freeze_per_month", "must be between 0 and %d", maxMonthlyCards)
	}
	if len(st.Rewards) > MaxStreakRules {
		v.add("spec.streak.rewards", "at most %d streak rewards", MaxStreakRules)
	}
	last := 0
	for i, r := range st.Rewards {
		path := fmt.Sprintf("spec.streak.rewards[%d]", i)
		switch {
		case r.Day < 1 || r.Day > MaxStreakDays:
			v.add(path+".day", "must be between 1 and %d", MaxStreakDays)
		case r.Day <= last:
			v.add(path+".day", "days must increase")
		}
		last = max(last, r.Day)
		if err := v.checkRewards(path, r.Rewards, r.Flow); err != nil {
			return err
		}
	}
	if st.Cycle && len(st.Rewards) == 0 {
		v.add("spec.streak.cycle", "cycle needs streak rewards")
	}
	return nil
}

func (v *validator) checkTexts(s *Spec) {
	if len(s.Title) == 0 && v.required {
		v.add("spec.title", "is required in zh-CN or en (or both)")
	}
	v.checkText("spec.title", s.Title, maxTitle)
	v.checkText("spec.description", s.Description, maxDescription)
	if s.Icon != "" {
		u, err := url.Parse(s.Icon)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(s.Icon) > maxIcon {
			v.add("spec.icon", "must be an http(s) URL of at most %d characters", maxIcon)
		}
	}
}

func (v *validator) checkText(path string, texts map[string]string, limit int) {
	for _, lang := range sortedKeys(texts) {
		switch text := texts[lang]; {
		case !slices.Contains(languages, lang):
			v.add(path+"."+lang, "unknown language: zh-CN or en")
		case text == "":
			v.add(path+"."+lang, "must not be empty")
		case utf8.RuneCountInString(text) > limit:
			v.add(path+"."+lang, "must be at most %d characters", limit)
		}
	}
}
