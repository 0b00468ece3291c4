package rules

import (
	"cel.dev/cel-go/cel"
)

// Type describes the CEL type of a declared variable or of an expression's
// result. The zero Type is treated as DynType.
type Type struct {
	t *cel.Type
}

// The types that environments declare and that Compile can require.
var (
	// DynType is any value; its type is checked at run time.
	DynType = Type{cel.DynType}
	// BoolType is a bool.
	BoolType = Type{cel.BoolType}
	// IntType is a signed 64-bit integer.
	IntType = Type{cel.IntType}
	// UintType is an unsigned 64-bit integer.
	UintType = Type{cel.UintType}
	// DoubleType is a 64-bit float.
	DoubleType = Type{cel.DoubleType}
	// StringType is a UTF-8 string.
	StringType = Type{cel.StringType}
	// BytesType is a byte sequence.
	BytesType = Type{cel.BytesType}
	// TimestampType is a point in time (time.Time in Go).
	TimestampType = Type{cel.TimestampType}
	// DurationType is a span of time (time.Duration in Go).
	DurationType = Type{cel.DurationType}
	// ListType is a list of any values, the usual type of JSON arrays.
	ListType = ListOf(DynType)
	// MapType is a map from string to any value, the usual type of JSON
	// objects such as events and user profiles.
	MapType = MapOf(StringType, DynType)
)

// ListOf returns the type of a list whose elements have type elem.
func ListOf(elem Type) Type {
	return Type{cel.ListType(elem.cel())}
}

// MapOf returns the type of a map with keys of type key and values of type val.
func MapOf(key, val Type) Type {
	return Type{cel.MapType(key.cel(), val.cel())}
}

// String returns the CEL spelling of the type, e.g. "map(string, dyn)".
func (t Type) String() string {
	return t.cel().String()
}

func (t Type) cel() *cel.Type {
	if t.t == nil {
		return cel.DynType
	}
	return t.t
}

// accepts reports whether a value whose static type is got may be used where
// the type want is required. Dyn on either side is accepted: it is checked
// again at run time.
func accepts(want, got *cel.Type) bool {
	if want.IsDyn() || got.IsDyn() {
		return !got.IsErrOrUnknown()
	}
	if want.Kind() != got.Kind() || want.TypeName() != got.TypeName() {
		return false
	}
	wp, gp := want.Parameters(), got.Parameters()
	if len(wp) != len(gp) {
		return false
	}
	for i := range wp {
		if !accepts(wp[i], gp[i]) {
			return false
		}
	}
	return true
}
