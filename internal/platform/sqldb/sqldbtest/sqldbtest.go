// Package sqldbtest is the storage conformance harness: it runs one test function against SQLite
// and against PostgreSQL, each on a fresh database (a temp file) or schema.
package sqldbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

// DefaultPostgresURL is used when PERK_TEST_POSTGRES_URL is not set.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// PostgresURL is the server the tests use.
func PostgresURL() string {
	if u := os.Getenv("PERK_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// Dialects lists the engines every store is tested on.
var Dialects = []sqldb.Dialect{sqldb.SQLite, sqldb.Postgres}

// Run runs fn once per engine as parallel subtests named "sqlite" and "postgres", each with its own
// fresh database migrated with sets.
func Run(t *testing.T, sets []sqldb.Migrations, fn func(t *testing.T, db *sqldb.DB)) {
	t.Helper()
	for _, d := range Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			fn(t, Open(t, d, sets))
		})
	}
}

// Open returns a fresh, migrated database of the given engine, removed when the test ends.
func Open(t testing.TB, d sqldb.Dialect, sets []sqldb.Migrations) *sqldb.DB {
	t.Helper()
	opts := Options(t, d)
	ctx := context.Background()
	db, err := sqldb.Open(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, db.Migrate(ctx, sets, nil))
	return db
}

// Options returns connection options for a fresh, empty database of the given engine: a new file
// in a temp dir for SQLite, a new schema for PostgreSQL (dropped when the test ends).
func Options(t testing.TB, d sqldb.Dialect) sqldb.Options {
	t.Helper()
	if d == sqldb.SQLite {
		return sqldb.Options{SQLitePath: filepath.Join(t.TempDir(), "perk.db")}
	}
	return sqldb.Options{URL: FreshSchema(t), MaxOpenConns: 8}
}

var pgCheck struct {
	once sync.Once
	err  error
}

// FreshSchema creates a uniquely named schema on the test PostgreSQL server and returns a URL whose
// search_path points at it. The schema is dropped when the test ends. A server that does not answer
// fails the test with a precise message.
func FreshSchema(t testing.TB) string {
	t.Helper()
	base := PostgresURL()
	admin, err := sql.Open("pgx", base)
	require.NoError(t, err)
	defer admin.Close()
	pgCheck.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pgCheck.err = admin.PingContext(ctx)
	})
	if pgCheck.err != nil {
		t.Fatalf("PostgreSQL is required for the store tests and did not answer at %s: %v "+
			"(start it, or set PERK_TEST_POSTGRES_URL)", base, pgCheck.err)
	}
	schema := "t_" + randomHex(8)
	_, err = admin.Exec("CREATE SCHEMA " + schema)
	require.NoError(t, err)
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
	})
	u, err := url.Parse(base)
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("sqldbtest: %v", err))
	}
	return hex.EncodeToString(b)
}

// FreshDatabase creates a uniquely named database on the test PostgreSQL server (for tools such as
// pgbench that want a whole database) and returns its URL. It is dropped when the test ends.
func FreshDatabase(t testing.TB) string {
	t.Helper()
	base := PostgresURL()
	admin, err := sql.Open("pgx", base)
	require.NoError(t, err)
	defer admin.Close()
	name := "perk_t_" + randomHex(6)
	_, err = admin.Exec("CREATE DATABASE " + name)
	require.NoError(t, err, "create database (is PostgreSQL up at %s?)", base)
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u, err := url.Parse(base)
	require.NoError(t, err)
	u.Path = "/" + name
	return u.String()
}
