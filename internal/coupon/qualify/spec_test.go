package qualify_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/problem"
)

// baseSpec is a valid spec: ¥30 off from ¥100, 30 days.
const baseSpec = `{"type":"amount_off","amount":3000,"threshold":{"amount":10000},"validity":{"days":30},
	"title":{"en":"¥30 off ¥100","zh-CN":"满100减30"}}`

// with returns baseSpec with top-level members replaced (a nil value removes the member).
func with(t *testing.T, members map[string]any) string {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(baseSpec), &m))
	for k, v := range members {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return mustJSON(t, m)
}

type obj = map[string]any

func TestDecodeRefusesWithFieldPaths(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("长", qualify.MaxTitleRunes+1)
	tooMany := make([]string, qualify.MaxRuleValues+1)
	for i := range tooMany {
		tooMany[i] = "v" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26%50)
	}
	cases := []struct {
		name  string
		raw   string
		paths []string
	}{
		// shape
		{"not JSON", `{"type":`, []string{"spec"}},
		{"not an object", `[1]`, []string{"spec"}},
		{"unknown member", with(t, obj{"colour": "red"}), []string{"spec.colour"}},
		{"member names are case-sensitive", with(t, obj{"Amount": 1}), []string{"spec.Amount"}},
		{"unknown nested member", with(t, obj{"threshold": obj{"amount": 10000, "min": 1}}), []string{"spec.threshold.min"}},
		{"unknown rule member", with(t, obj{"applicability": obj{"category": obj{"only": []string{"a"}}}}),
			[]string{"spec.applicability.category.only"}},
		{"unknown dimension", with(t, obj{"applicability": obj{"colour": obj{}}}), []string{"spec.applicability.colour"}},
		{"amount as a string", with(t, obj{"amount": "3000"}), []string{"spec.amount"}},
		{"amount with a fraction", with(t, obj{"amount": 30.5}), []string{"spec.amount"}},
		{"amount out of range", `{"type":"amount_off","amount":99999999999999999999}`, []string{"spec.amount"}},
		{"days as a fraction", with(t, obj{"validity": obj{"days": 1.5}}), []string{"spec.validity.days"}},
		{"from not a time", with(t, obj{"validity": obj{"from": "yesterday", "until": "2026-04-01T00:00:00Z"}}),
			[]string{"spec.validity.from"}},
		{"title not text", with(t, obj{"title": obj{"en": 5}}), []string{"spec.title.en"}},
		{"include not a list", with(t, obj{"applicability": obj{"brand": obj{"include": "acme"}}}),
			[]string{"spec.applicability.brand.include"}},
		{"include of numbers", with(t, obj{"applicability": obj{"brand": obj{"include": []int{1, 2}}}}),
			[]string{"spec.applicability.brand.include[0]", "spec.applicability.brand.include[1]"}},
		{"threshold not an object", with(t, obj{"threshold": 10000}), []string{"spec.threshold"}},
		// type and value
		{"type missing", with(t, obj{"type": nil}), []string{"spec.type"}},
		{"type unknown", with(t, obj{"type": "free_gift"}), []string{"spec.type"}},
		{"amount_off without amount", with(t, obj{"amount": nil, "threshold": nil}), []string{"spec.amount"}},
		{"amount_off negative", with(t, obj{"amount": -1}), []string{"spec.amount"}},
		{"amount_off too large", with(t, obj{"amount": qualify.MaxAmount + 1, "threshold": nil}), []string{"spec.amount"}},
		{"amount_off with a percentage", with(t, obj{"percent_bp": 500}), []string{"spec.percent_bp"}},
		{"cap without percent", with(t, obj{"cap": 500}), []string{"spec.cap"}},
		{"percent_off without percent", with(t, obj{"type": "percent_off", "amount": nil, "cap": 5000}), []string{"spec.percent_bp"}},
		{"percent_off over 100%", with(t, obj{"type": "percent_off", "amount": nil, "percent_bp": 10001, "cap": 5000}),
			[]string{"spec.percent_bp"}},
		{"percent_off negative", with(t, obj{"type": "percent_off", "amount": nil, "percent_bp": -5, "cap": 5000}),
			[]string{"spec.percent_bp"}},
		{"percent_off without cap", with(t, obj{"type": "percent_off", "amount": nil, "percent_bp": 1000}), []string{"spec.cap"}},
		{"percent_off with amount", with(t, obj{"type": "percent_off", "percent_bp": 1000, "cap": 5000}), []string{"spec.amount"}},
		{"seller_bonus with both", with(t, obj{"type": "seller_bonus", "amount": 500, "percent_bp": 300, "cap": 100}),
			[]string{"spec.percent_bp"}},
		{"seller_bonus with neither", with(t, obj{"type": "seller_bonus", "amount": nil}), []string{"spec.amount"}},
		{"seller_bonus fixed with cap", with(t, obj{"type": "seller_bonus", "amount": 500, "cap": 100}), []string{"spec.cap"}},
		{"seller_bonus percent without cap", with(t, obj{"type": "seller_bonus", "amount": nil, "percent_bp": 300}),
			[]string{"spec.cap"}},
		// threshold
		{"threshold negative", with(t, obj{"threshold": obj{"amount": -1}}), []string{"spec.threshold.amount"}},
		{"threshold below discount", with(t, obj{"threshold": obj{"amount": 2000}}), []string{"spec.threshold.amount"}},
		{"threshold scope unknown", with(t, obj{"threshold": obj{"amount": 10000, "scope": "all"}}), []string{"spec.threshold.scope"}},
		// applicability
		{"empty value", with(t, obj{"applicability": obj{"category": obj{"include": []string{""}}}}),
			[]string{"spec.applicability.category.include[0]"}},
		{"padded value", with(t, obj{"applicability": obj{"category": obj{"include": []string{" phone"}}}}),
			[]string{"spec.applicability.category.include[0]"}},
		{"duplicate value", with(t, obj{"applicability": obj{"sku": obj{"exclude": []string{"a", "b", "a"}}}}),
			[]string{"spec.applicability.sku.exclude[2]"}},
		{"value included and excluded", with(t, obj{"applicability": obj{"brand": obj{"include": []string{"a", "b"}, "exclude": []string{"b"}}}}),
			[]string{"spec.applicability.brand.exclude[0]"}},
		{"value too long", with(t, obj{"applicability": obj{"model": obj{"include": []string{strings.Repeat("m", 129)}}}}),
			[]string{"spec.applicability.model.include[0]"}},
		{"too many values", with(t, obj{"applicability": obj{"sku": obj{"include": tooMany}}}),
			[]string{"spec.applicability.sku.include"}},
		{"cart dimensions too", with(t, obj{"applicability": obj{"business_line": obj{"include": []string{""}}, "channel": obj{"exclude": []string{"a", "a"}}}}),
			[]string{"spec.applicability.business_line.include[0]", "spec.applicability.channel.exclude[1]"}},
		// validity
		{"validity missing", with(t, obj{"validity": nil}), []string{"spec.validity"}},
		{"validity days zero", with(t, obj{"validity": obj{"days": 0}}), []string{"spec.validity"}},
		{"validity days too many", with(t, obj{"validity": obj{"days": 3651}}), []string{"spec.validity.days"}},
		{"validity days negative", with(t, obj{"validity": obj{"days": -3}}), []string{"spec.validity.days"}},
		{"validity window and days", with(t, obj{"validity": obj{"days": 3, "from": "2026-03-01T00:00:00Z", "until": "2026-04-01T00:00:00Z"}}),
			[]string{"spec.validity.days"}},
		{"validity from alone", with(t, obj{"validity": obj{"from": "2026-03-01T00:00:00Z"}}), []string{"spec.validity.until"}},
		{"validity until alone", with(t, obj{"validity": obj{"until": "2026-03-01T00:00:00Z"}}), []string{"spec.validity.from"}},
		{"validity backwards", with(t, obj{"validity": obj{"from": "2026-04-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}}),
			[]string{"spec.validity.until"}},
		{"validity empty window", with(t, obj{"validity": obj{"from": "2026-04-01T08:00:00+08:00", "until": "2026-04-01T00:00:00Z"}}),
			[]string{"spec.validity.until"}},
		// quantities
		{"quantity negative", with(t, obj{"quantity": -1}), []string{"spec.quantity"}},
		{"per_user negative", with(t, obj{"per_user": -1}), []string{"spec.per_user"}},
		{"per_user over quantity", with(t, obj{"quantity": 10, "per_user": 11}), []string{"spec.per_user"}},
		// stacking
		{"stacking mode unknown", with(t, obj{"stacking": obj{"mode": "any"}}), []string{"spec.stacking.mode"}},
		{"group mode without group", with(t, obj{"stacking": obj{"mode": "group"}}), []string{"spec.stacking.group"}},
		{"group not a slug", with(t, obj{"stacking": obj{"mode": "group", "group": "Platform Coupons"}}), []string{"spec.stacking.group"}},
		{"exclusive with a group", with(t, obj{"stacking": obj{"group": "platform"}}), []string{"spec.stacking.group"}},
		{"exclusive with a max", with(t, obj{"stacking": obj{"max_per_order": 2}}), []string{"spec.stacking.max_per_order"}},
		{"max_per_order too large", with(t, obj{"stacking": obj{"mode": "group", "group": "shop", "max_per_order": 21}}),
			[]string{"spec.stacking.max_per_order"}},
		{"max_per_order negative", with(t, obj{"stacking": obj{"mode": "group", "group": "shop", "max_per_order": -1}}),
			[]string{"spec.stacking.max_per_order"}},
		// condition
		{"condition syntax", with(t, obj{"condition": "user.level >= "}), []string{"spec.condition"}},
		{"condition not bool", with(t, obj{"condition": "cart.amount + 1"}), []string{"spec.condition"}},
		{"condition unknown variable", with(t, obj{"condition": "member.level > 2"}), []string{"spec.condition"}},
		{"condition blank", with(t, obj{"condition": "  "}), []string{"spec.condition"}},
		// texts
		{"title missing", with(t, obj{"title": nil}), []string{"spec.title"}},
		{"title empty", with(t, obj{"title": obj{}}), []string{"spec.title"}},
		{"title language unknown", with(t, obj{"title": obj{"en": "a", "fr": "b"}}), []string{"spec.title.fr"}},
		{"title blank", with(t, obj{"title": obj{"en": " "}}), []string{"spec.title.en"}},
		{"title too long", with(t, obj{"title": obj{"zh-CN": long}}), []string{"spec.title.zh-CN"}},
		{"description too long", with(t, obj{"description": obj{"en": strings.Repeat("d", 2001)}}), []string{"spec.description.en"}},
		{"description language unknown", with(t, obj{"description": obj{"zh": "x"}}), []string{"spec.description.zh"}},
		// currency
		{"currency unknown", with(t, obj{"currency": "XXX"}), []string{"spec.currency"}},
		{"currency lowercase", with(t, obj{"currency": "cny"}), []string{"spec.currency"}},
		// several at once
		{"every problem is named", `{"type":"percent_off","percent_bp":0,"cap":-1,"validity":{"days":9999},"stacking":{"mode":"group"},"title":{"de":"x"},"x":1}`,
			[]string{"spec.x"}},
		{"every value problem is named", `{"type":"percent_off","percent_bp":20000,"cap":-1,"validity":{"days":9999},"stacking":{"mode":"group"},"title":{"de":"x"}}`,
			[]string{"spec.percent_bp", "spec.cap", "spec.validity.days", "spec.stacking.group", "spec.title.de"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := qualify.Decode(json.RawMessage(tc.raw), false)
			requireFields(t, err, problem.KindInvalid, tc.paths...)
		})
	}
}

func TestDecodeMessages(t *testing.T) {
	t.Parallel()
	_, err := qualify.Decode(json.RawMessage(with(t, obj{"threshold": obj{"amount": 2000}})), false)
	pe := requireFields(t, err, problem.KindInvalid, "spec.threshold.amount")
	require.Equal(t, "the threshold ¥20.00 is below the discount ¥30.00; use 0 for no threshold",
		fieldMessage(t, pe, "spec.threshold.amount"))

	_, err = qualify.Decode(json.RawMessage(with(t, obj{"condition": "user.level >=\n  'gold' +"})), false)
	pe = requireFields(t, err, problem.KindInvalid, "spec.condition")
	require.Regexp(t, `^2:\d+: `, fieldMessage(t, pe, "spec.condition"), "compile errors keep line:column")

	_, err = qualify.Decode(json.RawMessage(with(t, obj{"colour": 1})), false)
	pe = requireFields(t, err, problem.KindInvalid, "spec.colour")
	require.Equal(t, "unknown field", fieldMessage(t, pe, "spec.colour"))
}

func TestDecodeAccepts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		raw  string
		want func(t *testing.T, s qualify.Spec)
	}{
		{"defaults filled", baseSpec, func(t *testing.T, s qualify.Spec) {
			require.Equal(t, "CNY", s.Currency)
			require.Equal(t, qualify.ScopeCart, s.Threshold.Scope)
			require.Equal(t, qualify.StackExclusive, s.Stacking.Mode)
			require.Equal(t, 1, s.Stacking.MaxPerOrder)
			require.Equal(t, int64(3000), s.Amount)
		}},
		{"no threshold is fine", with(t, obj{"threshold": obj{"amount": 0}}), nil},
		{"threshold equal to the discount", with(t, obj{"threshold": obj{"amount": 3000}}), nil},
		{"percent off with cap", with(t, obj{"type": "percent_off", "amount": nil, "percent_bp": 10000, "cap": 1}), nil},
		{"seller bonus fixed", with(t, obj{"type": "seller_bonus", "amount": 500}), nil},
		{"seller bonus percent", with(t, obj{"type": "seller_bonus", "amount": nil, "percent_bp": 300, "cap": 2000}), nil},
		{"window kept in UTC", with(t, obj{"validity": obj{"from": "2026-03-01T08:00:00+08:00", "until": "2026-04-01T00:00:00Z"}}),
			func(t *testing.T, s qualify.Spec) {
				require.Equal(t, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), *s.Validity.From)
				require.Equal(t, time.UTC, s.Validity.From.Location())
			}},
		{"group stacking", with(t, obj{"stacking": obj{"mode": "group", "group": "platform", "max_per_order": 3}}),
			func(t *testing.T, s qualify.Spec) { require.Equal(t, 3, s.Stacking.MaxPerOrder) }},
		{"every dimension", with(t, obj{"applicability": obj{
			"business_line": obj{"include": []string{"retail"}}, "channel": obj{"exclude": []string{"mini"}},
			"category": obj{"include": []string{"phone", "tablet"}, "exclude": []string{"refurb"}},
			"brand":    obj{"include": []string{"acme"}}, "model": obj{"exclude": []string{"x0"}}, "sku": obj{"exclude": []string{"p9"}}}}),
			func(t *testing.T, s qualify.Spec) {
				require.Equal(t, []string{"phone", "tablet"}, s.Applicability.Category.Include)
			}},
		{"condition", with(t, obj{"condition": `user.level >= 3 && cart.items.exists(i, i.category == "phone")`}), nil},
		{"one title language", with(t, obj{"title": obj{"zh-CN": "满100减30"}}), nil},
		{"limits", with(t, obj{"quantity": 1000, "per_user": 1000}), nil},
		{"currency", with(t, obj{"currency": "JPY"}), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := qualify.Decode(json.RawMessage(tc.raw), false)
			require.NoError(t, err)
			if tc.want != nil {
				tc.want(t, s)
			}
			tp, err := qualify.Compile("k", 1, s)
			require.NoError(t, err)
			require.Equal(t, s, tp.Spec)
		})
	}
}

func TestDecodeDraft(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{``, `{}`, `{"type":"amount_off"}`, `{"type":"percent_off","percent_bp":500}`,
		`{"type":"seller_bonus"}`, `{"stacking":{"mode":"group"}}`, `{"validity":{"from":"2026-03-01T00:00:00Z"}}`} {
		_, err := qualify.Decode(json.RawMessage(raw), true)
		require.NoError(t, err, raw)
		_, err = qualify.Decode(json.RawMessage(raw), false)
		require.Error(t, err, raw)
	}
	// Present fields are still checked.
	for raw, path := range map[string]string{
		`{"amount":-1}`:                   "spec.amount",
		`{"type":"coupon"}`:               "spec.type",
		`{"colour":1}`:                    "spec.colour",
		`{"validity":{"days":0.5}}`:       "spec.validity.days",
		`{"stacking":{"group":"p"}}`:      "spec.stacking.group",
		`{"condition":"1"}`:               "spec.condition",
		`{"title":{"de":"x"}}`:            "spec.title.de",
		`{"type":"amount_off","cap":100}`: "spec.cap",
	} {
		_, err := qualify.Decode(json.RawMessage(raw), true)
		require.Error(t, err, raw)
		requireFields(t, err, problem.KindInvalid, path)
	}
}

func TestCompile(t *testing.T) {
	t.Parallel()
	_, err := qualify.Compile("", 1, spec())
	requireFields(t, err, problem.KindInvalid, "key")
	bad := spec()
	bad.Threshold.Amount = 100
	_, err = qualify.Compile("k", 1, bad)
	requireFields(t, err, problem.KindInvalid, "spec.threshold.amount")
	draft := qualify.Spec{Type: qualify.TypeAmountOff}
	_, err = qualify.Compile("k", 1, draft)
	require.Error(t, err, "a draft does not compile")

	tp, err := qualify.Compile("k", 7, spec())
	require.NoError(t, err)
	require.Equal(t, "k", tp.Key)
	require.Equal(t, 7, tp.Version)
	require.Equal(t, "CNY", tp.Spec.Currency, "defaults are filled")
}

func TestWindow(t *testing.T) {
	t.Parallel()
	s := spec()
	s.Validity = qualify.Validity{Days: 7}
	tp, err := qualify.Compile("k", 1, s)
	require.NoError(t, err)
	from, until := tp.Window(now)
	require.Equal(t, now, from)
	require.Equal(t, now.Add(7*24*time.Hour), until)

	a, b := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	s.Validity = qualify.Validity{From: &a, Until: &b}
	tp, err = qualify.Compile("k", 1, s)
	require.NoError(t, err)
	from, until = tp.Window(now)
	require.Equal(t, a, from)
	require.Equal(t, b, until)
}

func TestFormatMoney(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code   string
		amount int64
		want   string
	}{
		{"CNY", 1200, "¥12.00"}, {"CNY", 5, "¥0.05"}, {"CNY", 0, "¥0.00"}, {"USD", 123456, "$1234.56"},
		{"JPY", 1200, "JP¥1200"}, {"KWD", 1005, "KWD 1.005"}, {"", 99, "¥0.99"}, {"CNY", -150, "-¥1.50"},
	} {
		require.Equal(t, tc.want, qualify.FormatMoney(tc.code, tc.amount))
	}
	require.True(t, qualify.KnownCurrency("EUR"))
	require.False(t, qualify.KnownCurrency("eur"))
	require.Equal(t, 0, qualify.MinorDigits("JPY"))
	require.Equal(t, -1, qualify.MinorDigits("XXX"))
}

// TestDecodeTemplateIsDecodeThenCompile: checking and compiling a published spec in one step gives
// the template Decode then Compile give, and refuses what they refuse.
func TestDecodeTemplateIsDecodeThenCompile(t *testing.T) {
	t.Parallel()
	raw := json.RawMessage(`{"type":"percent_off","percent_bp":1000,"cap":5000,"validity":{"days":7},
		"condition":"has(user.level) && user.level >= 2","title":{"en":"10% off"}}`)
	spec, err := qualify.Decode(raw, false)
	require.NoError(t, err)
	want, err := qualify.Compile("vip10", 3, spec)
	require.NoError(t, err)
	got, err := qualify.DecodeTemplate("vip10", 3, raw)
	require.NoError(t, err)
	require.Equal(t, want.Spec, got.Spec)
	require.Equal(t, want.Key, got.Key)
	require.Equal(t, want.Version, got.Version)
	cart := qualify.Cart{Items: []qualify.Item{{SKU: "a", UnitPrice: 20000, Quantity: 1}}}
	for _, user := range []map[string]any{{"level": int64(3)}, {"level": int64(1)}, nil} {
		in := func(tpl *qualify.Template) qualify.Input {
			return qualify.Input{Now: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Cart: cart, User: user,
				Coupons: []qualify.Coupon{{ID: "c1", TemplateKey: "vip10", TemplateVersion: 3,
					ExpiresAt: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}},
				Templates: func(string, int) (*qualify.Template, bool) { return tpl, true }}
		}
		require.Equal(t, qualify.Evaluate(in(want)), qualify.Evaluate(in(got)), "%v", user)
	}

	_, err = qualify.DecodeTemplate("bad", 1, json.RawMessage(`{"type":"percent_off","percent_bp":1000,
		"condition":"user.level >","title":{"en":"x"},"validity":{"days":7},"cap":1}`))
	requireFields(t, err, problem.KindInvalid, "spec.condition")
	_, err = qualify.DecodeTemplate("", 1, raw)
	requireFields(t, err, problem.KindInvalid, "key")
}
