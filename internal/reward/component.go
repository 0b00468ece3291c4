package reward

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// Component is a kind of step a flow may use. Every component also implements TxComponent (its
// effect is a database write, applied in one transaction with its step row) or CallComponent (it
// calls out and may wait for a confirmation).
type Component interface {
	// Name is the component's slug, as flows name it ("grant_points").
	Name() string
	// Validate checks a step's params. A problem error's field paths are relative to the params
	// ("amount", "expiry.days"); the engine prefixes them with the step's path.
	Validate(params json.RawMessage) error
}

// TxComponent is a component whose effect is written inside the step's transaction (sc.Tx). It
// must write only through sc.Tx and key any external uniqueness on sc.Key.
type TxComponent interface {
	Component
	// RunTx applies the step and returns its output (a JSON object, or nil).
	RunTx(ctx context.Context, sc StepContext) (json.RawMessage, error)
}

// batchTxComponent is a TxComponent that can also apply one step of many grants at once, for the
// fast path's batches: same effects, same outputs, in order, as RunTx on each.
type batchTxComponent interface {
	TxComponent
	runTxBatch(ctx context.Context, tx *sqldb.Tx, scs []StepContext) ([]json.RawMessage, error)
}

// CallComponent is a component that calls another system. Run is called outside any transaction
// and may be called again for the same step (after a crash, a timeout, or to poll), always with the
// same sc.Key, which it must send as its idempotency key.
type CallComponent interface {
	Component
	Run(ctx context.Context, sc StepContext) (Result, error)
}

// Confirmer is a CallComponent that accepts confirmation callbacks for a waiting step.
type Confirmer interface {
	CallComponent
	// Confirm checks a callback's signature against the step's params and reads its body: a done
	// result completes the step; an error fails it. A bad signature is a problem Unauthenticated.
	Confirm(ctx context.Context, sc StepContext, signature string, body []byte) (Result, error)
}

// Result is what a CallComponent reports.
type Result struct {
	// Done: the step succeeded, with Output.
	Done   bool
	Output json.RawMessage
	// WaitUntil (when not Done) is when the step stops waiting for its confirmation and fails.
	WaitUntil time.Time
	// RecheckAt (when not Done) is when Run should be called again to poll; zero means WaitUntil.
	RecheckAt time.Time
}

// StepContext is what a component is given to run one step of one grant.
type StepContext struct {
	// Tx is the step's transaction (TxComponent only; nil for CallComponent).
	Tx *sqldb.Tx
	// Grant is the grant being delivered.
	Grant Grant
	// Step is the step's name.
	Step string
	// Params are the step's params from the flow.
	Params json.RawMessage
	// Key is the step's idempotency key, "<grant_id>/<step>" (".../compensate" for a compensation).
	Key string
	// Attempt counts this step's attempts, this one included.
	Attempt int
	// WaitUntil is the timeout of a step already waiting (zero on its first call).
	WaitUntil time.Time
	// Now is the executor's clock reading.
	Now time.Time
}

// Registry holds the components flows may use. Any module registers its own at start-up; the
// Service adds the built-in ones. It is safe for concurrent use.
type Registry struct {
	mu         sync.RWMutex
	components map[string]Component
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{components: map[string]Component{}}
}

// Register adds a component. Its name must be a slug not yet taken, and it must implement
// TxComponent or CallComponent.
func (r *Registry) Register(c Component) error {
	name := c.Name()
	if !stepNamePattern.MatchString(name) {
		return fmt.Errorf("reward: component name %q must match %s", name, stepNamePattern)
	}
	_, isTx := c.(TxComponent)
	_, isCall := c.(CallComponent)
	if isTx == isCall {
		return fmt.Errorf("reward: component %q must implement exactly one of RunTx and Run", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, taken := r.components[name]; taken {
		return fmt.Errorf("reward: component %q is already registered", name)
	}
	r.components[name] = c
	return nil
}

// Get returns the component of that name.
func (r *Registry) Get(name string) (Component, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.components[name]
	return c, ok
}

// Names lists the registered components, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.components))
	for n := range r.components {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// has reports whether name is registered.
func (r *Registry) has(name string) bool {
	_, ok := r.Get(name)
	return ok
}

// validateParams runs a component's Validate and files its problems under path.
func validateParams(fs *problem.Fields, c Component, path string, params json.RawMessage) {
	err := c.Validate(params)
	if err == nil {
		return
	}
	e, ok := problem.As(err)
	if !ok || len(e.Fields) == 0 {
		msg := err.Error()
		if ok {
			msg = e.Detail
		}
		fs.Add(path, "%s", msg)
		return
	}
	for _, f := range e.Fields {
		p := path
		switch {
		case f.Path == "":
		case strings.HasPrefix(f.Path, "["):
			p += f.Path
		default:
			p += "." + f.Path
		}
		fs.Add(p, "%s", f.Message)
	}
}

// decodeParams decodes a component's params into dst, refusing unknown fields; problems are
// recorded with paths relative to the params. Empty params decode as {}.
func decodeParams(fs *problem.Fields, params json.RawMessage, dst any) bool {
	if len(params) == 0 || string(params) == "null" {
		params = json.RawMessage(`{}`)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(params, &raw); err != nil {
		fs.Add("", "must be a JSON object")
		return false
	}
	known := jsonFields(dst)
	ok := true
	for _, k := range sortedKeys(raw) {
		if !known[k] {
			fs.Add(k, "unknown field")
			ok = false
		}
	}
	if !ok {
		return false
	}
	if err := json.Unmarshal(params, dst); err != nil {
		var te *json.UnmarshalTypeError
		if asTypeError(err, &te) && te.Field != "" {
			fs.Add(te.Field, "must be %s", jsonKind(te.Type.Kind().String()))
		} else {
			fs.Add("", "%s", err.Error())
		}
		return false
	}
	return true
}
