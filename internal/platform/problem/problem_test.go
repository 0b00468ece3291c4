package problem

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestErrorChain(t *testing.T) {
	t.Parallel()
	cause := errors.New("disk on fire")
	err := fmt.Errorf("grant: %w", NotFound("grant %s", "g1").Wrap(cause))
	e, ok := As(err)
	require.True(t, ok)
	require.Equal(t, KindNotFound, e.Kind)
	require.Equal(t, "not-found", e.Slug())
	require.True(t, Is(err, KindNotFound))
	require.False(t, Is(err, KindConflict))
	require.ErrorIs(t, err, cause)
	require.False(t, Is(errors.New("plain"), KindInternal))
}

func TestFields(t *testing.T) {
	t.Parallel()
	var fs Fields
	require.NoError(t, fs.Err("bad"))
	fs.Add("body.amount", "must be positive, got %d", -1)
	fs.Add("body.asset", "unknown asset %q", "gold")
	err := fs.Err("the grant is invalid")
	e, ok := As(err)
	require.True(t, ok)
	require.Equal(t, KindInvalid, e.Kind)
	require.Len(t, e.Fields, 2)
	require.Contains(t, err.Error(), "body.asset: unknown asset \"gold\"")
}

func TestCodeAndExtensions(t *testing.T) {
	t.Parallel()
	e := Conflict("only %d left", 3).WithCode("insufficient-balance").With("available", 3)
	require.Equal(t, "insufficient-balance", e.Slug())
	require.Equal(t, 3, e.Extensions["available"])
}
