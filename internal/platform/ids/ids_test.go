package ids

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewIsPrefixedAndIncreasing(t *testing.T) {
	t.Parallel()
	now := time.Now()
	prev := ""
	for range 1000 {
		id := New("mch", now)
		require.True(t, Valid("mch", id), id)
		require.False(t, Valid("key", id))
		require.Greater(t, id, prev)
		prev = id
	}
}

func TestValidRejectsGarbage(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "mch_", "mch_xyz", "mch01j0000000000000000000000", "mch_!!"} {
		require.False(t, Valid("mch", s), s)
	}
}

func TestSecret(t *testing.T) {
	t.Parallel()
	a, b := Secret(32), Secret(32)
	require.Len(t, a, 52)
	require.NotEqual(t, a, b)
}
