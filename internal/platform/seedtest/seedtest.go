// Package seedtest seeds randomised tests reproducibly: a fresh seed per run, logged, and replayed
// from PERK_TEST_SEED.
package seedtest

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// Seed returns the seed of a random test, from PERK_TEST_SEED when set (else the clock), and logs
// it with the command that replays it.
func Seed(t testing.TB) uint64 {
	t.Helper()
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("PERK_TEST_SEED"); v != "" {
		var err error
		if s, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("PERK_TEST_SEED=%q: %v", v, err)
		}
	}
	t.Logf("seed %d (PERK_TEST_SEED=%d replays it)", s, s)
	return s
}
