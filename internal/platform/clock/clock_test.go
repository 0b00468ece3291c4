package clock

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFake(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	f := NewFake(start)
	require.Equal(t, time.UTC, f.Now().Location())
	require.True(t, f.Now().Equal(start))
	f.Advance(time.Hour)
	require.True(t, f.Now().Equal(start.Add(time.Hour)))
	f.Set(start)
	require.True(t, f.Now().Equal(start))
}

func TestRealIsUTC(t *testing.T) {
	t.Parallel()
	require.Equal(t, time.UTC, Real{}.Now().Location())
}
