package task

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/perkhq/perk/internal/platform/problem"
)

var timeType = reflect.TypeFor[time.Time]()

// checkShape walks the JSON value raw against the Go type t and records, with its path, every
// unknown member and every value of the wrong JSON type, so that decoding afterwards cannot fail
// and a bad spec gets one precise problem per field. It reports whether raw fits.
func checkShape(fs *problem.Fields, path string, raw json.RawMessage, t reflect.Type) bool {
	raw = bytes.TrimSpace(raw)
	if t.Kind() == reflect.Pointer {
		if string(raw) == "null" {
			return true
		}
		return checkShape(fs, path, raw, t.Elem())
	}
	if t == timeType {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			fs.Add(path, "must be an RFC 3339 time")
			return false
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			fs.Add(path, "must be an RFC 3339 time")
			return false
		}
		return true
	}
	switch t.Kind() {
	case reflect.Struct:
		return checkStruct(fs, path, raw, t)
	case reflect.Slice:
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			fs.Add(path, "must be an array")
			return false
		}
		ok := true
		for i, it := range items {
			ok = checkShape(fs, fmt.Sprintf("%s[%d]", path, i), it, t.Elem()) && ok
		}
		return ok
	case reflect.Map:
		var members map[string]json.RawMessage
		if json.Unmarshal(raw, &members) != nil || string(raw) == "null" {
			fs.Add(path, "must be an object")
			return false
		}
		ok := true
		for _, k := range sortedKeys(members) {
			ok = checkShape(fs, path+"."+k, members[k], t.Elem()) && ok
		}
		return ok
	}
	return checkScalar(fs, path, raw, t)
}

func checkStruct(fs *problem.Fields, path string, raw json.RawMessage, t reflect.Type) bool {
	var members map[string]json.RawMessage
	if json.Unmarshal(raw, &members) != nil || string(raw) == "null" {
		fs.Add(path, "must be an object")
		return false
	}
	fields := jsonFields(t)
	ok := true
	for _, k := range sortedKeys(members) {
		f, known := fields[k]
		if !known {
			fs.Add(path+"."+k, "unknown field")
			ok = false
			continue
		}
		ok = checkShape(fs, path+"."+k, members[k], f) && ok
	}
	return ok
}

func checkScalar(fs *problem.Fields, path string, raw json.RawMessage, t reflect.Type) bool {
	if string(raw) == "null" {
		return true
	}
	switch t.Kind() {
	case reflect.String:
		var s string
		if json.Unmarshal(raw, &s) != nil {
			fs.Add(path, "must be a string")
			return false
		}
	case reflect.Bool:
		var b bool
		if json.Unmarshal(raw, &b) != nil {
			fs.Add(path, "must be a boolean")
			return false
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		var n int64
		if json.Unmarshal(raw, &n) != nil {
			fs.Add(path, "must be an integer")
			return false
		}
	default:
		dst := reflect.New(t).Interface()
		if json.Unmarshal(raw, dst) != nil {
			fs.Add(path, "has the wrong type")
			return false
		}
	}
	return true
}

// jsonFields maps the JSON member names of struct type t to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
