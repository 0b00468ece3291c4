package rules

import (
	"context"
	"errors"
	"fmt"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"
)

// Program is a compiled expression. It is immutable and safe for concurrent
// evaluation.
type Program struct {
	env  *Env
	expr string
	typ  Type
	cost uint64
	prg  cel.Program
}

// Expr returns the source expression.
func (p *Program) Expr() string { return p.expr }

// Type returns the expression's static result type.
func (p *Program) Type() Type { return p.typ }

// EstimatedCost returns the worst-case cost estimated at compile time.
func (p *Program) EstimatedCost() uint64 { return p.cost }

// Eval evaluates the program with vars bound to the Env's variables and
// returns the result as a plain Go value: bool, int64, uint64, float64,
// string, []byte, time.Time, time.Duration, nil, []any or map[string]any
// (map[any]any when a key is not a string). Errors are *EvalError.
//
// Values decoded by encoding/json work as they are: numbers arrive as
// float64 and compare with integer literals (event.amount >= 5000); use
// DecodeJSON to get int64 for integral numbers when expressions do
// arithmetic with integers.
func (p *Program) Eval(ctx context.Context, vars map[string]any) (any, error) {
	val, err := p.eval(ctx, vars)
	if err != nil {
		return nil, err
	}
	out, err := native(val)
	if err != nil {
		return nil, &EvalError{Expr: p.expr, Err: err}
	}
	return out, nil
}

// EvalBool evaluates a condition. A result that is not a bool is an
// *EvalError.
func (p *Program) EvalBool(ctx context.Context, vars map[string]any) (bool, error) {
	val, err := p.eval(ctx, vars)
	if err != nil {
		return false, err
	}
	b, ok := val.(types.Bool)
	if !ok {
		return false, &EvalError{Expr: p.expr, Err: fmt.Errorf("result has type %s, want bool", val.Type().TypeName())}
	}
	return bool(b), nil
}

func (p *Program) eval(ctx context.Context, vars map[string]any) (ref.Val, error) {
	if err := ctx.Err(); err != nil {
		return nil, &EvalError{Expr: p.expr, Err: err}
	}
	if vars == nil {
		vars = map[string]any{}
	}
	var (
		val ref.Val
		err error
	)
	if ctx.Done() == nil {
		val, _, err = p.prg.Eval(vars)
	} else {
		val, _, err = p.prg.ContextEval(ctx, vars)
	}
	if err != nil {
		return nil, &EvalError{Expr: p.expr, Err: p.cause(ctx, err)}
	}
	return val, nil
}

func (p *Program) cause(ctx context.Context, err error) error {
	var cancelled interpreter.EvalCancelledError
	switch {
	case errors.As(err, &cancelled) && cancelled.Cause == interpreter.CostLimitExceeded:
		return fmt.Errorf("%w (runtime limit %d)", ErrCostLimit, p.env.limits.RuntimeCost)
	case errors.Is(err, interpreter.InterruptError{}) && ctx.Err() != nil:
		return ctx.Err()
	}
	return err
}

// native converts a CEL value to a plain Go value.
func native(v ref.Val) (any, error) {
	switch v := v.(type) {
	case types.Null:
		return nil, nil
	case traits.Mapper:
		return nativeMap(v)
	case traits.Lister:
		return nativeList(v)
	case types.Bool, types.Int, types.Uint, types.Double, types.String, types.Bytes,
		types.Timestamp, types.Duration:
		return v.Value(), nil
	}
	return nil, fmt.Errorf("result of type %s has no Go equivalent", v.Type().TypeName())
}

func nativeList(l traits.Lister) ([]any, error) {
	out := make([]any, 0, int(l.Size().(types.Int)))
	for it := l.Iterator(); it.HasNext() == types.True; {
		elem, err := native(it.Next())
		if err != nil {
			return nil, err
		}
		out = append(out, elem)
	}
	return out, nil
}

func nativeMap(m traits.Mapper) (any, error) {
	keys := map[any]any{}
	allStrings := true
	for it := m.Iterator(); it.HasNext() == types.True; {
		k := it.Next()
		kv, err := native(k)
		if err != nil {
			return nil, err
		}
		vv, err := native(m.Get(k))
		if err != nil {
			return nil, err
		}
		if _, ok := kv.(string); !ok {
			allStrings = false
		}
		keys[kv] = vv
	}
	if !allStrings {
		return keys, nil
	}
	out := make(map[string]any, len(keys))
	for k, v := range keys {
		out[k.(string)] = v
	}
	return out, nil
}
