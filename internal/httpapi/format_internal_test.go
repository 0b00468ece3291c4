package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/seedtest"
	"github.com/perkhq/perk/internal/reward"
)

// TestJSONFormatWritesWhatEncodingJSONWrites: the faster encoder of the API's answers gives, byte
// for byte, what encoding/json (without HTML escaping) gives, for the shapes the API answers with:
// nested structs with omitempty, nil and empty slices, maps (sorted keys), raw JSON, times,
// pointers and characters encoding/json escapes.
func TestJSONFormatWritesWhatEncodingJSONWrites(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 21, 8, 30, 0, 123456000, time.UTC)
	values := map[string]any{
		"grant": reward.Grant{ID: "grt_1", TenantID: "t", UserID: "u<1>&", SourceKind: "order", SourceID: "o-1",
			Params: json.RawMessage(`{ "b": 2,  "a": [1, 2] }`), State: reward.StateSucceeded, CreatedAt: at,
			CompletedAt: &at, Steps: []reward.Step{{Name: "points", Component: "grant_points",
				Output: json.RawMessage(`{"entry_id":"le_1"}`)}}},
		"result": qualify.Result{Coupons: []qualify.Outcome{{CouponID: "c1", Applicable: true, Discount: 3000}, {CouponID: "c2",
			Reasons: []qualify.Reason{{Code: "below_threshold", Message: "¥12.00 more for ¥30.00 off \u2028"}}}}},
		"map": map[string]any{"z": 1, "a": []string{}, "m": nil, "f": 1.5, "big": int64(1) << 53, "html": "<a href='x'>"},
		"empty": struct {
			A []int          `json:"a"`
			B []int          `json:"b,omitempty"`
			C map[string]int `json:"c"`
			D *int           `json:"d,omitempty"`
		}{A: nil, B: nil, C: map[string]int{}},
	}
	f := jsonFormats()["application/json"]
	for name, v := range values {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		require.NoError(t, enc.Encode(v), name)
		var got bytes.Buffer
		require.NoError(t, f.Marshal(&got, v), name)
		require.Equal(t, want.String(), got.String(), name)
	}
}

// randomText is a string of characters encoding/json treats each its own way: plain and
// multi-byte ones, quotes and backslashes, control characters, <, > and &, U+2028 and U+2029,
// and invalid UTF-8.
func randomText(rng *rand.Rand) string {
	pieces := []string{"a", "Z", "9", " ", "é", "上海", "🎁", `"`, `\`, "\n", "\r", "\t", "\b", "\f", "\x00", "\x1f",
		"\x7f", "<", ">", "&", "\u2028", "\u2029", "\xff", "\xe2\x82", "¥12.00 more for ¥30.00 off"}
	var s strings.Builder
	for range rng.IntN(8) {
		s.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return s.String()
}

// randomAnswer is a qualification answer with every member empty, nil or set now and then.
func randomAnswer(rng *rand.Rand) qualifyAnswer {
	var a qualifyAnswer
	a.Amount = rng.Int64N(1<<40) - 1<<20
	if rng.IntN(8) > 0 {
		a.Coupons = []qualify.Outcome{}
	}
	for range rng.IntN(4) {
		o := qualify.Outcome{CouponID: randomText(rng), Template: randomText(rng), Type: randomText(rng),
			Applicable: rng.IntN(2) == 0, Discount: rng.Int64N(100000),
			ExpiresAt: time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)*int64(rng.IntN(2))).In(time.FixedZone("", 3600*(rng.IntN(5)-2)))}
		switch rng.IntN(3) {
		case 0:
			o.Split = []qualify.Share{}
		case 1:
			for range 1 + rng.IntN(3) {
				o.Split = append(o.Split, qualify.Share{Index: rng.IntN(500), SKU: randomText(rng), Discount: rng.Int64N(1000)})
			}
		}
		for range rng.IntN(3) {
			o.Reasons = append(o.Reasons, qualify.Reason{Code: randomText(rng), Message: randomText(rng),
				Shortfall: rng.Int64N(3) * rng.Int64N(5000)})
		}
		a.Coupons = append(a.Coupons, o)
	}
	pick := func() *qualify.Pick {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return &qualify.Pick{Discount: rng.Int64N(100)}
		}
		p := &qualify.Pick{CouponIDs: []string{}, Discount: rng.Int64N(100000)}
		for range rng.IntN(3) {
			p.CouponIDs = append(p.CouponIDs, randomText(rng))
		}
		return p
	}
	a.Best.Single, a.Best.Stack = pick(), pick()
	return a
}

// TestQualifyAnswerWritesWhatEncodingJSONWrites: the qualification answer, which writes its own
// JSON, writes byte for byte what encoding/json writes for it.
func TestQualifyAnswerWritesWhatEncodingJSONWrites(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seedtest.Seed(t), 9))
	f := jsonFormats()["application/json"]
	for range 3000 {
		a := randomAnswer(rng)
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		require.NoError(t, enc.Encode(a))
		var got bytes.Buffer
		require.NoError(t, f.Marshal(&got, a))
		require.Equal(t, want.String(), got.String())
	}
	late := qualifyAnswer{Result: qualify.Result{Coupons: []qualify.Outcome{{ExpiresAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}}}
	require.Error(t, json.NewEncoder(io.Discard).Encode(late))
	require.Error(t, f.Marshal(io.Discard, late), "a time encoding/json refuses is refused")
}

// releasingAnswer records when it is released, and what had been written by then.
type releasingAnswer struct {
	out      *bytes.Buffer
	released *string
}

func (a releasingAnswer) appendJSON(b []byte) ([]byte, error) {
	return append(b, `{"ok":true}`...), nil
}
func (a releasingAnswer) release() { *a.released = a.out.String() }

// TestAppendedAnswerIsReleasedOnceWritten: an answer that holds pooled memory gives it back only
// after its bytes are written.
func TestAppendedAnswerIsReleasedOnceWritten(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	released := "not released"
	require.NoError(t, jsonFormats()["application/json"].Marshal(&out, releasingAnswer{out: &out, released: &released}))
	require.Equal(t, "{\"ok\":true}\n", released)
}
