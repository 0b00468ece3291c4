package sqldb_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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
				if !assert.NoError(t, err) {
					return
				}
				defer rows.Close()
				var ids []string
				for rows.Next() {
					var id string
					if !assert.NoError(t, rows.Scan(&id)) {
						return
					}
					ids = append(ids, id)
				}
				if assert.NoError(t, rows.Err()) && len(ids) != 5 {
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

// TestWriterStatementCache: statements a transaction runs with Exec and QueryRow are prepared on
// the writer after it (SQLite) and reused by later transactions with the same results; a panic
// or a rollback in a transaction does not hang the preparation; the same text read with Query
// while Exec runs it again does not disturb the rows being read.
func TestWriterStatementCache(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, []sqldb.Migrations{set(t, "test", "migrations")}, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		insert := `INSERT INTO parents (id, name, qty) VALUES ($1, $2, $3)`
		sum := `SELECT COALESCE(SUM(qty), 0) FROM parents`
		for i := range 20 {
			require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
				if _, err := tx.Exec(ctx, insert, fmt.Sprint("p", i), fmt.Sprint("n", i), i); err != nil {
					return err
				}
				var got int
				if err := tx.QueryRow(ctx, sum).Scan(&got); err != nil {
					return err
				}
				if want := i * (i + 1) / 2; got != want {
					return fmt.Errorf("sum %d, want %d", got, want)
				}
				return nil
			}))
		}
		if db.Dialect() == sqldb.SQLite {
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				require.Equal(c, 2, sqldb.WriterStatements(db), "both statements are prepared once")
			}, 10*time.Second, 5*time.Millisecond)
		} else {
			require.Zero(t, sqldb.WriterStatements(db), "PostgreSQL's driver caches its own")
		}

		// A unique violation through a cached statement is classified and rolls back.
		err := db.Tx(ctx, func(tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, insert, "p0", "dup", 1)
			return err
		})
		require.ErrorIs(t, err, sqldb.ErrUnique)

		// A panic in a transaction that met a new statement: rolled back, and the next one runs.
		require.Panics(t, func() {
			_ = db.Tx(ctx, func(tx *sqldb.Tx) error {
				if _, err := tx.Exec(ctx, `UPDATE parents SET qty = qty + 1 WHERE id = $1`, "p1"); err != nil {
					return err
				}
				panic("boom")
			})
		})
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE parents SET qty = qty + 1 WHERE id = $1`, "p1")
			return err
		}))

		// Rows being read are not reset by the same text run again with Exec (SQLite: PostgreSQL
		// takes one statement at a time per connection anyway).
		if db.Dialect() != sqldb.SQLite {
			return
		}
		update := `UPDATE parents SET qty = qty + 0 WHERE id = $1`
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error { _, err := tx.Exec(ctx, update, "p2"); return err }))
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			rows, err := tx.Query(ctx, `SELECT id FROM parents ORDER BY id`)
			if err != nil {
				return err
			}
			defer rows.Close()
			n := 0
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, update, id); err != nil {
					return err
				}
				n++
			}
			if n != 20 {
				return fmt.Errorf("read %d rows, want 20", n)
			}
			return rows.Err()
		}))
		var total int
		require.NoError(t, db.Reader().QueryRow(ctx, sum).Scan(&total))
		require.Equal(t, 190+1, total)
	})
}

// TestPreparedStatementsServeTransactions: statements a service prepares at start are kept on
// SQLite's writer (nothing on PostgreSQL), and a transaction's Query, Exec and QueryRow of them see
// the transaction's own writes and classify their errors; on SQLite a bad statement refuses to
// prepare.
func TestPreparedStatementsServeTransactions(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, []sqldb.Migrations{set(t, "test", "migrations")}, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		d := db.Dialect()
		insert := `INSERT INTO parents (id, name, qty) VALUES ` + d.Tuples(2, 3) + ` RETURNING id`
		read := `SELECT COUNT(*) FROM parents WHERE qty = ` + d.Placeholder(1)
		before := sqldb.WriterStatements(db)
		require.NoError(t, db.Prepare(ctx, insert, read))
		if d == sqldb.SQLite {
			require.Equal(t, before+2, sqldb.WriterStatements(db))
			require.Error(t, db.Prepare(ctx, `SELEC nothing`), "a bad statement is refused at start")
		} else {
			require.Zero(t, sqldb.WriterStatements(db))
		}

		require.ErrorIs(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			rows, err := tx.Query(ctx, insert, "a", "A", 7, "b", "B", 7)
			require.NoError(t, err)
			var ids []string
			for rows.Next() {
				var id string
				require.NoError(t, rows.Scan(&id))
				ids = append(ids, id)
			}
			require.NoError(t, rows.Err())
			require.NoError(t, rows.Close())
			require.ElementsMatch(t, []string{"a", "b"}, ids)
			var n int
			require.NoError(t, tx.QueryRow(ctx, read, 7).Scan(&n))
			require.Equal(t, 2, n, "the transaction sees its own rows")
			_, err = tx.Query(ctx, insert, "a", "A", 7, "c", "C", 7)
			require.ErrorIs(t, err, sqldb.ErrUnique, "errors of prepared statements are classified")
			return errUndo
		}), errUndo)
	})
}

// errUndo rolls a test's transaction back.
var errUndo = errors.New("undo")

// TestChunkRows: SQLite takes the largest power of two of the rows left (at most max), so a few
// statement texts serve every batch; PostgreSQL takes as many as fit.
func TestChunkRows(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ n, max, sqlite, postgres int }{
		{1, 512, 1, 1}, {3, 512, 2, 3}, {8, 512, 8, 8}, {511, 512, 256, 511}, {700, 512, 512, 512}, {700, 500, 256, 500},
	} {
		require.Equal(t, tc.sqlite, sqldb.SQLite.ChunkRows(tc.n, tc.max), "%+v", tc)
		require.Equal(t, tc.postgres, sqldb.Postgres.ChunkRows(tc.n, tc.max), "%+v", tc)
	}
}
