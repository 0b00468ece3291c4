package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// DecodeJSON decodes JSON for use as a variable's value. Unlike plain
// encoding/json, integral numbers become int64 (float64 otherwise), so that
// integer arithmetic such as `event.amount + 1` works; perk's amounts are
// integers in minor units.
func DecodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("rules: unexpected data after the JSON value")
	}
	return numbers(v)
}

// numbers replaces every json.Number in v with an int64 or a float64.
func numbers(v any) (any, error) {
	var err error
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		return v.Float64()
	case map[string]any:
		for k, e := range v {
			if v[k], err = numbers(e); err != nil {
				return nil, err
			}
		}
	case []any:
		for i, e := range v {
			if v[i], err = numbers(e); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}
