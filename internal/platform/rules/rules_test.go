package rules_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/rules"
)

type testBundle struct {
	env *rules.Env
	ctx context.Context
}

func setup(t *testing.T, opts ...rules.Option) testBundle {
	t.Helper()
	vars := []rules.Option{
		rules.Var{Name: "event", Type: rules.MapType},
		rules.Var{Name: "user", Type: rules.MapType},
		rules.Var{Name: "now", Type: rules.TimestampType},
		rules.Var{Name: "tags", Type: rules.ListOf(rules.StringType)},
	}
	env, err := rules.NewEnv("test", append(vars, opts...)...)
	require.NoError(t, err)
	return testBundle{env: env, ctx: context.Background()}
}

// compileErr compiles expr, requires a *CompileError and returns it.
func (b testBundle) compileErr(t *testing.T, expr string, want rules.Type) *rules.CompileError {
	t.Helper()
	_, err := b.env.Compile(expr, want)
	var ce *rules.CompileError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, expr, ce.Expr)
	require.Equal(t, "test", ce.Env)
	require.NotEmpty(t, ce.Issues)
	return ce
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(s), &m))
	return m
}

func TestNewEnvRejectsBadVars(t *testing.T) {
	t.Parallel()
	_, err := rules.NewEnv("x", rules.Var{Name: "event"}, rules.Var{Name: "event"})
	require.ErrorContains(t, err, `variable "event" declared twice`)
	_, err = rules.NewEnv("x", rules.Var{Name: "not-an-ident"})
	require.ErrorContains(t, err, "invalid variable name")
	require.Panics(t, func() { rules.MustNewEnv("x", rules.Var{Name: ""}) })
}

func TestEnvReportsDeclarations(t *testing.T) {
	t.Parallel()
	b := setup(t, rules.Limits{Cost: 42})
	require.Equal(t, "test", b.env.Name())
	require.Len(t, b.env.Vars(), 4)
	require.Equal(t, "map(string, dyn)", b.env.Vars()[0].Type.String())
	require.Equal(t, "list(string)", b.env.Vars()[3].Type.String())
	lim := b.env.Limits()
	require.Equal(t, uint64(42), lim.Cost)
	require.Equal(t, rules.DefaultRuntimeCostLimit, lim.RuntimeCost)
	require.Equal(t, rules.DefaultInputSize, lim.InputSize)
}

func TestCompileDeclaredVariables(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, expr := range []string{
		`event.type == "order.paid"`,
		`user.level >= 3 && "vip" in tags`,
		`now > timestamp("2024-01-01T00:00:00Z")`,
		`has(event.data) && event.data.sku.startsWith("A")`,
		`event.?data.amount.orValue(0) > 10`,
		`event.email.lowerAscii().endsWith("@example.com")`,
		`math.greatest([1, 2, 3]) == 3`,
		`sets.contains(tags, ["a"])`,
		`cel.bind(a, event.amount, a > 1 && a < 10)`,
	} {
		p, err := b.env.Compile(expr, rules.BoolType)
		require.NoError(t, err, expr)
		require.Equal(t, expr, p.Expr())
	}
}

func TestCompileUndeclaredVariable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ce := b.compileErr(t, `event.a == 1 && evnt.type == "x"`, rules.BoolType)
	require.Len(t, ce.Issues, 1)
	require.Equal(t, 1, ce.Issues[0].Line)
	require.Equal(t, 17, ce.Issues[0].Column)
	require.Contains(t, ce.Issues[0].Message, "undeclared reference to 'evnt'")
	require.Regexp(t, `^1:17: undeclared reference to 'evnt'`, ce.Error())
}

func TestCompileErrorPositionsMultiLine(t *testing.T) {
	t.Parallel()
	b := setup(t)
	expr := "event.type == \"a\" &&\n  user.age > 3 &&\n\t\"x\" + 1 == 2"
	ce := b.compileErr(t, expr, rules.BoolType)
	require.Len(t, ce.Issues, 1)
	require.Equal(t, rules.Issue{Line: 3, Column: 6, Message: "found no matching overload for '_+_' applied to '(string, int)'"}, ce.Issues[0])
	require.Equal(t, "3:6: found no matching overload for '_+_' applied to '(string, int)'", ce.Error())
}

func TestCompileReportsEveryIssue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ce := b.compileErr(t, "foo == 1 ||\n bar == 2", rules.BoolType)
	require.Equal(t, []int{1, 2}, []int{ce.Issues[0].Line, ce.Issues[1].Line})
	require.Equal(t, []int{1, 2}, []int{ce.Issues[0].Column, ce.Issues[1].Column})
	require.Contains(t, ce.Error(), "1:1: undeclared reference to 'foo'")
	require.Contains(t, ce.Error(), "; 2:2: undeclared reference to 'bar'")
}

func TestCompileSyntaxError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ce := b.compileErr(t, "event.a ==", rules.BoolType)
	require.Equal(t, 1, ce.Issues[0].Line)
	require.Equal(t, 11, ce.Issues[0].Column)
	require.Contains(t, ce.Issues[0].Message, "Syntax error")
}

func TestCompileEmptyExpression(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, expr := range []string{"", "  \n\t"} {
		ce := b.compileErr(t, expr, rules.BoolType)
		require.Equal(t, "expression is empty", ce.Error())
	}
}

func TestCompileWantType(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ce := b.compileErr(t, "event.amount + 1", rules.BoolType)
	require.Equal(t, "1:14: expression has type int, want bool", ce.Error())

	ce = b.compileErr(t, `tags.map(t, t.size())`, rules.ListOf(rules.StringType))
	require.Contains(t, ce.Error(), "expression has type list(int), want list(string)")

	ok := map[string]rules.Type{
		`event.flag`:                       rules.BoolType, // dyn: checked at run time
		`event.amount + 1`:                 rules.IntType,
		`event.amount - 1`:                 rules.DynType,
		`tags.map(t, t.upperAscii())`:      rules.ListOf(rules.StringType),
		`tags`:                             rules.ListType,
		`{"a": event.x}`:                   rules.MapType,
		`duration("1h") + duration("30m")`: rules.DurationType,
		`b"abc"`:                           rules.BytesType,
		`1u`:                               rules.UintType,
		`1.5`:                              rules.DoubleType,
		`"s"`:                              rules.StringType,
		`now`:                              rules.TimestampType,
		`event`:                            rules.Type{},
	}
	for expr, want := range ok {
		_, err := b.env.Compile(expr, want)
		require.NoError(t, err, "%s as %s", expr, want)
	}
}

func TestCompileCostLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Two nested loops over input lists: 1000 * 1000 * per-step cost.
	ce := b.compileErr(t, `event.items.all(a, event.items.all(b, a == b))`, rules.BoolType)
	require.ErrorIs(t, ce, rules.ErrCostLimit)
	require.Equal(t, 0, ce.Issues[0].Line)
	require.Regexp(t, `^estimated cost \d+ exceeds the limit 10000000$`, ce.Error())

	p, err := b.env.Compile(`event.items.exists(i, i.sku.startsWith("A"))`, rules.BoolType)
	require.NoError(t, err)
	require.Greater(t, p.EstimatedCost(), uint64(1000)) // scales with the assumed input size

	small := setup(t, rules.Limits{Cost: 100})
	ce = small.compileErr(t, `event.items.exists(i, i.sku.startsWith("A"))`, rules.BoolType)
	require.ErrorIs(t, ce, rules.ErrCostLimit)
	require.NotErrorIs(t, b.compileErr(t, "nope", rules.BoolType), rules.ErrCostLimit)
}

func TestCompileExpressionLength(t *testing.T) {
	t.Parallel()
	b := setup(t, rules.Limits{MaxExprLength: 20})
	_, err := b.env.Compile(`event.name == "0123456789abcdef"`, rules.BoolType)
	var ce *rules.CompileError
	require.ErrorAs(t, err, &ce)
	require.Contains(t, ce.Error(), "size exceeds limit")
}

func TestEvalJSONNumbers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := b.env.Compile(`event.type == "order.paid" && event.data.amount >= 5000`, rules.BoolType)
	require.NoError(t, err)

	// encoding/json yields float64; CEL compares numbers across types.
	event := decode(t, `{"type":"order.paid","data":{"amount":5000}}`)
	require.IsType(t, float64(0), event["data"].(map[string]any)["amount"])
	ok, err := p.EvalBool(b.ctx, map[string]any{"event": event})
	require.NoError(t, err)
	require.True(t, ok)

	ok, err = p.EvalBool(b.ctx, map[string]any{"event": decode(t, `{"type":"order.paid","data":{"amount":4999.5}}`)})
	require.NoError(t, err)
	require.False(t, ok)

	eq, err := b.env.Compile(`event.n == 3 && event.n < 3.5 && event.n > 2u && event.f == 2.5`, rules.BoolType)
	require.NoError(t, err)
	ok, err = eq.EvalBool(b.ctx, map[string]any{"event": decode(t, `{"n":3,"f":2.5}`)})
	require.NoError(t, err)
	require.True(t, ok)
}

func TestEvalArithmeticNeedsDecodeJSON(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := b.env.Compile(`event.amount + 1`, rules.IntType)
	require.NoError(t, err)

	_, err = p.Eval(b.ctx, map[string]any{"event": decode(t, `{"amount":5000}`)})
	var ee *rules.EvalError
	require.ErrorAs(t, err, &ee)
	require.Contains(t, ee.Error(), "no such overload")

	event, err := rules.DecodeJSON([]byte(`{"amount":5000,"rate":0.5,"items":[1,2.5]}`))
	require.NoError(t, err)
	require.Equal(t, map[string]any{"amount": int64(5000), "rate": 0.5, "items": []any{int64(1), 2.5}}, event)
	got, err := p.Eval(b.ctx, map[string]any{"event": event})
	require.NoError(t, err)
	require.Equal(t, int64(5001), got)
}

func TestDecodeJSONErrors(t *testing.T) {
	t.Parallel()
	_, err := rules.DecodeJSON([]byte(`{"a":1} {}`))
	require.ErrorContains(t, err, "unexpected data")
	_, err = rules.DecodeJSON([]byte(`{"a":`))
	require.Error(t, err)
	_, err = rules.DecodeJSON([]byte(`{"a":1e400}`))
	require.Error(t, err)
}

func TestEvalResults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	vars := map[string]any{
		"event": map[string]any{"items": []any{"a", "b"}, "n": int64(2), "nothing": nil},
		"now":   now,
		"tags":  []string{"vip", "new"},
	}
	cases := map[string]any{
		`event.items`:                        []any{"a", "b"},
		`{"k": event.n, "t": tags[0]}`:       map[string]any{"k": int64(2), "t": "vip"},
		`{1: "x"}`:                           map[any]any{int64(1): "x"},
		`now + duration("1h")`:               now.Add(time.Hour),
		`duration("90s")`:                    90 * time.Second,
		`event.nothing`:                      nil,
		`b"hi"`:                              []byte("hi"),
		`2u`:                                 uint64(2),
		`tags.size() > 1 ? "many" : ""`:      "many",
		`"%s-%d".format([tags[0], event.n])`: "vip-2",
	}
	for expr, want := range cases {
		p, err := b.env.Compile(expr, rules.DynType)
		require.NoError(t, err, expr)
		got, err := p.Eval(b.ctx, vars)
		require.NoError(t, err, expr)
		require.Equal(t, want, got, expr)
	}
}

func TestEvalErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := map[string]string{
		`event.missing == 1`:  "no such key: missing",
		`user.age > 1`:        "no such attribute",
		`event.name > 1`:      "no such overload",
		`event.name`:          "result has type string, want bool",
		`int(event.name) > 0`: "type conversion error",
	}
	vars := map[string]any{"event": map[string]any{"name": "x"}}
	for expr, msg := range cases {
		p, err := b.env.Compile(expr, rules.BoolType)
		require.NoError(t, err, expr)
		_, err = p.EvalBool(b.ctx, vars)
		var ee *rules.EvalError
		require.ErrorAs(t, err, &ee, expr)
		require.Equal(t, expr, ee.Expr)
		require.Contains(t, ee.Error(), msg, expr)
	}
}

func TestEvalRuntimeCostLimit(t *testing.T) {
	t.Parallel()
	// The estimate assumes lists of 10; the input has 100,000 elements.
	b := setup(t, rules.Limits{InputSize: 10, RuntimeCost: 10_000})
	p, err := b.env.Compile(`event.items.all(x, x >= 0)`, rules.BoolType)
	require.NoError(t, err)

	items := make([]any, 100_000)
	for i := range items {
		items[i] = int64(i)
	}
	cancellable, cancel := context.WithCancel(b.ctx)
	defer cancel()
	for _, ctx := range []context.Context{b.ctx, cancellable} {
		_, err = p.EvalBool(ctx, map[string]any{"event": map[string]any{"items": items}})
		var ee *rules.EvalError
		require.ErrorAs(t, err, &ee)
		require.ErrorIs(t, err, rules.ErrCostLimit)
		require.Contains(t, err.Error(), "runtime limit 10000")
	}

	ok, err := p.EvalBool(b.ctx, map[string]any{"event": map[string]any{"items": items[:100]}})
	require.NoError(t, err)
	require.True(t, ok)
}

func TestEvalCancelledBeforeStart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := b.env.Compile(`event.a == 1`, rules.BoolType)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(b.ctx)
	cancel()
	_, err = p.EvalBool(ctx, map[string]any{"event": map[string]any{"a": 1}})
	var ee *rules.EvalError
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, context.Canceled)
}

// lateCtx is cancelled from the start but reports it only from the second
// call to Err, so that Eval's up-front check passes and the cancellation is
// seen inside the evaluation, as when a context is cancelled mid-way.
type lateCtx struct {
	context.Context
	mu    sync.Mutex
	calls int
}

func (c *lateCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.calls == 1 {
		return nil
	}
	return c.Context.Err()
}

func TestEvalCancelledDuringComprehension(t *testing.T) {
	t.Parallel()
	b := setup(t, rules.Limits{InputSize: 10})
	p, err := b.env.Compile(`event.items.all(x, x >= 0)`, rules.BoolType)
	require.NoError(t, err)
	items := make([]any, 10_000)
	for i := range items {
		items[i] = int64(i)
	}
	parent, cancel := context.WithCancel(b.ctx)
	cancel()
	_, err = p.EvalBool(&lateCtx{Context: parent}, map[string]any{"event": map[string]any{"items": items}})
	var ee *rules.EvalError
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, context.Canceled)
}

func TestEvalTimestampsAndStrings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := b.env.Compile(
		`now.getHours() == 12 && now - timestamp(event.at) < duration("24h") && event.code.trim().upperAscii() == "ABC"`,
		rules.BoolType)
	require.NoError(t, err)
	ok, err := p.EvalBool(b.ctx, map[string]any{
		"now":   time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		"event": decode(t, `{"at":"2025-03-01T01:00:00Z","code":" abc "}`),
	})
	require.NoError(t, err)
	require.True(t, ok)
}

func TestConcurrentEval(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := b.env.Compile(`event.n % 2 == 0`, rules.BoolType)
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			ok, err := p.EvalBool(b.ctx, map[string]any{"event": map[string]any{"n": int64(i)}})
			if err == nil && ok != (i%2 == 0) {
				err = fmt.Errorf("n=%d: got %v", i, ok)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestErrorsAreTyped(t *testing.T) {
	t.Parallel()
	var ce error = &rules.CompileError{Issues: []rules.Issue{{Line: 1, Column: 9, Message: "undeclared reference to 'evnt'"}}}
	require.Equal(t, "1:9: undeclared reference to 'evnt'", ce.Error())
	require.False(t, errors.Is(ce, rules.ErrCostLimit))
	ee := &rules.EvalError{Expr: "a", Err: rules.ErrCostLimit}
	require.Equal(t, `eval "a": cost limit exceeded`, ee.Error())
}
