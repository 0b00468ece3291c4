package httpapi

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/coupon/qualify"
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
