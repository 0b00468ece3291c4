package reward

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

const grantColumns = `tenant_id, user_id, id, source_kind, source_id, seq, flow_id, flow_key, flow_version,
	flow_spec, params, state, attempts, max_attempts, next_attempt_at, last_error, claimed_by, claimed_until,
	created_at, updated_at, completed_at`

type scanner interface{ Scan(dest ...any) error }

func scanGrant(row scanner) (Grant, error) {
	var (
		g                      Grant
		params                 string
		next, created, updated int64
		completed              sql.NullInt64
		state                  string
	)
	err := row.Scan(&g.TenantID, &g.UserID, &g.ID, &g.SourceKind, &g.SourceID, &g.Seq, &g.flowID, &g.FlowKey,
		&g.FlowVersion, &g.flowSpec, &params, &state, &g.Attempts, &g.MaxAttempts, &next, &g.LastError,
		&g.claimedBy, &g.claimedTil, &created, &updated, &completed)
	if err != nil {
		return Grant{}, err
	}
	g.Params = json.RawMessage(params)
	g.State = State(state)
	if g.State == StatePending || g.State == StateFailed {
		t := sqldb.FromMicros(next)
		g.NextAttemptAt = &t
	}
	g.CreatedAt, g.UpdatedAt = sqldb.FromMicros(created), sqldb.FromMicros(updated)
	if completed.Valid {
		t := sqldb.FromMicros(completed.Int64)
		g.CompletedAt = &t
	}
	return g, nil
}

// insertGrant inserts g, in g.State (pending, or succeeded for the fast path), unless its source
// exists; it reports whether it did.
func insertGrant(ctx context.Context, tx *sqldb.Tx, g Grant) (bool, error) {
	now := sqldb.Micros(g.CreatedAt)
	next := now
	var completed any
	if g.State == StateSucceeded {
		next, completed = 0, now
	}
	res, err := tx.Exec(ctx, `INSERT INTO reward_grants (tenant_id, user_id, id, source_kind, source_id, seq,
		flow_id, flow_key, flow_version, flow_spec, params, state, attempts, max_attempts, next_attempt_at,
		created_at, updated_at, completed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, $13, $14, $15, $15, $16)
		ON CONFLICT (tenant_id, source_kind, source_id, seq) DO NOTHING`,
		g.TenantID, g.UserID, g.ID, g.SourceKind, g.SourceID, g.Seq, g.flowID, g.FlowKey, g.FlowVersion,
		g.flowSpec, string(g.Params), string(g.State), g.MaxAttempts, next, now, completed)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func grantBySource(ctx context.Context, q sqldb.Querier, tenantID, kind, id string, seq int) (Grant, error) {
	return scanGrant(q.QueryRow(ctx, `SELECT `+grantColumns+` FROM reward_grants
		WHERE tenant_id = $1 AND source_kind = $2 AND source_id = $3 AND seq = $4`, tenantID, kind, id, seq))
}

// grantByID reads a grant by id; tenantID "" means any tenant. A missing grant is notFound.
func grantByID(ctx context.Context, q sqldb.Querier, tenantID, id string) (Grant, error) {
	query := `SELECT ` + grantColumns + ` FROM reward_grants WHERE id = $1`
	args := []any{id}
	if tenantID != "" {
		query += ` AND tenant_id = $2`
		args = append(args, tenantID)
	}
	g, err := scanGrant(q.QueryRow(ctx, query, args...))
	if isNoRows(err) {
		return Grant{}, notFound(id)
	}
	if err != nil {
		return Grant{}, fmt.Errorf("reward: load grant: %w", err)
	}
	return g, nil
}

// stepRow is a reward_steps row.
type stepRow struct {
	name      string
	component string
	state     StepState
	output    json.RawMessage
	attempts  int
	lastError string
	waitUntil int64
	updatedAt int64
}

func (r *stepRow) step() Step {
	st := Step{Name: r.name, Component: r.component, State: r.state, Attempts: r.attempts, LastError: r.lastError}
	if len(r.output) > 0 && string(r.output) != "{}" {
		st.Output = r.output
	}
	if r.waitUntil > 0 && r.state == StepWaiting {
		t := sqldb.FromMicros(r.waitUntil)
		st.WaitUntil = &t
	}
	if r.updatedAt > 0 {
		t := sqldb.FromMicros(r.updatedAt)
		st.UpdatedAt = &t
	}
	return st
}

func loadSteps(ctx context.Context, q sqldb.Querier, g Grant) (map[string]*stepRow, error) {
	rows, err := q.Query(ctx, `SELECT step, component, state, output, attempts, last_error, wait_until, updated_at
		FROM reward_steps WHERE tenant_id = $1 AND user_id = $2 AND grant_id = $3`, g.TenantID, g.UserID, g.ID)
	if err != nil {
		return nil, fmt.Errorf("reward: load steps: %w", err)
	}
	defer rows.Close()
	out := map[string]*stepRow{}
	for rows.Next() {
		var (
			r      stepRow
			state  string
			output string
		)
		if err := rows.Scan(&r.name, &r.component, &state, &output, &r.attempts, &r.lastError, &r.waitUntil, &r.updatedAt); err != nil {
			return nil, fmt.Errorf("reward: load steps: %w", err)
		}
		r.state, r.output = StepState(state), json.RawMessage(output)
		out[r.name] = &r
	}
	return out, rows.Err()
}

// stepWrite is one write of a step row.
type stepWrite struct {
	g         Grant
	name      string
	component string
	state     StepState
	output    json.RawMessage
	// failed adds one attempt and records lastError.
	failed    bool
	lastError string
	waitUntil int64
	now       time.Time
}

// writeStep inserts or updates a step row unless it is done already (succeeded, skipped or
// compensated); it reports whether it wrote.
func writeStep(ctx context.Context, tx *sqldb.Tx, w stepWrite) (bool, error) {
	output := string(w.output)
	if output == "" {
		output = "{}"
	}
	inc := 0
	if w.failed {
		inc = 1
	}
	now := sqldb.Micros(w.now)
	res, err := tx.Exec(ctx, `INSERT INTO reward_steps (tenant_id, user_id, grant_id, step, component, state, output,
		attempts, last_error, wait_until, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
		ON CONFLICT (tenant_id, user_id, grant_id, step) DO UPDATE SET state = excluded.state,
			output = excluded.output, attempts = reward_steps.attempts + $8, last_error = excluded.last_error,
			wait_until = excluded.wait_until, updated_at = excluded.updated_at
		WHERE reward_steps.state NOT IN ('succeeded', 'skipped', 'compensated')`,
		w.g.TenantID, w.g.UserID, w.g.ID, w.name, w.component, string(w.state), output, inc, w.lastError,
		w.waitUntil, now)
	if err != nil {
		return false, fmt.Errorf("reward: write step %s: %w", w.name, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// The fast path's multi-row statements. On SQLite they use plain "?" markers (SQLite looks "$n"
// up by name, which is quadratic in the parameters) and come in power-of-two sizes, prepared once
// on the writer connection when the service starts: parsing is a large share of SQLite's CPU.
const (
	grantInsertColumns = `tenant_id, user_id, id, source_kind, source_id, seq, flow_id, flow_key, flow_version,
	flow_spec, params, state, attempts, max_attempts, next_attempt_at, created_at, updated_at, completed_at`
	grantInsertCols   = 18
	stepInsertColumns = `tenant_id, user_id, grant_id, step, component, state, output, attempts, last_error,
	wait_until, created_at, updated_at`
	stepInsertCols = 12
	// maxRows bounds the rows of one statement (PostgreSQL takes at most 65535 parameters).
	maxRows = 512
	// preparedRows is the largest statement size kept prepared on SQLite.
	preparedRows = 128
)

// insertGrantsSQL inserts rows grants, skipping existing sources, returning the ids inserted.
func insertGrantsSQL(d sqldb.Dialect, rows int) string {
	return `INSERT INTO reward_grants (` + grantInsertColumns + `) VALUES ` + d.Tuples(rows, grantInsertCols) +
		` ON CONFLICT (tenant_id, source_kind, source_id, seq) DO NOTHING RETURNING id`
}

// insertStepsSQL inserts rows new step rows.
func insertStepsSQL(d sqldb.Dialect, rows int) string {
	return `INSERT INTO reward_steps (` + stepInsertColumns + `) VALUES ` + d.Tuples(rows, stepInsertCols)
}

// preparedStatements are the fast path's statements, prepared when the service starts (see
// sqldb.DB.Prepare).
func preparedStatements(d sqldb.Dialect) []string {
	var qs []string
	for n := 1; n <= preparedRows; n *= 2 {
		qs = append(qs, insertGrantsSQL(d, n), insertStepsSQL(d, n))
	}
	return qs
}

// insertGrants inserts gs (succeeded, for the fast path), skipping those whose source exists
// (also earlier in gs), and returns the ids inserted.
func (s *Service) insertGrants(ctx context.Context, tx *sqldb.Tx, gs []Grant) (map[string]bool, error) {
	inserted := make(map[string]bool, len(gs))
	for start := 0; start < len(gs); {
		part := gs[start : start+tx.Dialect().ChunkRows(len(gs)-start, maxRows)]
		start += len(part)
		args := make([]any, 0, grantInsertCols*len(part))
		for _, g := range part {
			now := sqldb.Micros(g.CreatedAt)
			args = append(args, g.TenantID, g.UserID, g.ID, g.SourceKind, g.SourceID, g.Seq, g.flowID, g.FlowKey,
				g.FlowVersion, g.flowSpec, string(g.Params), string(StateSucceeded), 0, g.MaxAttempts, 0, now, now, now)
		}
		rows, err := tx.Query(ctx, insertGrantsSQL(tx.Dialect(), len(part)), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			inserted[id] = true
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return inserted, nil
}

// stepInsert is a new step row of a fast-path grant.
type stepInsert struct {
	g         *Grant
	name      string
	component string
	state     StepState
	output    json.RawMessage
}

// insertSteps writes new step rows (their grants were inserted in tx, so none exists yet).
func (s *Service) insertSteps(ctx context.Context, tx *sqldb.Tx, rows []stepInsert, now time.Time) error {
	at := sqldb.Micros(now)
	for start := 0; start < len(rows); {
		part := rows[start : start+tx.Dialect().ChunkRows(len(rows)-start, maxRows)]
		start += len(part)
		args := make([]any, 0, stepInsertCols*len(part))
		for _, r := range part {
			output := string(r.output)
			if output == "" {
				output = "{}"
			}
			args = append(args, r.g.TenantID, r.g.UserID, r.g.ID, r.name, r.component, string(r.state), output, 0, "",
				0, at, at)
		}
		if _, err := tx.Exec(ctx, insertStepsSQL(tx.Dialect(), len(part)), args...); err != nil {
			return fmt.Errorf("reward: write steps: %w", err)
		}
	}
	return nil
}
