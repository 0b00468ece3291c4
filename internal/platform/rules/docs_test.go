package rules_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/rules"
)

// TestDocExamples compiles the expressions that docs/rules.md shows, so the
// documented extensions stay enabled.
func TestDocExamples(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, expr := range []string{
		`event.?data.amount.orValue(0) > 10`,
		`event.?coupon.hasValue()`,
		`event.s.lowerAscii() + event.s.upperAscii() + event.s.trim() + event.s.replace("a", "b") + event.s.substring(0, 3) != ""`,
		`event.s.split(",").join(",") == "" && event.s.indexOf("@") > 0 && "%s-%d".format([event.a, event.b]) != strings.quote(event.s)`,
		`math.greatest(event.a, 2) > math.least([1, 2]) && math.abs(-1) == 1 && math.ceil(1.2) == math.round(2.0)`,
		`lists.range(5).size() == 5 && [1, [2]].flatten().distinct().sort().reverse().slice(0, 1) == [2]`,
		`sets.contains(tags, ["vip"]) && sets.intersects(tags, ["a"]) && sets.equivalent(tags, tags)`,
		`base64.encode(b"x") == "eA==" && base64.decode("eA==") == b"x"`,
		`cel.bind(a, event.data.amount, a > 100 && a < 1000)`,
		`event.data.all(k, v, v != "") && {"a": 1}.transformMap(k, v, v * 2) == {"a": 2}`,
		`event.type == "order.paid" && event.data.amount >= 5000`,
		`user.level >= 3 && user.?city.orValue("") == "Shanghai"`,
		`event.data.order_seq == 1`,
		`event.data.items.exists(i, i.category in ["food", "drink"])`,
		`now.getHours() >= 10 && now.getHours() < 22`,
		`now - timestamp(user.created_at) < duration("168h")`,
	} {
		_, err := b.env.Compile(expr, rules.BoolType)
		require.NoError(t, err, expr)
	}
	_, err := b.env.Compile(`event.data.order_id + ":" + string(event.data.line)`, rules.StringType)
	require.NoError(t, err)
}
