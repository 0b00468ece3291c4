package reward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/rules"
)

// Flow limits.
const (
	MaxSteps           = 32
	MaxFlowAttempts    = 100
	MaxBackoffSeconds  = 7 * 24 * 3600
	maxInlineRewards   = 20
	defaultMaxAttempts = 8
)

// FlowSpec is the spec of a flow config resource: steps run in order, or as a DAG when any step
// names the steps it runs after.
type FlowSpec struct {
	Steps []StepSpec `json:"steps"`
	// MaxAttempts is how many failed attempts make a grant dead (default 8).
	MaxAttempts int `json:"max_attempts,omitempty"`
}

// StepSpec is one step of a flow.
type StepSpec struct {
	// Name is unique in the flow: a slug; it is part of the step's idempotency key.
	Name string `json:"name"`
	// Component names a registered component.
	Component string `json:"component"`
	// Params are the component's typed params.
	Params json.RawMessage `json:"params,omitempty"`
	// When is an optional CEL condition over params (the grant's params) and grant; false skips the step.
	When string `json:"when,omitempty"`
	// After names the steps this one waits for. When no step of a flow has After, each step runs
	// after the one before it.
	After []string `json:"after,omitempty"`
	// Retry overrides the grant's retry policy for this step.
	Retry *RetryPolicy `json:"retry,omitempty"`
	// Compensate runs, once, when the grant goes dead after this step succeeded.
	Compensate *Compensation `json:"compensate,omitempty"`
}

// RetryPolicy bounds a step's attempts and sets its backoff base.
type RetryPolicy struct {
	// MaxAttempts: after this many failed attempts of the step, the grant is dead.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// BackoffSeconds is the first retry's delay; it doubles per attempt, with jitter.
	BackoffSeconds int `json:"backoff_seconds,omitempty"`
}

// Compensation undoes a step, in the transaction that makes the grant dead. Its component must
// write to the database (a TxComponent).
type Compensation struct {
	Component string          `json:"component"`
	Params    json.RawMessage `json:"params,omitempty"`
}

// whenEnv is the CEL environment of step conditions.
var whenEnv = rules.MustNewEnv("reward.flow.when",
	rules.Var{Name: "params", Type: rules.MapType},
	rules.Var{Name: "grant", Type: rules.MapType})

// flow is a validated flow, ready to run.
type flow struct {
	ref   FlowRef
	spec  FlowSpec
	comps []Component
	// comp is the compensation component of each step (nil for none).
	comp  []TxComponent
	when  []*rules.Program
	deps  [][]int
	order []int
	index map[string]int
}

func (f *flow) maxAttempts() int {
	if f.spec.MaxAttempts > 0 {
		return f.spec.MaxAttempts
	}
	return defaultMaxAttempts
}

// parseFlow validates a flow spec against the registry and compiles it. Problems are filed under
// root ("spec"). draft tolerates a flow without steps.
func parseFlow(raw json.RawMessage, reg *Registry, root string, draft bool) (*flow, error) {
	var fs problem.Fields
	var top struct {
		Steps       []json.RawMessage `json:"steps"`
		MaxAttempts int               `json:"max_attempts,omitempty"`
	}
	if !decodeAt(&fs, root, raw, &top) {
		return nil, fs.Err("invalid flow")
	}
	switch {
	case len(top.Steps) == 0 && !draft:
		fs.Add(root+".steps", "at least one step is required")
	case len(top.Steps) > MaxSteps:
		fs.Add(root+".steps", "at most %d steps", MaxSteps)
	}
	if top.MaxAttempts < 0 || top.MaxAttempts > MaxFlowAttempts {
		fs.Add(root+".max_attempts", "must be between 1 and %d", MaxFlowAttempts)
	}
	f := &flow{spec: FlowSpec{MaxAttempts: top.MaxAttempts}, index: map[string]int{}}
	for i, rawStep := range top.Steps {
		f.addStep(&fs, reg, fmt.Sprintf("%s.steps[%d]", root, i), rawStep)
	}
	if len(fs) == 0 {
		f.link(&fs, root)
	}
	if err := fs.Err("invalid flow"); err != nil {
		return nil, err
	}
	return f, nil
}

// addStep validates one step and appends it (placeholders keep indexes aligned on errors).
func (f *flow) addStep(fs *problem.Fields, reg *Registry, path string, raw json.RawMessage) {
	var st StepSpec
	idx := len(f.spec.Steps)
	f.spec.Steps = append(f.spec.Steps, st)
	f.comps = append(f.comps, nil)
	f.comp = append(f.comp, nil)
	f.when = append(f.when, nil)
	if !decodeAt(fs, path, raw, &st) {
		return
	}
	switch _, dup := f.index[st.Name]; {
	case !stepNamePattern.MatchString(st.Name):
		fs.Add(path+".name", "must be a slug: a-z first, then up to 47 of a-z 0-9 _ -")
	case dup:
		fs.Add(path+".name", "duplicate step name %q", st.Name)
	default:
		f.index[st.Name] = idx
	}
	if params, ok := compactObject(st.Params); ok {
		st.Params = params
	} else {
		fs.Add(path+".params", "must be a JSON object")
	}
	f.comps[idx] = checkComponent(fs, reg, path, st.Component, st.Params)
	if st.When != "" {
		prog, err := whenEnv.Compile(st.When, rules.BoolType)
		if err != nil {
			fs.Add(path+".when", "%s", err.Error())
		}
		f.when[idx] = prog
	}
	checkRetry(fs, path+".retry", st.Retry)
	f.comp[idx] = checkCompensation(fs, reg, path+".compensate", st.Compensate)
	f.spec.Steps[idx] = st
}

func checkComponent(fs *problem.Fields, reg *Registry, path, name string, params json.RawMessage) Component {
	if name == "" {
		fs.Add(path+".component", "is required")
		return nil
	}
	c, ok := reg.Get(name)
	if !ok {
		fs.Add(path+".component", "unknown component %q (known: %s)", name, strings.Join(reg.Names(), ", "))
		return nil
	}
	if params != nil {
		validateParams(fs, c, path+".params", params)
	}
	return c
}

func checkRetry(fs *problem.Fields, path string, r *RetryPolicy) {
	if r == nil {
		return
	}
	if r.MaxAttempts < 0 || r.MaxAttempts > MaxFlowAttempts {
		fs.Add(path+".max_attempts", "must be between 1 and %d", MaxFlowAttempts)
	}
	if r.BackoffSeconds < 0 || r.BackoffSeconds > MaxBackoffSeconds {
		fs.Add(path+".backoff_seconds", "must be between 1 and %d", MaxBackoffSeconds)
	}
}

func checkCompensation(fs *problem.Fields, reg *Registry, path string, c *Compensation) TxComponent {
	if c == nil {
		return nil
	}
	params, ok := compactObject(c.Params)
	if !ok {
		fs.Add(path+".params", "must be a JSON object")
		return nil
	}
	c.Params = params
	comp := checkComponent(fs, reg, path, c.Component, params)
	if comp == nil {
		return nil
	}
	txc, ok := comp.(TxComponent)
	if !ok {
		fs.Add(path+".component", "%q calls out; a compensation must write to the database", c.Component)
		return nil
	}
	return txc
}

// link resolves After into dependencies (or chains the steps in order) and sorts them, refusing
// unknown names and cycles.
func (f *flow) link(fs *problem.Fields, root string) {
	n := len(f.spec.Steps)
	f.deps = make([][]int, n)
	dag := slices.ContainsFunc(f.spec.Steps, func(s StepSpec) bool { return len(s.After) > 0 })
	for i, st := range f.spec.Steps {
		if !dag && i > 0 {
			f.deps[i] = []int{i - 1}
		}
		for j, name := range st.After {
			d, ok := f.index[name]
			switch {
			case !ok:
				fs.Add(fmt.Sprintf("%s.steps[%d].after[%d]", root, i, j), "unknown step %q", name)
			case d == i:
				fs.Add(fmt.Sprintf("%s.steps[%d].after[%d]", root, i, j), "a step cannot run after itself")
			default:
				f.deps[i] = append(f.deps[i], d)
			}
		}
	}
	if len(*fs) > 0 {
		return
	}
	f.order = topoOrder(f.deps)
	if len(f.order) < n {
		cyc := f.cycle()
		fs.Add(fmt.Sprintf("%s.steps[%d].after", root, cyc[0]), "the steps' after lists form a cycle: %s", f.names(cyc))
	}
}

// topoOrder sorts steps so each comes after its dependencies, keeping declaration order among
// steps that are free at the same time. Steps on a cycle are left out.
func topoOrder(deps [][]int) []int {
	n := len(deps)
	indeg := make([]int, n)
	users := make([][]int, n)
	for i, ds := range deps {
		indeg[i] = len(ds)
		for _, d := range ds {
			users[d] = append(users[d], i)
		}
	}
	var order []int
	placed := make([]bool, n)
	for len(order) < n {
		next := -1
		for i := range n {
			if !placed[i] && indeg[i] == 0 {
				next = i
				break
			}
		}
		if next < 0 {
			break
		}
		placed[next] = true
		order = append(order, next)
		for _, u := range users[next] {
			indeg[u]--
		}
	}
	return order
}

// cycle returns the steps of one cycle, first step repeated at the end.
func (f *flow) cycle() []int {
	state := make([]int, len(f.deps)) // 0 new, 1 on stack, 2 done
	var stack []int
	var found []int
	var visit func(i int) bool
	visit = func(i int) bool {
		state[i] = 1
		stack = append(stack, i)
		for _, d := range f.deps[i] {
			if state[d] == 1 {
				at := slices.Index(stack, d)
				found = append(slices.Clone(stack[at:]), d)
				return true
			}
			if state[d] == 0 && visit(d) {
				return true
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = 2
		return false
	}
	for i := range f.deps {
		if state[i] == 0 && visit(i) {
			break
		}
	}
	slices.Reverse(found)
	return found
}

func (f *flow) names(steps []int) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = f.spec.Steps[s].Name
	}
	return strings.Join(parts, " → ")
}

// normalised returns the flow's spec as stored: compact, defaults left out.
func (f *flow) normalised() json.RawMessage { return mustJSON(f.spec) }

// decodeAt decodes raw into dst refusing unknown fields, filing problems under path.
func decodeAt(fs *problem.Fields, path string, raw json.RawMessage, dst any) bool {
	var sub problem.Fields
	ok := decodeParams(&sub, raw, dst)
	for _, f := range sub {
		p := path
		if f.Path != "" {
			p += "." + f.Path
		}
		fs.Add(p, "%s", f.Message)
	}
	return ok
}

// RegisterKinds registers the config kind "flow" on a catalog registry, validated with the
// components of reg: publishing a flow with an unknown component, bad params, a bad condition, a
// cycle or a duplicate step name is refused with field paths like spec.steps[1].params.amount.
func RegisterKinds(catalogs *catalog.Registry, reg *Registry) error {
	return catalogs.Register(catalog.Kind{Name: KindFlow, Validate: func(_ context.Context, in catalog.ValidateInput) (json.RawMessage, error) {
		f, err := parseFlow(in.Spec, reg, "spec", in.Draft())
		if err != nil {
			return nil, err
		}
		return f.normalised(), nil
	}})
}

// compileRewards turns an inline reward list into a flow spec, one step per reward, filing
// problems under root ("rewards").
func compileRewards(fs *problem.Fields, root string, rewards []Reward, coupons bool) FlowSpec {
	if len(rewards) == 0 {
		fs.Add(root, "at least one reward is required")
	}
	if len(rewards) > maxInlineRewards {
		fs.Add(root, "at most %d rewards", maxInlineRewards)
	}
	var spec FlowSpec
	used := map[string]int{}
	for i, r := range rewards {
		path := fmt.Sprintf("%s[%d]", root, i)
		step, ok := rewardStep(fs, path, r, coupons)
		if !ok {
			continue
		}
		used[step.Name]++
		if n := used[step.Name]; n > 1 {
			step.Name = fmt.Sprintf("%s_%d", step.Name, n)
		}
		spec.Steps = append(spec.Steps, step)
	}
	return spec
}

func rewardStep(fs *problem.Fields, path string, r Reward, coupons bool) (StepSpec, bool) {
	before := len(*fs)
	if len(r.Reason) > 200 {
		fs.Add(path+".reason", "must be at most 200 characters")
	}
	switch r.Type {
	case RewardPoints, RewardGrowth:
		checkAmount(fs, path+".amount", r.Amount)
		if r.Template != "" {
			fs.Add(path+".template", "only coupon rewards have a template")
		}
		if r.Type == RewardGrowth && r.Expiry != nil {
			fs.Add(path+".expiry", "growth value does not expire")
		}
		checkExpiry(fs, path+".expiry", r.Expiry)
		comp := ComponentGrantPoints
		if r.Type == RewardGrowth {
			comp = ComponentGrantGrowth
		}
		params := mustJSON(amountParams{Amount: r.Amount, Expiry: r.Expiry, Reason: r.Reason})
		return StepSpec{Name: r.Type, Component: comp, Params: params}, len(*fs) == before
	case RewardCoupon:
		if !coupons {
			fs.Add(path+".type", "coupon rewards need the coupon module, which is not installed")
		}
		if !flowKeyPattern.MatchString(r.Template) {
			fs.Add(path+".template", "must be a coupon template key (a slug)")
		}
		if r.Amount != 0 || r.Expiry != nil {
			fs.Add(path, "a coupon reward has a template only")
		}
		params := mustJSON(couponParams{Template: r.Template})
		return StepSpec{Name: r.Type, Component: ComponentIssueCoupon, Params: params}, len(*fs) == before
	case "":
		fs.Add(path+".type", "is required: points, growth or coupon")
	default:
		fs.Add(path+".type", "unknown reward type %q: points, growth or coupon", r.Type)
	}
	return StepSpec{}, false
}

func checkAmount(fs *problem.Fields, path string, amount int64) {
	switch {
	case amount <= 0:
		fs.Add(path, "must be positive")
	case amount > ledger.MaxAmount:
		fs.Add(path, "must be at most %d", int64(ledger.MaxAmount))
	}
}

func checkExpiry(fs *problem.Fields, path string, e *ledger.Expiry) {
	if e == nil {
		return
	}
	switch e.Policy {
	case "", ledger.ExpireNever, ledger.ExpireEndOfMonth, ledger.ExpireEndOfYear:
		if e.Days != 0 || !e.At.IsZero() {
			fs.Add(path, "policy %q takes neither days nor at", e.Policy)
		}
	case ledger.ExpireAfterDays:
		if e.Days < 1 || e.Days > 36500 {
			fs.Add(path+".days", "must be between 1 and 36500")
		}
	case ledger.ExpireAt:
		if e.At.IsZero() {
			fs.Add(path+".at", "is required with policy fixed (RFC 3339)")
		}
	default:
		fs.Add(path+".policy", "must be one of never, fixed, days, end_of_month, end_of_year")
	}
}

// FlowRef names one published version of a flow.
type FlowRef struct {
	// ID is the config resource's id.
	ID      string
	Key     string
	Version int
}

// FlowSource finds published flows.
type FlowSource interface {
	// Live returns the version of flow key published now for the tenant (its own flow, else the
	// platform's) with its spec. A flow that is not published is a problem NotFound.
	Live(ctx context.Context, tenantID, key string) (FlowRef, json.RawMessage, error)
	// Spec returns the spec of one published version.
	Spec(ctx context.Context, tenantID string, ref FlowRef) (json.RawMessage, error)
}

// CatalogFlows reads flows from the config center: the live version from the node's Snapshot when
// one is given (else from the database), pinned versions from the Service.
type CatalogFlows struct {
	Catalog  *catalog.Service
	Snapshot *catalog.Snapshot
}

// Live implements FlowSource.
func (c CatalogFlows) Live(ctx context.Context, tenantID, key string) (FlowRef, json.RawMessage, error) {
	for _, t := range []string{tenantID, catalog.Platform} {
		if c.Snapshot != nil {
			if p, ok := c.Snapshot.Get(t, KindFlow, key); ok {
				return FlowRef{ID: p.ResourceID, Key: p.Key, Version: p.Version}, p.Spec, nil
			}
			continue
		}
		r, err := c.Catalog.Get(ctx, catalog.GetParams{TenantID: t, Kind: KindFlow, Key: key})
		if problem.Is(err, problem.KindNotFound) || (err == nil && (r.State != catalog.StatePublished || r.PublishedVersion == 0)) {
			continue
		}
		if err != nil {
			return FlowRef{}, nil, err
		}
		v, err := c.Catalog.Version(ctx, catalog.VersionParams{TenantID: t, ID: r.ID, Version: r.PublishedVersion})
		if err != nil {
			return FlowRef{}, nil, err
		}
		return FlowRef{ID: r.ID, Key: r.Key, Version: v.Version}, v.Spec, nil
	}
	return FlowRef{}, nil, problem.NotFound("no published flow %q", key).WithCode("flow-not-found")
}

// Spec implements FlowSource.
func (c CatalogFlows) Spec(ctx context.Context, tenantID string, ref FlowRef) (json.RawMessage, error) {
	var err error
	for _, t := range []string{tenantID, catalog.Platform} {
		var v catalog.Version
		v, err = c.Catalog.Version(ctx, catalog.VersionParams{TenantID: t, ID: ref.ID, Version: ref.Version})
		if err == nil {
			return v.Spec, nil
		}
		if !problem.Is(err, problem.KindNotFound) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("reward: flow %s version %d: %w", ref.Key, ref.Version, errors.Join(err, errFlowGone))
}

var errFlowGone = errors.New("the pinned flow version is gone")
