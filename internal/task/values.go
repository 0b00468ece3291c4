package task

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// lookup reads a dotted path ("item.sku") in decoded JSON; nil when absent.
func lookup(data map[string]any, path string) any {
	var cur any = data
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[part]; !ok {
			return nil
		}
	}
	return cur
}

// distinctValue is the form a value takes in a distinct metric: strings as they are, integral
// numbers in decimal.
func distinctValue(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, v != "" && len(v) <= 256
	case int64:
		return strconv.FormatInt(v, 10), true
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1e15 {
			return strconv.FormatInt(int64(v), 10), true
		}
		return strconv.FormatFloat(v, 'g', -1, 64), true
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
