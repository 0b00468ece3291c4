// Package sqldb is perk's storage kernel: one API over embedded SQLite (modernc, WAL, one writer
// connection and a reader pool) and PostgreSQL (pgx). Stores write plain SQL with $n placeholders,
// which both engines accept; times are stored as int64 microseconds since the Unix epoch (UTC).
package sqldb

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// Dialect names a SQL engine.
type Dialect string

// The supported engines.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Options says where the database is and how to pool it.
type Options struct {
	// URL is a postgres:// URL; empty means embedded SQLite at SQLitePath.
	URL string
	// ReadURL optionally points lag-tolerant reads at a PostgreSQL replica.
	ReadURL string
	// SQLitePath is the database file used when URL is empty.
	SQLitePath string
	// MaxOpenConns bounds the PostgreSQL pool (default 20).
	MaxOpenConns int
	// BusyTimeout is how long SQLite waits on a lock (default 5s).
	BusyTimeout time.Duration
	// ReadConns is the size of the SQLite reader pool (default 4).
	ReadConns int
	// CacheMiB is the SQLite writer connection's page cache (default 64 MiB); ReadCacheMiB is each
	// reader connection's (default 16 MiB). SQLite's own default, 2 MiB, makes the writer read its
	// pages again from the file, one system call each, once the tables outgrow it.
	CacheMiB, ReadCacheMiB int
	// CheckpointInterval is how often a connection of its own checkpoints the SQLite write-ahead
	// log, off the writer's path (default DefaultCheckpointInterval); negative: the writer
	// checkpoints itself after its commits, SQLite's default.
	CheckpointInterval time.Duration
}

// Default SQLite page caches, MiB.
const (
	DefaultCacheMiB     = 64
	DefaultReadCacheMiB = 16
)

// DB is a handle on the store: a writer pool, a reader pool and, optionally, a replica pool.
type DB struct {
	dialect Dialect
	write   *sql.DB
	read    *sql.DB // same engine, consistent reads (SQLite reader pool; PostgreSQL primary)
	replica *sql.DB // lag-tolerant reads; equals read when no replica is configured
	// readStmts caches the reader pool's prepared statements (SQLite only: pgx caches its own).
	readStmts *stmtCache
	// writeStmts caches the writer connection's prepared statements (SQLite only).
	writeStmts *writerStmts
	// ckpt checkpoints the write-ahead log in the background (SQLite only; nil when the writer
	// checkpoints itself).
	ckpt *checkpointer
}

// Open connects to the database described by opts and checks that it answers.
func Open(ctx context.Context, opts Options) (*DB, error) {
	var (
		db  *DB
		err error
	)
	if opts.URL == "" {
		db, err = openSQLite(opts)
	} else {
		db, err = openPostgres(opts)
	}
	if err != nil {
		return nil, err
	}
	if err := db.write.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqldb: connect %s: %w", db.dialect, err)
	}
	return db, nil
}

func openSQLite(opts Options) (*DB, error) {
	if opts.SQLitePath == "" {
		return nil, errors.New("sqldb: SQLitePath is required when URL is empty")
	}
	if err := os.MkdirAll(filepath.Dir(opts.SQLitePath), 0o750); err != nil {
		return nil, fmt.Errorf("sqldb: create data dir: %w", err)
	}
	// The database holds secrets (token secrets, key hashes): only its owner may read it.
	f, err := os.OpenFile(opts.SQLitePath, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqldb: create %s: %w", opts.SQLitePath, err)
	}
	_ = f.Close()
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = 5 * time.Second
	}
	readers := opts.ReadConns
	if readers <= 0 {
		readers = 4
	}
	// temp_store(MEMORY) keeps statement journals (multi-row upserts write one) off the disk.
	pragmas := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)"+
		"&_pragma=synchronous(FULL)&_pragma=temp_store(MEMORY)&_time_format=sqlite", busy.Milliseconds())
	dsn := "file:" + opts.SQLitePath + "?" + pragmas
	interval := cmp.Or(opts.CheckpointInterval, DefaultCheckpointInterval)
	autoCheckpoint := writerAutoCheckpoint
	if interval < 0 {
		autoCheckpoint = sqliteAutoCheckpoint
	}
	write, err := sql.Open("sqlite", dsn+cacheSize(opts.CacheMiB, DefaultCacheMiB)+
		fmt.Sprintf("&_pragma=wal_autocheckpoint(%d)&_txlock=immediate", autoCheckpoint))
	if err != nil {
		return nil, fmt.Errorf("sqldb: open sqlite: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	read, err := sql.Open("sqlite", dsn+cacheSize(opts.ReadCacheMiB, DefaultReadCacheMiB)+"&_pragma=query_only(1)")
	if err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("sqldb: open sqlite reader: %w", err)
	}
	read.SetMaxOpenConns(readers)
	read.SetMaxIdleConns(readers)
	db := &DB{dialect: SQLite, write: write, read: read, replica: read, readStmts: newStmtCache(read),
		writeStmts: newWriterStmts(write)}
	if interval > 0 {
		if db.ckpt, err = startCheckpointer(dsn, interval); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	return db, nil
}

// cacheSize is the pragma that sets a connection's page cache to mib MiB (def when mib <= 0).
func cacheSize(mib, def int) string {
	if mib <= 0 {
		mib = def
	}
	return fmt.Sprintf("&_pragma=cache_size(-%d)", mib*1024)
}

// Prepare prepares statements on SQLite's writer connection for as long as db is open: the hot
// multi-row statements of write transactions, which Tx.Exec, Tx.Query and Tx.QueryRow then run
// without parsing them (a statement first met in a transaction is only prepared later, see
// writerStmts). Call it while no transaction is open, e.g. when a service starts. A statement
// prepared so must not run again in a transaction while rows of an earlier run are open. On
// PostgreSQL it does nothing: pgx caches prepared statements itself.
func (db *DB) Prepare(ctx context.Context, queries ...string) error {
	if db.writeStmts == nil {
		return nil
	}
	return db.writeStmts.prepare(ctx, queries)
}

func openPostgres(opts Options) (*DB, error) {
	if err := checkPostgresURL(opts.URL); err != nil {
		return nil, err
	}
	maxConns := opts.MaxOpenConns
	if maxConns <= 0 {
		maxConns = 20
	}
	write, err := sql.Open("pgx", opts.URL)
	if err != nil {
		return nil, fmt.Errorf("sqldb: open postgres: %w", err)
	}
	write.SetMaxOpenConns(maxConns)
	write.SetMaxIdleConns(maxConns)
	write.SetConnMaxIdleTime(5 * time.Minute)
	db := &DB{dialect: Postgres, write: write, read: write, replica: write}
	if opts.ReadURL != "" {
		if err := checkPostgresURL(opts.ReadURL); err != nil {
			_ = write.Close()
			return nil, err
		}
		replica, err := sql.Open("pgx", opts.ReadURL)
		if err != nil {
			_ = write.Close()
			return nil, fmt.Errorf("sqldb: open postgres replica: %w", err)
		}
		replica.SetMaxOpenConns(maxConns)
		db.replica = replica
	}
	return db, nil
}

func checkPostgresURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return fmt.Errorf("sqldb: %q is not a postgres:// URL", redact(raw))
	}
	return nil
}

// redact hides a password in a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparseable url>"
	}
	return u.Redacted()
}

// Dialect tells which engine this is.
func (db *DB) Dialect() Dialect { return db.dialect }

// Writer is the pool that takes writes (one connection on SQLite). Prefer Tx.
func (db *DB) Writer() *sql.DB { return db.write }

// Reader returns a querier for reads that must see every committed write.
func (db *DB) Reader() Querier {
	if db.readStmts != nil {
		return cachedQuerier{pool: db.read, cache: db.readStmts}
	}
	return querier{db.read}
}

// Replica returns a querier for reads that tolerate replication lag.
func (db *DB) Replica() Querier {
	if db.replica == db.read {
		return db.Reader()
	}
	return querier{db.replica}
}

// Stats returns the pool statistics of the writer and reader pools, for metrics.
func (db *DB) Stats() (write, read sql.DBStats) { return db.write.Stats(), db.read.Stats() }

// Close closes every pool.
func (db *DB) Close() error {
	var errs []error
	if db.ckpt != nil { // first: the last connection to close checkpoints what is left
		errs = append(errs, db.ckpt.close())
	}
	if db.readStmts != nil {
		db.readStmts.close()
	}
	if db.writeStmts != nil {
		db.writeStmts.close()
	}
	errs = append(errs, db.write.Close())
	if db.read != db.write {
		errs = append(errs, db.read.Close())
	}
	if db.replica != db.read {
		errs = append(errs, db.replica.Close())
	}
	return errors.Join(errs...)
}

// Micros turns a time into the stored form: microseconds since the Unix epoch.
func Micros(t time.Time) int64 { return t.UnixMicro() }

// FromMicros turns the stored form back into a UTC time.
func FromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// Placeholders returns "$start, $start+1, …" n times, for IN lists and multi-row inserts.
func Placeholders(start, n int) string {
	return Postgres.Placeholders(start, n)
}

// Placeholder is the dialect's marker of parameter n: "$n" on PostgreSQL, "?" on SQLite. Both
// engines take "$n", but SQLite treats it as a name and looks names up in time linear in their
// number, which makes statements with hundreds of parameters (multi-row reads and writes) quadratic
// to prepare. Use the dialect's markers only when every marker of the statement is written this way,
// in argument order, each parameter once.
func (d Dialect) Placeholder(n int) string {
	if d == SQLite {
		return "?"
	}
	return "$" + strconv.Itoa(n)
}

// Placeholders is the dialect's comma-separated markers of parameters start to start+n-1: "$3, $4"
// on PostgreSQL, "?, ?" on SQLite (see Placeholder).
func (d Dialect) Placeholders(start, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(d.Placeholder(start + i))
	}
	return b.String()
}

// Tuples is n parenthesised groups of cols markers, numbered from 1: "($1, $2), ($3, $4)" on
// PostgreSQL, "(?, ?), (?, ?)" on SQLite — the VALUES of a multi-row statement.
func (d Dialect) Tuples(n, cols int) string {
	var b strings.Builder
	b.Grow(n * cols * 5)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + d.Placeholders(i*cols+1, cols) + ")")
	}
	return b.String()
}

// ChunkRows is how many of n remaining rows the next multi-row statement of a batch takes, at most
// max: on SQLite the largest power of two that fits, so that a few statement texts serve every
// batch and stay prepared (see DB.Prepare and Tx); on PostgreSQL, whose driver caches statements
// itself, as many as fit.
func (d Dialect) ChunkRows(n, max int) int {
	if d != SQLite {
		return min(n, max)
	}
	size := 1
	for size*2 <= min(n, max) {
		size *= 2
	}
	return size
}

// SkipLocked is ForUpdate for claims that several nodes make at once (sweeps, relays): rows
// another transaction holds are skipped. " FOR UPDATE SKIP LOCKED" on PostgreSQL; nothing on
// SQLite.
func (d Dialect) SkipLocked() string {
	if d == SQLite {
		return ""
	}
	return " FOR UPDATE SKIP LOCKED"
}

// ForUpdate is the clause that locks the rows a read inside a write transaction returns:
// " FOR UPDATE" on PostgreSQL; nothing on SQLite, whose one writer holds the whole database.
func (d Dialect) ForUpdate() string {
	if d == SQLite {
		return ""
	}
	return " FOR UPDATE"
}
