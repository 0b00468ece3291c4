package httpapi

import (
	"encoding/json"
	"io"
	"sync"

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
			if a, ok := v.(jsonAppender); ok {
				return writeAppended(w, a)
			}
			enc := gojson.NewEncoder(w)
			enc.SetEscapeHTML(false)
			return enc.Encode(v)
		},
		Unmarshal: json.Unmarshal,
	}
	return map[string]huma.Format{"application/json": f, "json": f}
}

// releaser is an answer that gives back the memory it references once it is written.
type releaser interface{ release() }

// appendBuffers are the buffers answers that write their own JSON write it into.
var appendBuffers = sync.Pool{New: func() any { return new([]byte) }}

// writeAppended writes an answer that writes its own JSON, with the newline encoding/json's
// Encoder ends with, in one Write.
func writeAppended(w io.Writer, a jsonAppender) error {
	buf := appendBuffers.Get().(*[]byte)
	b, err := a.appendJSON((*buf)[:0])
	if err != nil {
		appendBuffers.Put(buf)
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	if r, ok := a.(releaser); ok {
		r.release() // what the answer referenced is written: its memory may serve the next one
	}
	if cap(b) <= 1<<20 { // a rare huge answer is not kept
		*buf = b
		appendBuffers.Put(buf)
	}
	return err
}
