package httpapi

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/seedtest"
)

// qualifyBodyReader is a jsonBody of qualification bodies on an API configured as the server's.
func qualifyBodyReader(t *testing.T) *jsonBody[qualifyBody] {
	t.Helper()
	s := &Server{deps: Deps{Version: "test"}}
	return newJSONBody(humago.New(http.NewServeMux(), s.humaConfig()), (*qualifyBody).complete)
}

// randomQualifyBody is a valid body: 1 to 6 items with every optional member now and then, and
// sometimes the user's attributes.
func randomQualifyBody(rng *rand.Rand) map[string]any {
	items := make([]any, 1+rng.IntN(6))
	for i := range items {
		it := map[string]any{"sku": fmt.Sprintf("sku-%d", rng.IntN(100)), "unit_price": rng.IntN(100000),
			"quantity": 1 + rng.IntN(5)}
		for _, k := range []string{"category", "brand", "model"} {
			if rng.IntN(2) == 0 {
				it[k] = fmt.Sprintf("%s-é-%d", k, rng.IntN(10))
			}
		}
		items[i] = it
	}
	cart := map[string]any{"items": items}
	if rng.IntN(2) == 0 {
		cart["business_line"], cart["channel"], cart["currency"] = "retail", "app", "CNY"
	}
	body := map[string]any{"cart": cart}
	if rng.IntN(3) == 0 {
		body["user"] = map[string]any{"level": rng.IntN(5), "score": 1.5, "tags": []any{"vip"}, "city": "上海"}
	}
	return body
}

// mutations turn a valid body's JSON into one the strict pass may refuse, or read otherwise than
// huma would, if it were not as strict as the schema.
var mutations = []func(string) string{
	func(s string) string { return strings.Replace(s, `"unit_price":`, `"Unit_Price":`, 1) },
	func(s string) string { return strings.Replace(s, `"sku":`, `"SKU":`, 1) },
	func(s string) string { return strings.Replace(s, `"cart":`, `"Cart":`, 1) },
	func(s string) string { return strings.Replace(s, `"unit_price":`, `"unit_prices":`, 1) },
	func(s string) string { return strings.Replace(s, `"quantity":`, `"quantity":null,"q":`, 1) },
	func(s string) string { return strings.Replace(s, `"sku":`, `"sku":null,"x":`, 1) },
	func(s string) string { return strings.Replace(s, `"sku":`, `"sku":"dup","sku":`, 1) },
	func(s string) string { return strings.Replace(s, `"quantity":`, `"quantity":"2","x":`, 1) },
	func(s string) string { return strings.Replace(s, `"unit_price":`, `"unit_price":1.5,"x":`, 1) },
	func(s string) string { return strings.Replace(s, `"unit_price":`, `"unit_price":012,"x":`, 1) },
	func(s string) string { return strings.Replace(s, `"unit_price":`, `"unit_price":1e3,"x":`, 1) },
	func(s string) string { return strings.Replace(s, `"unit_price":`, `"unit_price":-0,"x":`, 1) },
	func(s string) string {
		return strings.Replace(s, `"unit_price":`, `"unit_price":99999999999999999999,"x":`, 1)
	},
	func(s string) string { return strings.Replace(s, `"sku":"`, `"sku":"\ud800`, 1) },
	func(s string) string { return strings.Replace(s, `"sku":"`, "\"sku\":\"\xff", 1) },
	func(s string) string { return strings.Replace(s, `"sku":"`, `"sku":"\u00e9\"`, 1) },
	func(s string) string { return strings.Replace(s, `,"quantity":`, `,"quantity" :`, 1) },
	func(s string) string { return strings.Replace(s, `{"items":`, `{"items":[],"x":`, 1) },
	func(s string) string { return strings.Replace(s, `"items":[`, `"items":[{},`, 1) },
	func(s string) string { return strings.Replace(s, `"cart":{`, `"cart":{"currency":7,`, 1) },
	func(s string) string { return strings.Replace(s, `"cart":`, `"user":[],"cart":`, 1) },
	func(s string) string { return regexp.MustCompile(`"sku":"[^"]*"`).ReplaceAllString(s, `"sku":null`) },
	func(s string) string {
		return regexp.MustCompile(`"unit_price":\d+`).ReplaceAllString(s, `"unit_price":null`)
	},
	func(s string) string {
		return regexp.MustCompile(`"quantity":\d+`).ReplaceAllString(s, `"quantity":null`)
	},
	func(s string) string {
		return regexp.MustCompile(`"category":"[^"]*"`).ReplaceAllString(s, `"category":null`)
	},
	func(s string) string { return regexp.MustCompile(`"items":\[.*\]`).ReplaceAllString(s, `"items":null`) },
	func(s string) string {
		return regexp.MustCompile(`"tags":\[[^]]*\]`).ReplaceAllString(s, `"tags":null`)
	},
	func(s string) string { return strings.Replace(s, `"cart":{`, `"user":null,"cart":{`, 1) },
	func(s string) string { return `{"cart":null}` },
	func(s string) string { return `{"user":{}}` },
	func(s string) string { return s + " " },
	func(s string) string { return s + "x" },
	func(s string) string { return s[:len(s)/2] },
	func(s string) string { return "[" + s + "]" },
	func(s string) string { return "" },
	func(s string) string { return " \n" + s },
}

// TestJSONBodyReadsAsHumaDoes: for valid bodies and for each of many ways to spoil one, under
// several content types, the strict pass either refuses the body or reads what huma's reading
// (parse, validate against the schema, parse into the struct) reads; and every refusal is
// huma's own answer, status and errors.
func TestJSONBodyReadsAsHumaDoes(t *testing.T) {
	t.Parallel()
	reader := qualifyBodyReader(t)
	rng := rand.New(rand.NewPCG(seedtest.Seed(t), 5))
	contentTypes := []string{"", "application/json", "application/json; charset=utf-8", "text/plain", "application/merge-patch+json"}
	fast, statuses := 0, map[int]int{}
	for i := range 400 {
		raw, err := json.Marshal(randomQualifyBody(rng))
		require.NoError(t, err)
		bodies := []string{string(raw)}
		for _, m := range mutations {
			bodies = append(bodies, m(string(raw)))
		}
		for j, body := range bodies {
			ct := contentTypes[(i+j)%len(contentTypes)]
			var got, want qualifyBody
			gotErr := reader.decode(ct, []byte(body), &got)
			wantErr := reader.slow(ct, []byte(body), &want)
			require.Equal(t, fmt.Sprint(wantErr), fmt.Sprint(gotErr), "body %s (%s)", body, ct)
			require.Equal(t, want, got, "body %s (%s)", body, ct)
			if wantErr == nil {
				if plainJSON(ct) && j == 0 {
					fast++
				}
				continue
			}
			p, ok := wantErr.(*Problem)
			require.True(t, ok, "%T", wantErr)
			statuses[p.Status]++
		}
	}
	require.Positive(t, fast)
	for _, status := range []int{http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity} {
		require.Positive(t, statuses[status], "no body was refused with %d", status)
	}
}

// TestJSONBodyTakesTheStrictPass: an ordinary valid body is read by the strict pass alone, and
// a body it cannot vouch for by the slow one.
func TestJSONBodyTakesTheStrictPass(t *testing.T) {
	t.Parallel()
	reader := qualifyBodyReader(t)
	var v qualifyBody
	body := `{"cart":{"items":[{"sku":"a","unit_price":100,"quantity":2}]},"user":{"level":2}}`
	require.NoError(t, strictJSON([]byte(body), &v))
	require.True(t, v.complete())
	require.NoError(t, reader.decode("application/json", []byte(body), &v))
	require.Equal(t, int64(100), v.Cart.Items[0].UnitPrice)
	require.Equal(t, map[string]any{"level": 2.0}, v.User)

	free := `{"cart":{"items":[{"sku":"a","unit_price":0,"quantity":2}]}}`
	require.NoError(t, strictJSON([]byte(free), &v))
	require.False(t, v.complete(), "a zero price may be a missing one: the slow path tells")
	require.NoError(t, reader.decode("", []byte(free), &v))
	require.Zero(t, v.Cart.Items[0].UnitPrice)

	missing := `{"cart":{"items":[{"sku":"a","quantity":2}]}}`
	err := reader.decode("", []byte(missing), &v)
	p, ok := err.(*Problem)
	require.True(t, ok, "%T", err)
	require.Equal(t, http.StatusUnprocessableEntity, p.Status)
	require.Equal(t, "body.cart.items[0]", p.Errors[0].Location)
	require.Contains(t, p.Errors[0].Message, "unit_price")
}
