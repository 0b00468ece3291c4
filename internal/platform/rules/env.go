// Package rules compiles and evaluates the CEL expressions that perk's
// configuration carries: audiences, event filters, thresholds, coupon extra
// conditions, flow step conditions and idempotency key expressions.
//
// Each use declares an Env with its variables. Expressions are parsed,
// type-checked against that Env and cost-estimated by Compile, which returns
// an immutable Program that is safe for concurrent evaluation. A Cache keeps
// one compiled Program per (resource, version, expression).
package rules

import (
	"fmt"
	"regexp"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
)

// Default limits, used for every Limits field left at zero.
const (
	// DefaultCostLimit is the highest worst-case estimated cost Compile
	// accepts. It equals DefaultRuntimeCostLimit, so an accepted expression
	// never hits the runtime limit on input within DefaultInputSize.
	DefaultCostLimit uint64 = 10_000_000
	// DefaultRuntimeCostLimit is the cost after which an evaluation stops.
	DefaultRuntimeCostLimit uint64 = 10_000_000
	// DefaultInputSize is the length assumed for every string, bytes, list
	// and map in the input when estimating cost.
	DefaultInputSize uint64 = 1_000
	// DefaultMaxExprLength is the longest expression, in code points, that
	// Compile accepts.
	DefaultMaxExprLength = 10_000
)

// interruptEvery is how many comprehension iterations run between two checks
// of the evaluation's context.
const interruptEvery = 100

// Option configures an Env: a Var or a Limits.
type Option interface {
	apply(*Env) error
}

// Var declares a variable that expressions in an Env may reference.
type Var struct {
	// Name is the identifier used in expressions, e.g. "event".
	Name string
	// Type is the variable's static type; the zero Type means DynType.
	Type Type
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (v Var) apply(e *Env) error {
	if !identifier.MatchString(v.Name) {
		return fmt.Errorf("rules: env %s: invalid variable name %q", e.name, v.Name)
	}
	for _, have := range e.vars {
		if have.Name == v.Name {
			return fmt.Errorf("rules: env %s: variable %q declared twice", e.name, v.Name)
		}
	}
	e.vars = append(e.vars, v)
	return nil
}

// Limits bounds the cost of the expressions an Env compiles and evaluates.
// A zero field takes its default.
type Limits struct {
	// Cost is the highest worst-case estimated cost Compile accepts.
	Cost uint64
	// RuntimeCost is the actual cost after which Eval stops with ErrCostLimit.
	RuntimeCost uint64
	// InputSize is the length assumed, when estimating cost, for every
	// string, bytes, list and map reachable from a variable.
	InputSize uint64
	// MaxExprLength is the longest expression, in code points, Compile accepts.
	MaxExprLength int
}

func (l Limits) apply(e *Env) error {
	e.limits = l.withDefaults()
	return nil
}

func (l Limits) withDefaults() Limits {
	if l.Cost == 0 {
		l.Cost = DefaultCostLimit
	}
	if l.RuntimeCost == 0 {
		l.RuntimeCost = DefaultRuntimeCostLimit
	}
	if l.InputSize == 0 {
		l.InputSize = DefaultInputSize
	}
	if l.MaxExprLength == 0 {
		l.MaxExprLength = DefaultMaxExprLength
	}
	return l
}

// Env is a named CEL environment: the variables an expression may use and
// the limits it must respect. An Env is immutable and safe for concurrent use.
type Env struct {
	name   string
	vars   []Var
	limits Limits
	cel    *cel.Env
}

// NewEnv builds the environment called name (e.g. "task.trigger") from the
// given variables and, optionally, one Limits.
func NewEnv(name string, opts ...Option) (*Env, error) {
	e := &Env{name: name, limits: Limits{}.withDefaults()}
	for _, o := range opts {
		if err := o.apply(e); err != nil {
			return nil, err
		}
	}
	ce, err := cel.NewEnv(e.celOptions()...)
	if err != nil {
		return nil, fmt.Errorf("rules: env %s: %w", name, err)
	}
	e.cel = ce
	return e, nil
}

// MustNewEnv is NewEnv that panics on error, for package-level environments.
func MustNewEnv(name string, opts ...Option) *Env {
	e, err := NewEnv(name, opts...)
	if err != nil {
		panic(err)
	}
	return e
}

func (e *Env) celOptions() []cel.EnvOption {
	opts := []cel.EnvOption{
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
		cel.ParserExpressionSizeLimit(e.limits.MaxExprLength),
		ext.Strings(),
		ext.Math(),
		ext.Lists(),
		ext.Sets(),
		ext.Encoders(ext.EncodersVersion(0)), // base64 only: json/yaml have unbounded cost
		ext.Bindings(),
		ext.TwoVarComprehensions(),
	}
	for _, v := range e.vars {
		opts = append(opts, cel.Variable(v.Name, v.Type.cel()))
	}
	return opts
}

// Name returns the environment's name.
func (e *Env) Name() string { return e.name }

// Vars returns the declared variables, in declaration order.
func (e *Env) Vars() []Var { return append([]Var(nil), e.vars...) }

// Limits returns the environment's limits, defaults filled in.
func (e *Env) Limits() Limits { return e.limits }
