package idem_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/idem"
	"github.com/perkhq/perk/internal/platform/problem"
)

func TestParseKeyHeader(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", idem.MaxKeyLength)
	for _, tc := range []struct {
		in   string
		want string
	}{
		{`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, "8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{`8e03978e-40d5-43e8-bc93-6894a57f9324`, "8e03978e-40d5-43e8-bc93-6894a57f9324"}, // lenient
		{`  "with space inside"  `, "with space inside"},
		{`"esc\"aped"`, `esc"aped`},
		{`"k";param=1`, "k"},
		{`token-key`, "token-key"},
		{`order:42/x`, "order:42/x"},
		{`"` + long + `"`, long},
	} {
		got, err := idem.ParseKeyHeader(tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
	for _, in := range []string{``, `""`, `   `, `"unterminated`, `two words`, `a,b`, `tok;p=1`,
		`"` + long + `k"`, "\"caf\u00e9\""} {
		_, err := idem.ParseKeyHeader(in)
		require.Error(t, err, in)
		p, ok := problem.As(err)
		require.True(t, ok, in)
		require.Equal(t, problem.KindBadRequest, p.Kind, in)
		require.Equal(t, idem.CodeKeyInvalid, p.Code, in)
	}
}

func TestCheckKeyExpr(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{
		`request.body.order_id`,
		`request.headers["x-order"]`,
		`request.method + ":" + request.path`,
		`string(request.body.amount)`,
		`size(request.query)`,
	} {
		require.NoError(t, idem.CheckKeyExpr(ok), ok)
	}
	for _, bad := range []string{
		`request.`,
		`nope.order_id`,
		`request.body.order_id == 1`, // bool
		`[request.path]`,             // list
	} {
		require.Error(t, idem.CheckKeyExpr(bad), bad)
	}
}
