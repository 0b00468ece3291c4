package task

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

// errRace: another transaction changed a row this one read; sqldb.Tx runs the transaction again.
var errRace = fmt.Errorf("task: a user task changed concurrently: %w", sqldb.ErrBusy)

// keyChunk bounds the keys of one statement (PostgreSQL takes at most 65535 parameters).
const keyChunk = 500

const userTaskColumns = `tenant_id, user_id, task_key, period_key, id, period, round, task_version, state,
	progress, seen, stages_done, stage, reason, claimed_at, completed_at, rewarded_at, expires_at, updated_at, rev`

// userTaskCols is how many columns userTaskColumns names.
const userTaskCols = 20

// upsertRows is the most user tasks one upsert writes. On SQLite the upserts come in power-of-two
// sizes (Dialect.ChunkRows), each prepared when the service starts (preparedStatements): an upsert
// whose text changed with the batch was parsed again every time, 9 % of the writer's time on the
// events benchmark.
const upsertRows = 128

// upsertUserTasksSQL writes n user tasks: new ones are inserted, the others updated when their
// stored revision is the one they were read at (RETURNING names those written).
func upsertUserTasksSQL(m sqldb.Dialect, n int) string {
	return `INSERT INTO user_tasks (` + userTaskColumns + `) VALUES ` + m.Tuples(n, userTaskCols) + `
			ON CONFLICT (tenant_id, user_id, task_key, period_key) DO UPDATE SET state = excluded.state,
				progress = excluded.progress, seen = excluded.seen, stages_done = excluded.stages_done,
				stage = excluded.stage, reason = excluded.reason, completed_at = excluded.completed_at,
				rewarded_at = excluded.rewarded_at, expires_at = excluded.expires_at,
				updated_at = excluded.updated_at, rev = excluded.rev
			WHERE user_tasks.rev = excluded.rev - 1 AND user_tasks.id = excluded.id
			RETURNING id`
}

// preparedStatements are the statements the service prepares when it starts.
func preparedStatements(m sqldb.Dialect) []string {
	var qs []string
	for n := 1; n <= upsertRows; n *= 2 {
		qs = append(qs, upsertUserTasksSQL(m, n))
	}
	return qs
}

type scanner interface{ Scan(dest ...any) error }

func scanUserTask(row scanner) (*UserTask, error) {
	var (
		ut                        UserTask
		state, seen               string
		done                      int64
		claimed, expires, updated int64
		completed, rewarded       sql.NullInt64
	)
	err := row.Scan(&ut.TenantID, &ut.UserID, &ut.Task, &ut.PeriodKey, &ut.ID, &ut.Period, &ut.Round, &ut.TaskVersion,
		&state, &ut.Progress, &seen, &done, &ut.Stage, &ut.Reason, &claimed, &completed, &rewarded, &expires,
		&updated, &ut.rev)
	if err != nil {
		return nil, err
	}
	ut.State, ut.done = State(state), uint64(done)
	if err := json.Unmarshal([]byte(seen), &ut.Values); err != nil {
		return nil, fmt.Errorf("task: user task %s: seen values: %w", ut.ID, err)
	}
	if len(ut.Values) == 0 {
		ut.Values = nil
	}
	ut.StagesDone = stagesOf(ut.done)
	ut.ClaimedAt, ut.UpdatedAt = sqldb.FromMicros(claimed), sqldb.FromMicros(updated)
	ut.CompletedAt, ut.RewardedAt = optTime(completed), optTime(rewarded)
	if expires > 0 {
		t := sqldb.FromMicros(expires)
		ut.ExpiresAt = &t
	}
	ut.head = ut.headNow()
	return &ut, nil
}

func optTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := sqldb.FromMicros(v.Int64)
	return &t
}

// stagesOf lists the stages set in a bit set.
func stagesOf(set uint64) []int {
	out := make([]int, 0, bits.OnesCount64(set))
	for i := range 64 {
		if set&(1<<i) != 0 {
			out = append(out, i)
		}
	}
	return out
}

func collectUserTasks(rows *sql.Rows) ([]*UserTask, error) {
	defer rows.Close()
	var out []*UserTask
	for rows.Next() {
		ut, err := scanUserTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, ut)
	}
	return out, rows.Err()
}

// rowKey names a user task row.
type rowKey struct{ tenant, user, task, periodKey string }

// loadUserTasks reads the rows with these keys (those that exist). With lock (in a write
// transaction) the rows are locked, in key order so that two writers cannot deadlock on them.
func loadUserTasks(ctx context.Context, q sqldb.Querier, m sqldb.Dialect, keys []rowKey, lock bool) ([]*UserTask, error) {
	suffix := ""
	if lock {
		suffix = ` ORDER BY tenant_id, user_id, task_key, period_key` + m.ForUpdate()
		slices.SortFunc(keys, func(a, b rowKey) int {
			return cmp.Or(strings.Compare(a.tenant, b.tenant), strings.Compare(a.user, b.user),
				strings.Compare(a.task, b.task), strings.Compare(a.periodKey, b.periodKey))
		})
	}
	var out []*UserTask
	for start := 0; start < len(keys); start += keyChunk {
		chunk := keys[start:min(start+keyChunk, len(keys))]
		args := make([]any, 0, 4*len(chunk))
		for _, k := range chunk {
			args = append(args, k.tenant, k.user, k.task, k.periodKey)
		}
		rows, err := q.Query(ctx, `SELECT `+userTaskColumns+` FROM user_tasks
			WHERE (tenant_id, user_id, task_key, period_key) IN (VALUES `+m.Tuples(len(chunk), 4)+`)`+suffix, args...)
		if err != nil {
			return nil, fmt.Errorf("task: load user tasks: %w", err)
		}
		uts, err := collectUserTasks(rows)
		if err != nil {
			return nil, fmt.Errorf("task: load user tasks: %w", err)
		}
		out = append(out, uts...)
	}
	return out, nil
}

// saveUserTasks writes new and changed rows in one statement per chunk. A row changed by another
// transaction since it was read (its rev moved) or inserted meanwhile fails the write with errRace.
func saveUserTasks(ctx context.Context, tx *sqldb.Tx, m sqldb.Dialect, uts []*UserTask) error {
	if m == sqldb.SQLite {
		var err error
		if uts, err = saveProgress(ctx, tx, uts); err != nil {
			return err
		}
	}
	for start := 0; start < len(uts); {
		chunk := uts[start : start+m.ChunkRows(len(uts)-start, upsertRows)]
		start += len(chunk)
		args := make([]any, 0, userTaskCols*len(chunk))
		for _, ut := range chunk {
			var expires int64
			if ut.ExpiresAt != nil {
				expires = sqldb.Micros(*ut.ExpiresAt)
			}
			args = append(args, ut.TenantID, ut.UserID, ut.Task, ut.PeriodKey, ut.ID, ut.Period, ut.Round,
				ut.TaskVersion, string(ut.State), ut.Progress, ut.seen(), int64(ut.done), ut.Stage, ut.Reason,
				sqldb.Micros(ut.ClaimedAt), micros(ut.CompletedAt), micros(ut.RewardedAt), expires,
				sqldb.Micros(ut.UpdatedAt), ut.rev+1)
		}
		rows, err := tx.Query(ctx, upsertUserTasksSQL(m, len(chunk)), args...)
		if err != nil {
			return fmt.Errorf("task: save user tasks: %w", err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("task: save user tasks: %w", err)
		}
		if n != len(chunk) {
			return errRace
		}
	}
	for _, ut := range uts {
		ut.saved(ut.rev + 1)
	}
	return nil
}

// seen is the seen column: the distinct values as a JSON array.
func (ut *UserTask) seen() string {
	if len(ut.Values) == 0 {
		return "[]"
	}
	return string(mustJSON(ut.Values))
}

// saved notes that the row was written with that rev.
func (ut *UserTask) saved(rev int64) {
	ut.rev, ut.head = rev, ut.headNow()
	ut.dirty, ut.inserted = false, false
}

// rowHead is every column of a user task row but its key, id, progress, seen values and update
// time: those its secondary indexes cover (state, expires_at) and the rest a transition changes.
type rowHead struct {
	state                                 State
	period, reason                        string
	round, version, stage                 int
	done                                  uint64
	claimed, completed, rewarded, expires int64
}

// headNow is the row head of the user task as it is now.
func (ut *UserTask) headNow() rowHead {
	h := rowHead{state: ut.State, period: ut.Period, reason: ut.Reason, round: ut.Round, version: ut.TaskVersion,
		stage: ut.Stage, done: ut.done, claimed: sqldb.Micros(ut.ClaimedAt)}
	if ut.CompletedAt != nil {
		h.completed = sqldb.Micros(*ut.CompletedAt)
	}
	if ut.RewardedAt != nil {
		h.rewarded = sqldb.Micros(*ut.RewardedAt)
	}
	if ut.ExpiresAt != nil {
		h.expires = sqldb.Micros(*ut.ExpiresAt)
	}
	return h
}

// saveProgress writes, on SQLite, the rows whose only change is their progress with an update of
// those columns alone, one prepared statement per row: SQLite then rewrites the row but none of
// its indexes, which the upsert of saveUserTasks rewrites whenever it sets an indexed column, and
// the statement is parsed once per connection instead of once per batch size. It returns the other
// rows. (SQLite is never analyzed: with the statistics of ANALYZE, SQLite prepares a statement
// like this one again for every run, to weigh its indexes by the values bound.)
func saveProgress(ctx context.Context, tx *sqldb.Tx, uts []*UserTask) ([]*UserTask, error) {
	rest := make([]*UserTask, 0, len(uts))
	for _, ut := range uts {
		if ut.inserted || ut.headNow() != ut.head {
			rest = append(rest, ut)
			continue
		}
		res, err := tx.Exec(ctx, `UPDATE user_tasks SET progress = $1, seen = $2, updated_at = $3, rev = $4
			WHERE tenant_id = $5 AND user_id = $6 AND task_key = $7 AND period_key = $8 AND rev = $9 AND id = $10`,
			ut.Progress, ut.seen(), sqldb.Micros(ut.UpdatedAt), ut.rev+1,
			ut.TenantID, ut.UserID, ut.Task, ut.PeriodKey, ut.rev, ut.ID)
		if err != nil {
			return nil, fmt.Errorf("task: save user task progress: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return nil, errors.Join(errRace, err)
		}
		ut.saved(ut.rev + 1)
	}
	return rest, nil
}

func micros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return sqldb.Micros(*t)
}

// userTaskByID reads one user task of the tenant by id (nil when there is none); lock is "" or
// Dialect.ForUpdate().
func userTaskByID(ctx context.Context, q sqldb.Querier, tenantID, id, lock string) (*UserTask, error) {
	ut, err := scanUserTask(q.QueryRow(ctx, `SELECT `+userTaskColumns+` FROM user_tasks WHERE id = $1 AND tenant_id = $2`+lock,
		id, tenantID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("task: load user task %s: %w", id, err)
	}
	return ut, nil
}

// grantRow is a user_task_grants row: a grant a user task (or a streak) earned.
type grantRow struct {
	tenant, user, grantID, userTaskID, task, kind string
	seq                                           int
	state                                         string
	cost                                          Cost
	// req is the grant's position among the batch's prepared grants.
	req int
}

func insertGrantRows(ctx context.Context, tx *sqldb.Tx, m sqldb.Dialect, rows []grantRow, now int64) error {
	const cols = 12
	for start := 0; start < len(rows); start += keyChunk / 2 {
		chunk := rows[start:min(start+keyChunk/2, len(rows))]
		args := make([]any, 0, cols*len(chunk))
		for _, g := range chunk {
			args = append(args, g.tenant, g.user, g.grantID, g.userTaskID, g.task, g.kind, g.seq, g.state,
				g.cost.Points, g.cost.Growth, g.cost.Coupons, now)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO user_task_grants (tenant_id, user_id, grant_id, user_task_id, task_key,
			kind, seq, state, points, growth, coupons, created_at) VALUES `+m.Tuples(len(chunk), cols)+`
			ON CONFLICT DO NOTHING`, args...); err != nil {
			return fmt.Errorf("task: record grants: %w", err)
		}
	}
	return nil
}

const grantRowColumns = `tenant_id, user_id, grant_id, user_task_id, task_key, kind, seq, state, points, growth, coupons`

func scanGrantRow(row scanner) (grantRow, error) {
	var g grantRow
	err := row.Scan(&g.tenant, &g.user, &g.grantID, &g.userTaskID, &g.task, &g.kind, &g.seq, &g.state,
		&g.cost.Points, &g.cost.Growth, &g.cost.Coupons)
	return g, err
}

func (g grantRow) ref() GrantRef {
	return GrantRef{GrantID: g.grantID, Kind: g.kind, Seq: g.seq, State: g.state, Cost: g.cost}
}

// grantRowsOf reads the grants a user task earned, stages first.
func grantRowsOf(ctx context.Context, q sqldb.Querier, tenantID, userID, userTaskID string) ([]grantRow, error) {
	rows, err := q.Query(ctx, `SELECT `+grantRowColumns+` FROM user_task_grants
		WHERE tenant_id = $1 AND user_id = $2 AND user_task_id = $3 ORDER BY kind, seq`, tenantID, userID, userTaskID)
	if err != nil {
		return nil, fmt.Errorf("task: load grants of %s: %w", userTaskID, err)
	}
	defer rows.Close()
	var out []grantRow
	for rows.Next() {
		g, err := scanGrantRow(rows)
		if err != nil {
			return nil, fmt.Errorf("task: load grants of %s: %w", userTaskID, err)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// setGrantState records a grant's outcome. A succeeded grant stays succeeded (events may arrive
// out of order). It returns the row and whether it changed; ok is false for a grant not ours.
func setGrantState(ctx context.Context, tx *sqldb.Tx, tenantID, userID, grantID, state string, now int64) (g grantRow, changed, ok bool, err error) {
	g, err = scanGrantRow(tx.QueryRow(ctx, `SELECT `+grantRowColumns+` FROM user_task_grants
		WHERE tenant_id = $1 AND user_id = $2 AND grant_id = $3`, tenantID, userID, grantID))
	if errors.Is(err, sql.ErrNoRows) {
		return grantRow{}, false, false, nil
	}
	if err != nil {
		return grantRow{}, false, false, fmt.Errorf("task: load grant %s: %w", grantID, err)
	}
	if g.state == state || g.state == grantSucceeded {
		return g, false, true, nil
	}
	if _, err := tx.Exec(ctx, `UPDATE user_task_grants SET state = $1, updated_at = $2
		WHERE tenant_id = $3 AND user_id = $4 AND grant_id = $5`, state, now, tenantID, userID, grantID); err != nil {
		return grantRow{}, false, false, fmt.Errorf("task: record grant %s: %w", grantID, err)
	}
	g.state = state
	return g, true, true, nil
}

// The states of a user task's grant, as its events report them.
const (
	grantPending   = "pending"
	grantSucceeded = "succeeded"
	grantFailed    = "failed"
	grantDead      = "dead"
)

// chargeBudget takes one completion (completions 0 or 1) and cost points from a task's budget, if
// both fit; it reports whether they did. The conditional update is atomic on every engine.
func chargeBudget(ctx context.Context, tx *sqldb.Tx, tenantID, task string, b *Budget, completions, cost, now int64) (bool, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO task_budgets (tenant_id, task_key, completions, cost, updated_at)
		VALUES ($1, $2, 0, 0, $3) ON CONFLICT DO NOTHING`, tenantID, task, now); err != nil {
		return false, fmt.Errorf("task: budget of %s: %w", task, err)
	}
	res, err := tx.Exec(ctx, `UPDATE task_budgets SET completions = completions + $1, cost = cost + $2, updated_at = $3
		WHERE tenant_id = $4 AND task_key = $5 AND ($6 = 0 OR completions + $1 <= $6) AND ($7 = 0 OR cost + $2 <= $7)`,
		completions, cost, now, tenantID, task, b.Completions, b.CostPoints)
	if err != nil {
		return false, fmt.Errorf("task: budget of %s: %w", task, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
