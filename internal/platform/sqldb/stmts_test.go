package sqldb_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// TestReaderStatementCache: reads through the reader's prepared statements see every committed
// write, concurrent readers share them, bad statements still report their errors, and the cache
// stays bounded while statements past its bound still run.
func TestReaderStatementCache(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, []sqldb.Migrations{set(t, "test", "migrations")}, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		count := func() int {
			var n int
			require.NoError(t, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM parents WHERE qty >= $1`, 0).Scan(&n))
			return n
		}
		for i := range 5 {
			require.Equal(t, i, count())
			require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO parents (id, name, qty) VALUES ($1, $2, 1)`,
					fmt.Sprint("p", i), fmt.Sprint("name", i))
				return err
			}))
		}
		require.Equal(t, 5, count(), "a cached statement sees the last commit")

		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				rows, err := db.Reader().Query(ctx, `SELECT id FROM parents WHERE qty = $1 ORDER BY id`, 1)
				if !assertNoError(t, err) {
					return
				}
				defer rows.Close()
				var ids []string
				for rows.Next() {
					var id string
					if !assertNoError(t, rows.Scan(&id)) {
						return
					}
					ids = append(ids, id)
				}
				if assertNoError(t, rows.Err()) && len(ids) != 5 {
					t.Errorf("read %d rows, want 5", len(ids))
				}
			})
		}
		wg.Wait()

		_, err := db.Reader().Query(ctx, `SELECT nope FROM parents`)
		require.Error(t, err)

		for i := range sqldb.MaxCachedStatements + 10 {
			var got int
			q := `SELECT ` + fmt.Sprint(i) + ` + COUNT(*) FROM parents` + strings.Repeat(" ", i%3)
			require.NoError(t, db.Reader().QueryRow(ctx, q).Scan(&got))
			require.Equal(t, i+5, got)
		}
		require.LessOrEqual(t, sqldb.CachedStatements(db), sqldb.MaxCachedStatements)
		if db.Dialect() == sqldb.SQLite {
			require.Equal(t, sqldb.MaxCachedStatements, sqldb.CachedStatements(db))
		}
	})
}

func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}
