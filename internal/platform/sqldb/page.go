package sqldb

import (
	"encoding/base64"
	"encoding/json"
	"errors"
)

// Page limits.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 200
)

// ErrBadCursor is returned for a cursor that was not made by EncodeCursor.
var ErrBadCursor = errors.New("sqldb: malformed cursor")

// PageLimit clamps a requested page size: 0 means the default, more than the maximum means the maximum.
func PageLimit(limit int) int {
	switch {
	case limit <= 0:
		return DefaultPageLimit
	case limit > MaxPageLimit:
		return MaxPageLimit
	}
	return limit
}

// EncodeCursor makes an opaque cursor from the sort key of the last row of a page.
func EncodeCursor(parts ...string) string {
	b, _ := json.Marshal(parts)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reverses EncodeCursor; an empty cursor decodes to no parts. want is the number of
// parts a valid cursor has.
func DecodeCursor(cursor string, want int) ([]string, error) {
	if cursor == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return nil, ErrBadCursor
	}
	var parts []string
	if err := json.Unmarshal(b, &parts); err != nil || len(parts) != want {
		return nil, ErrBadCursor
	}
	return parts, nil
}
