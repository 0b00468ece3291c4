package sqldb_test

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

//go:embed testdata
var testdata embed.FS

func set(t testing.TB, module, dir string) sqldb.Migrations {
	sub, err := fs.Sub(testdata, "testdata/"+dir)
	require.NoError(t, err)
	return sqldb.Migrations{Module: module, FS: sub}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, []sqldb.Migrations{set(t, "test", "migrations")}, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		insertParent := func(tx *sqldb.Tx, id, name string, qty int) error {
			_, err := tx.Exec(ctx, `INSERT INTO parents (id, name, qty) VALUES ($1, $2, $3)`, id, name, qty)
			return err
		}

		t.Run("CommitRunsHooksInOrder", func(t *testing.T) {
			var order []int
			err := db.Tx(ctx, func(tx *sqldb.Tx) error {
				tx.AfterCommit(func() { order = append(order, 1) })
				tx.AfterCommit(func() { order = append(order, 2) })
				return insertParent(tx, "p1", "one", 1)
			})
			require.NoError(t, err)
			require.Equal(t, []int{1, 2}, order)
			var name string
			require.NoError(t, db.Reader().QueryRow(ctx, `SELECT name FROM parents WHERE id = $1`, "p1").Scan(&name))
			require.Equal(t, "one", name)
		})

		t.Run("SavepointRollsBackWritesAndHooks", func(t *testing.T) {
			var ran []string
			boom := errors.New("boom")
			count := func(id string) (n int) {
				require.NoError(t, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM parents WHERE id = $1`, id).Scan(&n))
				return n
			}
			err := db.Tx(ctx, func(tx *sqldb.Tx) error {
				tx.AfterCommit(func() { ran = append(ran, "outer") })
				require.NoError(t, insertParent(tx, "sp-kept", "kept", 1))
				failed := tx.Savepoint(ctx, "sp_fails", func() error {
					tx.AfterCommit(func() { ran = append(ran, "failed") })
					require.NoError(t, insertParent(tx, "sp-gone", "gone", 1))
					// A savepoint nested in the failing one goes with it.
					require.NoError(t, tx.Savepoint(ctx, "sp_inner", func() error {
						tx.AfterCommit(func() { ran = append(ran, "inner") })
						return insertParent(tx, "sp-inner", "inner", 1)
					}))
					return boom
				})
				require.ErrorIs(t, failed, boom)
				require.NotErrorIs(t, failed, sqldb.ErrSavepoint)
				return tx.Savepoint(ctx, "sp_works", func() error {
					tx.AfterCommit(func() { ran = append(ran, "works") })
					return insertParent(tx, "sp-works", "works", 1)
				})
			})
			require.NoError(t, err)
			require.Equal(t, []string{"outer", "works"}, ran)
			require.Equal(t, 1, count("sp-kept"))
			require.Equal(t, 1, count("sp-works"))
			require.Zero(t, count("sp-gone"))
			require.Zero(t, count("sp-inner"))
			err = db.Tx(ctx, func(tx *sqldb.Tx) error {
				return tx.Savepoint(ctx, "bad name; DROP TABLE parents", func() error { return nil })
			})
			require.ErrorIs(t, err, sqldb.ErrSavepoint)
		})

		t.Run("RollbackSkipsHooksAndWrites", func(t *testing.T) {
			ran := false
			boom := errors.New("boom")
			err := db.Tx(ctx, func(tx *sqldb.Tx) error {
				tx.AfterCommit(func() { ran = true })
				require.NoError(t, insertParent(tx, "p2", "two", 1))
				return boom
			})
			require.ErrorIs(t, err, boom)
			require.False(t, ran)
			err = db.Reader().QueryRow(ctx, `SELECT name FROM parents WHERE id = $1`, "p2").Scan(new(string))
			require.ErrorIs(t, err, sqldb.SQLNoRows)
		})

		t.Run("Classification", func(t *testing.T) {
			err := db.Tx(ctx, func(tx *sqldb.Tx) error { return insertParent(tx, "p3", "one", 1) })
			require.ErrorIs(t, err, sqldb.ErrUnique)
			require.NotErrorIs(t, err, sqldb.ErrForeignKey)
			err = db.Tx(ctx, func(tx *sqldb.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO children (id, parent_id, at_us) VALUES ($1, $2, $3)`, "c1", "nope", 0)
				return err
			})
			require.ErrorIs(t, err, sqldb.ErrForeignKey)
			err = db.Tx(ctx, func(tx *sqldb.Tx) error { return insertParent(tx, "p4", "four", -1) })
			require.ErrorIs(t, err, sqldb.ErrCheck)
		})

		t.Run("TimesRoundTrip", func(t *testing.T) {
			at := time.Date(2026, 11, 21, 8, 30, 0, 123456000, time.UTC)
			require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO children (id, parent_id, at_us) VALUES ($1, $2, $3)`, "c2", "p1", sqldb.Micros(at))
				return err
			}))
			var us int64
			require.NoError(t, db.Replica().QueryRow(ctx, `SELECT at_us FROM children WHERE id = $1`, "c2").Scan(&us))
			require.True(t, at.Equal(sqldb.FromMicros(us)))
		})

		t.Run("ConcurrentWritersSerialise", func(t *testing.T) {
			require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error { return insertParent(tx, "ctr", "counter", 0) }))
			var wg sync.WaitGroup
			for range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := db.Tx(ctx, func(tx *sqldb.Tx) error {
						_, err := tx.Exec(ctx, `UPDATE parents SET qty = qty + 1 WHERE id = $1`, "ctr")
						return err
					})
					require.NoError(t, err)
				}()
			}
			wg.Wait()
			var qty int
			require.NoError(t, db.Reader().QueryRow(ctx, `SELECT qty FROM parents WHERE id = $1`, "ctr").Scan(&qty))
			require.Equal(t, 20, qty)
		})

		t.Run("PendingAndMigrate", func(t *testing.T) {
			sets := []sqldb.Migrations{set(t, "test", "migrations"), set(t, "more", "more")}
			pending, err := db.Pending(ctx, sets)
			require.NoError(t, err)
			require.Equal(t, []string{"more/0001_extra.sql"}, pending)
			var lines []string
			require.NoError(t, db.Migrate(ctx, sets, func(l string) { lines = append(lines, l) }))
			require.Len(t, lines, 1)
			require.Contains(t, lines[0], "more/0001_extra.sql")
			pending, err = db.Pending(ctx, sets)
			require.NoError(t, err)
			require.Empty(t, pending)
		})
	})
}

func TestPlaceholders(t *testing.T) {
	t.Parallel()
	require.Equal(t, "$3, $4, $5", sqldb.Placeholders(3, 3))
	require.Equal(t, "", sqldb.Placeholders(1, 0))
	require.Equal(t, "$3, $4", sqldb.Postgres.Placeholders(3, 2))
	require.Equal(t, "?, ?, ?", sqldb.SQLite.Placeholders(3, 3))
	require.Equal(t, "", sqldb.SQLite.Placeholders(1, 0))
	require.Equal(t, "$7", sqldb.Postgres.Placeholder(7))
	require.Equal(t, "?", sqldb.SQLite.Placeholder(7))
	require.Equal(t, "($1, $2), ($3, $4)", sqldb.Postgres.Tuples(2, 2))
	require.Equal(t, "(?, ?, ?)", sqldb.SQLite.Tuples(1, 3))
	require.Equal(t, " FOR UPDATE", sqldb.Postgres.ForUpdate())
	require.Equal(t, "", sqldb.SQLite.ForUpdate())
}

func TestSQLiteFileIsPrivate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "perk.db")
	db, err := sqldb.Open(context.Background(), sqldb.Options{SQLitePath: path})
	require.NoError(t, err)
	defer db.Close()
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
}

func TestOpenRejectsBadURL(t *testing.T) {
	t.Parallel()
	_, err := sqldb.Open(context.Background(), sqldb.Options{URL: "mysql://root:secret@x/db"})
	require.Error(t, err)
	require.Contains(t, err.Error(), "not a postgres:// URL")
	require.NotContains(t, err.Error(), "secret")
}

// TestSQLitePageCaches checks the page caches and the in-memory statement journals each SQLite
// connection opens with: the defaults, then sizes from the options.
func TestSQLitePageCaches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		opts           sqldb.Options
		writer, reader int64
	}{
		{sqldb.Options{}, -sqldb.DefaultCacheMiB * 1024, -sqldb.DefaultReadCacheMiB * 1024},
		{sqldb.Options{CacheMiB: 3, ReadCacheMiB: 5}, -3 * 1024, -5 * 1024},
	} {
		tc.opts.SQLitePath = filepath.Join(t.TempDir(), "perk.db")
		db, err := sqldb.Open(ctx, tc.opts)
		require.NoError(t, err)
		var writer, reader, temp int64
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			if err := tx.QueryRow(ctx, `PRAGMA cache_size`).Scan(&writer); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `PRAGMA temp_store`).Scan(&temp)
		}))
		require.NoError(t, db.Reader().QueryRow(ctx, `PRAGMA cache_size`).Scan(&reader))
		require.NoError(t, db.Close())
		require.Equal(t, tc.writer, writer)
		require.Equal(t, tc.reader, reader)
		require.Equal(t, int64(2), temp, "temp_store=MEMORY")
	}
}

// TestSQLiteCheckpointsInBackground checks who checkpoints the write-ahead log. By default a
// connection of its own copies committed pages into the database file while the writer keeps a
// far higher auto-checkpoint; with a negative interval the writer checkpoints itself at SQLite's
// default and nothing runs in the background.
func TestSQLiteCheckpointsInBackground(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		interval   time.Duration
		autoWriter int64
	}{
		{10 * time.Millisecond, 10_000},
		{-1, 1000},
	} {
		db, err := sqldb.Open(ctx, sqldb.Options{SQLitePath: filepath.Join(t.TempDir(), "perk.db"),
			CheckpointInterval: tc.interval})
		require.NoError(t, err)
		var auto int64
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			if _, err := tx.Exec(ctx, `CREATE TABLE t (v INTEGER)`); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `PRAGMA wal_autocheckpoint`).Scan(&auto)
		}))
		require.Equal(t, tc.autoWriter, auto)
		for i := range 20 {
			require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO t (v) VALUES ($1)`, i)
				return err
			}))
		}
		if tc.interval > 0 {
			// Every frame the writer appended gets copied, without the writer reaching its own
			// auto-checkpoint.
			require.Eventually(t, func() bool {
				s := db.CheckpointStats()
				return s.WALFrames >= 20 && s.Backlog == 0
			}, 5*time.Second, 5*time.Millisecond)
			require.Zero(t, db.CheckpointStats().Errors)
		} else {
			time.Sleep(50 * time.Millisecond)
			require.Equal(t, sqldb.CheckpointStats{}, db.CheckpointStats())
		}
		var n int
		require.NoError(t, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM t`).Scan(&n))
		require.Equal(t, 20, n)
		require.NoError(t, db.Close())
	}
}
