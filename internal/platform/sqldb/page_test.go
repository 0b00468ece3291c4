package sqldb_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	c := sqldb.EncodeCursor("2026-01-01", "id_1")
	parts, err := sqldb.DecodeCursor(c, 2)
	require.NoError(t, err)
	require.Equal(t, []string{"2026-01-01", "id_1"}, parts)
	parts, err = sqldb.DecodeCursor("", 2)
	require.NoError(t, err)
	require.Nil(t, parts)
	for _, bad := range []string{"!!", "bm90IGpzb24", sqldb.EncodeCursor("one")} {
		_, err := sqldb.DecodeCursor(bad, 2)
		require.ErrorIs(t, err, sqldb.ErrBadCursor, bad)
	}
}

func TestPageLimit(t *testing.T) {
	t.Parallel()
	require.Equal(t, sqldb.DefaultPageLimit, sqldb.PageLimit(0))
	require.Equal(t, 7, sqldb.PageLimit(7))
	require.Equal(t, sqldb.MaxPageLimit, sqldb.PageLimit(10_000))
}
