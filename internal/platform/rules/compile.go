package rules

import (
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
)

// Compile parses and type-checks expr in the environment, checks that its
// result can be used as want (use DynType to accept any result; a result
// typed dyn is accepted for any want and checked at run time) and that its
// worst-case estimated cost is within the Env's limit. Errors are
// *CompileError.
func (e *Env) Compile(expr string, want Type) (*Program, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, e.compileError(expr, nil, Issue{Message: "expression is empty"})
	}
	ast, iss := e.cel.Compile(expr)
	if iss.Err() != nil {
		return nil, e.compileError(expr, nil, issues(iss)...)
	}
	if got := ast.OutputType(); !accepts(want.cel(), got) {
		line, col := rootLocation(ast)
		msg := fmt.Sprintf("expression has type %s, want %s", got, want)
		return nil, e.compileError(expr, nil, Issue{Line: line, Column: col, Message: msg})
	}
	est, err := e.cel.EstimateCost(ast, sizeEstimator{size: e.limits.InputSize})
	if err != nil {
		return nil, e.compileError(expr, nil, Issue{Message: "estimating cost: " + err.Error()})
	}
	if est.Max > e.limits.Cost {
		msg := fmt.Sprintf("estimated cost %s exceeds the limit %d", costString(est.Max), e.limits.Cost)
		return nil, e.compileError(expr, ErrCostLimit, Issue{Message: msg})
	}
	prg, err := e.cel.Program(ast,
		cel.EvalOptions(cel.OptOptimize),
		cel.CostLimit(e.limits.RuntimeCost),
		cel.InterruptCheckFrequency(interruptEvery),
	)
	if err != nil {
		return nil, e.compileError(expr, nil, Issue{Message: err.Error()})
	}
	return &Program{env: e, expr: expr, typ: Type{ast.OutputType()}, cost: est.Max, prg: prg}, nil
}

func (e *Env) compileError(expr string, cause error, is ...Issue) *CompileError {
	return &CompileError{Env: e.name, Expr: expr, Issues: is, cause: cause}
}

func issues(iss *cel.Issues) []Issue {
	out := make([]Issue, 0, len(iss.Errors()))
	for _, err := range iss.Errors() {
		line, col := err.Location.Line(), err.Location.Column()+1
		if line < 1 {
			line, col = 0, 0
		}
		out = append(out, Issue{Line: line, Column: col, Message: err.Message})
	}
	return out
}

// rootLocation is where the expression's outermost node starts.
func rootLocation(ast *cel.Ast) (line, col int) {
	native := ast.NativeRep()
	loc := native.SourceInfo().GetStartLocation(native.Expr().ID())
	if loc.Line() < 1 {
		return 1, 1
	}
	return loc.Line(), loc.Column() + 1
}

func costString(c uint64) string {
	if c == ^uint64(0) {
		return "unbounded"
	}
	return fmt.Sprint(c)
}

// sizeEstimator assumes every string, bytes, list and map reachable from a
// declared variable holds at most size elements (or bytes, or code points).
type sizeEstimator struct {
	size uint64
}

// EstimateSize implements cost.Estimator.
func (s sizeEstimator) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if len(n.Path()) == 0 {
		return nil
	}
	return &cost.SizeEstimate{Min: 0, Max: s.size}
}

// EstimateCallCost implements cost.Estimator; the standard call costs apply.
func (s sizeEstimator) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}
