package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// DiffOp is what happened at one path.
type DiffOp string

// The diff operations.
const (
	DiffAdd    DiffOp = "add"
	DiffRemove DiffOp = "remove"
	DiffChange DiffOp = "change"
)

// DiffEntry is one changed path between two specs. Path is a JSON pointer (RFC 6901) into the spec;
// Old is absent for an add, New for a remove.
type DiffEntry struct {
	Op   DiffOp          `json:"op"`
	Path string          `json:"path"`
	Old  json.RawMessage `json:"old,omitempty"`
	New  json.RawMessage `json:"new,omitempty"`
}

// diffSpecs compares two JSON documents structurally: objects by member, arrays by index, anything
// else by value. A nil document counts as an empty object. Entries come in path order.
func diffSpecs(old, new json.RawMessage) ([]DiffEntry, error) {
	a, err := decodeDoc(old)
	if err != nil {
		return nil, err
	}
	b, err := decodeDoc(new)
	if err != nil {
		return nil, err
	}
	d := differ{out: []DiffEntry{}}
	if err := d.walk("", a, b); err != nil {
		return nil, err
	}
	return d.out, nil
}

func decodeDoc(doc json.RawMessage) (any, error) {
	if len(doc) == 0 {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("catalog: diff: %w", err)
	}
	return v, nil
}

type differ struct{ out []DiffEntry }

func (d *differ) walk(path string, a, b any) error {
	switch av := a.(type) {
	case map[string]any:
		if bv, ok := b.(map[string]any); ok {
			return d.objects(path, av, bv)
		}
	case []any:
		if bv, ok := b.([]any); ok {
			return d.arrays(path, av, bv)
		}
	default:
		if scalarEqual(a, b) {
			return nil
		}
	}
	return d.emit(DiffChange, path, a, b)
}

func (d *differ) objects(path string, a, b map[string]any) error {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := path + "/" + escapePointer(k)
		av, inA := a[k]
		bv, inB := b[k]
		var err error
		switch {
		case !inA:
			err = d.emit(DiffAdd, p, nil, bv)
		case !inB:
			err = d.emit(DiffRemove, p, av, nil)
		default:
			err = d.walk(p, av, bv)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *differ) arrays(path string, a, b []any) error {
	for i := range max(len(a), len(b)) {
		p := path + "/" + strconv.Itoa(i)
		var err error
		switch {
		case i >= len(a):
			err = d.emit(DiffAdd, p, nil, b[i])
		case i >= len(b):
			err = d.emit(DiffRemove, p, a[i], nil)
		default:
			err = d.walk(p, a[i], b[i])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *differ) emit(op DiffOp, path string, a, b any) error {
	e := DiffEntry{Op: op, Path: path}
	var err error
	if op != DiffAdd {
		if e.Old, err = encodeValue(a); err != nil {
			return err
		}
	}
	if op != DiffRemove {
		if e.New, err = encodeValue(b); err != nil {
			return err
		}
	}
	d.out = append(d.out, e)
	return nil
}

// scalarEqual compares two decoded scalars (strings, json.Number, bools, nil). Numbers compare by
// their text: 1 and 1.0 differ.
func scalarEqual(a, b any) bool {
	switch a.(type) {
	case map[string]any, []any:
		return false
	}
	switch b.(type) {
	case map[string]any, []any:
		return false
	}
	return a == b
}

func encodeValue(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("catalog: diff: %w", err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// escapePointer escapes one JSON pointer reference token.
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
