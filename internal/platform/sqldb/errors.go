package sqldb

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Classes of driver error. Stores test for them with errors.Is and turn them into domain errors.
var (
	// ErrUnique is a unique or primary-key violation.
	ErrUnique = errors.New("sqldb: unique violation")
	// ErrForeignKey is a foreign-key violation.
	ErrForeignKey = errors.New("sqldb: foreign key violation")
	// ErrCheck is a CHECK or NOT NULL violation.
	ErrCheck = errors.New("sqldb: check violation")
	// ErrBusy is a lock timeout, deadlock or serialization failure: the transaction may be retried.
	ErrBusy = errors.New("sqldb: busy or serialization failure")
)

// Error is a classified driver error: errors.Is(err, ErrUnique) and friends work on it, and the
// driver's own error stays reachable through errors.As.
type Error struct {
	Class      error
	Constraint string
	Err        error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Constraint != "" {
		return fmt.Sprintf("%v (%s): %v", e.Class, e.Constraint, e.Err)
	}
	return fmt.Sprintf("%v: %v", e.Class, e.Err)
}

// Is matches the error's class.
func (e *Error) Is(target error) bool { return target == e.Class }

// Unwrap returns the driver error.
func (e *Error) Unwrap() error { return e.Err }

// Constraint returns the name of the violated constraint, when the driver tells it.
func Constraint(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Constraint
	}
	return ""
}

func classify(err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		if class := pgClass(pg.Code); class != nil {
			return &Error{Class: class, Constraint: pg.ConstraintName, Err: err}
		}
		return err
	}
	var lite *sqlite.Error
	if errors.As(err, &lite) {
		if class := sqliteClass(lite.Code()); class != nil {
			return &Error{Class: class, Err: err}
		}
	}
	return err
}

func pgClass(code string) error {
	switch code {
	case "23505":
		return ErrUnique
	case "23503":
		return ErrForeignKey
	case "23514", "23502":
		return ErrCheck
	case "40001", "40P01", "55P03":
		return ErrBusy
	}
	return nil
}

func sqliteClass(code int) error {
	switch code {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return ErrUnique
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return ErrForeignKey
	case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
		return ErrCheck
	}
	switch code & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return ErrBusy
	}
	return nil
}
