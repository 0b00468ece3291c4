package rules_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/perkhq/perk/internal/platform/rules"
)

func BenchmarkEvalFilter(b *testing.B) {
	env := rules.MustNewEnv("task.trigger", rules.Var{Name: "event", Type: rules.MapType})
	p, err := env.Compile(`event.type == "order.paid" && event.data.amount >= 5000`, rules.BoolType)
	if err != nil {
		b.Fatal(err)
	}
	var event map[string]any
	raw := `{"type":"order.paid","id":"e1","data":{"order_id":"o1","amount":12900,"currency":"CNY"}}`
	if err := json.Unmarshal([]byte(raw), &event); err != nil {
		b.Fatal(err)
	}
	vars := map[string]any{"event": event}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ok, err := p.EvalBool(ctx, vars)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkEvalFilterCancellable is BenchmarkEvalFilter under a context that
// can be cancelled, as in a request or a consumer, which takes the
// interruptible path.
func BenchmarkEvalFilterCancellable(b *testing.B) {
	env := rules.MustNewEnv("task.trigger", rules.Var{Name: "event", Type: rules.MapType})
	p, err := env.Compile(`event.type == "order.paid" && event.data.amount >= 5000`, rules.BoolType)
	if err != nil {
		b.Fatal(err)
	}
	vars := map[string]any{"event": map[string]any{"type": "order.paid", "data": map[string]any{"amount": 12900.0}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		ok, err := p.EvalBool(ctx, vars)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
