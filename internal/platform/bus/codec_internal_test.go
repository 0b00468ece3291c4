package bus

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/stretchr/testify/require"
)

// TestEnvelopesEncodeLikeEncodingJSON: the envelopes are written with goccy/go-json for speed;
// what it writes is byte for byte what encoding/json writes, and what does not parse as an
// envelope is refused.
func TestEnvelopesEncodeLikeEncodingJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 21, 8, 30, 0, 123456789, time.UTC)
	for _, v := range []any{
		Event{ID: "evt_1", Type: "grant.succeeded", TenantID: "mch_<a>", UserID: "u&1", SourceKind: "grant",
			SourceID: "grt_1", Time: at, Data: json.RawMessage(`{ "steps": [ {"name": "points"} ], "n": 1e3 }`)},
		Event{ID: "evt_2", Type: "coupon.issued", TenantID: "mch_a", Time: at},
		Behaviour{TenantID: "mch_a", ID: "e1", Source: "shop", Type: "order.paid", UserID: "u1", Time: at,
			ReceivedAt: at.Add(time.Second), Data: json.RawMessage(`{"amount":5000,"note":"\u2028<b>"}`)},
	} {
		want, err := json.Marshal(v)
		require.NoError(t, err)
		got, err := gojson.Marshal(v)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
	e, err := DecodeEvent(Msg{ID: "m1", Data: []byte(`{"id":"evt_1","type":"grant.succeeded","tenant_id":"t","data":{"a":1}}`)})
	require.NoError(t, err)
	require.JSONEq(t, `{"a":1}`, string(e.Data))
	for _, bad := range []string{`{not json`, `{"id":"x"}`, ``, `[1,2]`} {
		_, err := DecodeEvent(Msg{ID: "m2", Data: []byte(bad)})
		require.Error(t, err, bad)
	}
}

func TestValidBehaviourType(t *testing.T) {
	t.Parallel()
	for typ, want := range map[string]bool{
		"checkin": true, "order.paid": true, "a_b.c2": true, "x": true,
		"": false, "Order.Paid": false, "order..paid": false, ".x": false, "x.": false, "shop/checkin": false,
		"2fa": false, "check in": false, "order-paid": false,
		"a" + strings.Repeat("b", MaxBehaviourTypeLen-1): true,
		strings.Repeat("b", MaxBehaviourTypeLen+1):       false,
	} {
		require.Equal(t, want, ValidBehaviourType(typ), typ)
	}
}
