package rules

import (
	"errors"
	"fmt"
	"strings"
)

// ErrCostLimit is matched (errors.Is) by a CompileError whose estimated cost
// is over the Env's limit and by an EvalError whose evaluation was stopped by
// the runtime cost limit.
var ErrCostLimit = errors.New("cost limit exceeded")

// Issue is one problem found in an expression. Line and Column are 1-based
// and count code points; both are 0 when the issue concerns the whole
// expression (an empty expression, an estimated cost over the limit).
type Issue struct {
	Line    int
	Column  int
	Message string
}

// String formats the issue as "line:column: message".
func (i Issue) String() string {
	if i.Line == 0 {
		return i.Message
	}
	return fmt.Sprintf("%d:%d: %s", i.Line, i.Column, i.Message)
}

// CompileError reports why an expression was refused: syntax errors, type
// errors, a result type that does not fit, or an estimated cost over the
// limit.
type CompileError struct {
	// Env is the name of the environment the expression was compiled in.
	Env string
	// Expr is the expression as given.
	Expr string
	// Issues lists every problem found, in source order.
	Issues []Issue

	cause error
}

// Error joins the issues, e.g. "1:9: undeclared reference to 'evnt'".
func (e *CompileError) Error() string {
	parts := make([]string, len(e.Issues))
	for i, is := range e.Issues {
		parts[i] = is.String()
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns ErrCostLimit when the expression was refused for its cost.
func (e *CompileError) Unwrap() error { return e.cause }

// EvalError reports a failed evaluation: a missing key or variable, a type
// mismatch at run time, the runtime cost limit, or a cancelled context. Err
// wraps ErrCostLimit, context.Canceled or context.DeadlineExceeded when one
// of those stopped the evaluation.
type EvalError struct {
	// Expr is the expression that was evaluated.
	Expr string
	// Err is the cause.
	Err error
}

// Error reads "eval <expr>: <cause>".
func (e *EvalError) Error() string {
	return fmt.Sprintf("eval %q: %v", e.Expr, e.Err)
}

// Unwrap returns the cause.
func (e *EvalError) Unwrap() error { return e.Err }
