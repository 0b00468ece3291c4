package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Tx is a write transaction. Its statements return classified errors; functions registered with
// AfterCommit run once the transaction has committed (never if it rolls back).
type Tx struct {
	querier
	tx      *sql.Tx
	hooks   []func()
	dialect Dialect
	stmts   *writerStmts // nil: statements are not cached
}

// Exec runs a statement that returns no rows, prepared once per connection where the engine
// gains from it.
func (tx *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := tx.cached(query); st != nil {
		res, err := tx.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
		return res, classify(err)
	}
	return tx.querier.Exec(ctx, query, args...)
}

// Query runs a statement that returns rows, prepared when it was prepared with DB.Prepare.
func (tx *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if tx.stmts != nil {
		if st := tx.stmts.prepared(query); st != nil {
			rows, err := tx.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
			return rows, classify(err)
		}
	}
	return tx.querier.Query(ctx, query, args...)
}

// QueryRow runs a statement that returns at most one row (see Exec).
func (tx *Tx) QueryRow(ctx context.Context, query string, args ...any) Row {
	if st := tx.cached(query); st != nil {
		return Row{tx.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)}
	}
	return tx.querier.QueryRow(ctx, query, args...)
}

func (tx *Tx) cached(query string) *sql.Stmt {
	if tx.stmts == nil {
		return nil
	}
	return tx.stmts.lookup(query)
}

// Dialect is the engine the transaction runs on.
func (tx *Tx) Dialect() Dialect { return tx.dialect }

// AfterCommit registers fn to run after a successful commit, in registration order.
func (tx *Tx) AfterCommit(fn func()) { tx.hooks = append(tx.hooks, fn) }

// ErrSavepoint wraps the failure of a savepoint's own statements (see Tx.Savepoint): the
// transaction's state is then unknown and it must be rolled back.
var ErrSavepoint = errors.New("sqldb: savepoint failed")

// Savepoint runs fn under a savepoint named name (an SQL identifier): when fn fails, what it wrote
// is rolled back, the AfterCommit functions it registered are dropped, and fn's error is returned
// as is. Savepoints nest. An error of the savepoint's own statements wraps ErrSavepoint.
func (tx *Tx) Savepoint(ctx context.Context, name string, fn func() error) error {
	if !identifier(name) {
		return fmt.Errorf("%w: %q is not an identifier", ErrSavepoint, name)
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT "+name); err != nil {
		return fmt.Errorf("%w: %w", ErrSavepoint, err)
	}
	hooks := len(tx.hooks)
	failed := fn()
	if failed != nil {
		tx.hooks = tx.hooks[:hooks]
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT "+name); err != nil {
			return errors.Join(failed, fmt.Errorf("%w: rollback to %s: %w", ErrSavepoint, name, err))
		}
	}
	if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT "+name); err != nil {
		return errors.Join(failed, fmt.Errorf("%w: release %s: %w", ErrSavepoint, name, err))
	}
	return failed
}

// identifier reports whether name is a plain SQL identifier: a letter or underscore, then
// letters, digits and underscores.
func identifier(name string) bool {
	for i, r := range name {
		letter := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return name != ""
}

// SQL returns the underlying transaction, for libraries that want one.
func (tx *Tx) SQL() *sql.Tx { return tx.tx }

// maxAttempts bounds how often Tx retries a transaction that failed with ErrBusy.
const maxAttempts = 5

// Tx runs fn in a write transaction and commits it when fn returns nil. A transaction that fails
// with ErrBusy (lock timeout, deadlock, serialization failure) is retried a few times, so fn must
// have no side effects outside the transaction; put those in AfterCommit.
func (db *DB) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	var err error
	for attempt := range maxAttempts {
		err = db.tryTx(ctx, fn)
		if !errors.Is(err, ErrBusy) || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
	}
	return err
}

func (db *DB) tryTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	raw, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqldb: begin: %w", classify(err))
	}
	tx := &Tx{querier: querier{raw}, tx: raw, dialect: db.dialect, stmts: db.writeStmts}
	defer func() {
		if p := recover(); p != nil {
			_ = raw.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		_ = raw.Rollback()
		return err
	}
	if err := raw.Commit(); err != nil {
		return fmt.Errorf("sqldb: commit: %w", classify(err))
	}
	for _, h := range tx.hooks {
		h()
	}
	return nil
}
