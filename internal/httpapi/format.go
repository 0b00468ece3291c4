package httpapi

import (
	"encoding/json"
	"io"

	"github.com/danielgtaylor/huma/v2"
	gojson "github.com/goccy/go-json"
)

// jsonFormats is huma's JSON format writing with github.com/goccy/go-json instead of encoding/json:
// the same output (tags, omitempty, Marshaler methods; no HTML escaping here) in about half the
// time, which matters for large answers such as a qualification of a whole wallet. Bodies are
// still read by encoding/json: goccy's decoder accepts some invalid JSON (leading zeros) and its
// error messages, which the problem details quote, are less precise.
func jsonFormats() map[string]huma.Format {
	f := huma.Format{
		Marshal: func(w io.Writer, v any) error {
			enc := gojson.NewEncoder(w)
			enc.SetEscapeHTML(false)
			return enc.Encode(v)
		},
		Unmarshal: json.Unmarshal,
	}
	return map[string]huma.Format{"application/json": f, "json": f}
}
