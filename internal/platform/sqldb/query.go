package sqldb

import (
	"context"
	"database/sql"
)

// Querier runs statements. Errors it returns are classified (see ErrUnique and friends).
type Querier interface {
	// Exec runs a statement that returns no rows.
	Exec(ctx context.Context, query string, args ...any) (sql.Result, error)
	// Query runs a statement that returns rows.
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	// QueryRow runs a statement that returns at most one row.
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Row is one result row whose Scan returns classified errors (sql.ErrNoRows passes through).
type Row struct{ row *sql.Row }

// Scan copies the row's columns into dest.
func (r Row) Scan(dest ...any) error { return classify(r.row.Scan(dest...)) }

// sqlRunner is what *sql.DB, *sql.Tx and *sql.Conn have in common.
type sqlRunner interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type querier struct{ r sqlRunner }

func (q querier) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := q.r.ExecContext(ctx, query, args...)
	return res, classify(err)
}

func (q querier) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := q.r.QueryContext(ctx, query, args...)
	return rows, classify(err)
}

func (q querier) QueryRow(ctx context.Context, query string, args ...any) Row {
	return Row{q.r.QueryRowContext(ctx, query, args...)}
}
