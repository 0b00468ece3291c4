// Package ids makes identifiers: sortable ULIDs behind a short type prefix, e.g. "mch_01J…".
package ids

import (
	"crypto/rand"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

var (
	mu      sync.Mutex
	entropy = ulid.Monotonic(rand.Reader, 0)
)

// New returns prefix + "_" + a new ULID taken at t. IDs made in one process are strictly increasing.
func New(prefix string, t time.Time) string {
	mu.Lock()
	id := ulid.MustNew(ulid.Timestamp(t), entropy)
	mu.Unlock()
	return prefix + "_" + strings.ToLower(id.String())
}

// Valid reports whether s looks like an id made by New with the given prefix.
func Valid(prefix, s string) bool {
	rest, ok := strings.CutPrefix(s, prefix+"_")
	if !ok {
		return false
	}
	_, err := ulid.ParseStrict(strings.ToUpper(rest))
	return err == nil
}

// Secret returns n random bytes encoded as lower-case base32 (no padding), for keys and tokens.
func Secret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("ids: crypto/rand failed: " + err.Error())
	}
	return strings.ToLower(encoding.EncodeToString(b))
}
