package app

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// BenchmarkGrantFloor is the reference ceiling the BenchmarkGrants figures are read against, as
// BenchmarkPgbenchReference is PostgreSQL's: the rows a durable point grant writes, in the product's
// own tables (every module migrated), written by hand-rolled multi-row statements with no Go logic
// in between — no validation, no flow, no events to encode, no reads, no locks. Per batch of 32
// grants, one transaction writes the grant rows, their step rows, the ledger entries, the users'
// and the merchant's balances, the lots and two outbox rows per grant (the reward group commit's
// writes), and a second transaction marks the outbox rows sent and writes the two activity records
// per grant (the relay's and the activity log's writes, generously folded into one). That is 11
// row changes per grant; the real path makes 14 (measured with SQLite's total_changes()).
//
// Sub-benchmarks: "grant" writes only the first transaction's grant row, entry and balances (the
// least a double-entry grant can write), "reward" the whole first transaction, "all" both, and
// "keys" is "grant" plus one outbox row per grant into bare tables of its own that carry nothing but
// their keys (no secondary index but the two unique business keys): the ceiling of any schema.
//
//	go test -run '^$' -bench BenchmarkGrantFloor -benchtime 40000x ./internal/app/
func BenchmarkGrantFloor(b *testing.B) {
	for _, d := range sqldbtest.Dialects {
		for _, level := range []int{floorKeys, floorGrant, floorReward, floorAll} {
			b.Run(fmt.Sprintf("%s/%s", d, floorNames[level]), func(b *testing.B) { benchFloor(b, d, level) })
		}
	}
}

// What a floor run writes (see BenchmarkGrantFloor).
const (
	floorKeys = iota
	floorGrant
	floorReward
	floorAll
)

var floorNames = []string{"keys", "grant", "reward", "all"}

// floorKeyTables are the bare tables of the "keys" level.
var floorKeyTables = []string{
	`CREATE TABLE floor_grants (tenant_id TEXT NOT NULL, id TEXT NOT NULL, user_id TEXT NOT NULL,
		source_kind TEXT NOT NULL, source_id TEXT NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL,
		created_at BIGINT NOT NULL, PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, source_kind, source_id, seq))`,
	`CREATE TABLE floor_entries (tenant_id TEXT NOT NULL, id TEXT NOT NULL, business_key TEXT NOT NULL,
		user_id TEXT NOT NULL, amount BIGINT NOT NULL, debit_account TEXT NOT NULL, credit_account TEXT NOT NULL,
		created_at BIGINT NOT NULL, PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, business_key))`,
	`CREATE TABLE floor_accounts (tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, asset TEXT NOT NULL,
		shard INTEGER NOT NULL, balance BIGINT NOT NULL, PRIMARY KEY (tenant_id, user_id, asset, shard))`,
	`CREATE TABLE floor_outbox (id TEXT PRIMARY KEY, payload TEXT NOT NULL)`,
}

// floorBatch is the group commit's batch: one per client at 32 clients.
const floorBatch = 32

func benchFloor(b *testing.B, d sqldb.Dialect, level int) {
	db := sqldbtest.Open(b, d, Migrations())
	ctx := context.Background()
	f := newFloor(d, randomPrefix())
	if level == floorKeys {
		for _, q := range floorKeyTables {
			_, err := db.Writer().ExecContext(ctx, q)
			require.NoError(b, err)
		}
	}
	batches := (max(b.N, 4*floorBatch) + floorBatch - 1) / floorBatch
	// Four writers: PostgreSQL runs their transactions side by side; SQLite's one writer
	// connection takes them in turn, so there it only keeps the writer busy.
	b.ResetTimer()
	res := runLoad(b, 4, batches, func(ctx context.Context, k int) error { return f.write(ctx, db, k, level) })
	b.StopTimer()
	grants := batches * floorBatch
	var entries int64
	table := "ledger_entries"
	if level == floorKeys {
		table = "floor_entries"
	}
	require.NoError(b, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM `+table).Scan(&entries))
	require.Equal(b, int64(grants), entries, "one entry per grant")
	reportFloor(b, res, floorBatch, "grant")
}

// reportFloor reports a floor run of res.ops batches of per rows of unit each: the rate, the wall
// time per unit, and the CPU time per unit of this process and of the whole machine (which adds the
// PostgreSQL server's).
func reportFloor(b *testing.B, res loadResult, per int, unit string) {
	n := float64(res.ops * per)
	b.ReportMetric(n/res.elapsed.Seconds(), unit+"s/s")
	b.ReportMetric(float64(res.elapsed.Microseconds())/n, "µs/"+unit)
	b.ReportMetric(float64(res.cpu.Microseconds())/n, "cpu-µs/"+unit)
	b.ReportMetric(float64(res.busy.Microseconds())/n, "box-cpu-µs/"+unit)
	b.ReportMetric(0, "ns/op")
}

// floor holds a floor run's statements, one text per statement for every batch.
type floor struct {
	prefix                                       string
	grants, steps, entries, accounts, lots, outb string
	sent, activity                               string
	payload                                      string
	// The "keys" level's statements.
	keyGrants, keyEntries, keyAccounts, keyOutbox string
}

func newFloor(d sqldb.Dialect, prefix string) *floor {
	n := floorBatch
	return &floor{
		prefix: prefix,
		grants: `INSERT INTO reward_grants (tenant_id, user_id, id, source_kind, source_id, seq, flow_spec, params,
			state, attempts, max_attempts, next_attempt_at, created_at, updated_at, completed_at) VALUES ` +
			d.Tuples(n, 15) + ` ON CONFLICT DO NOTHING`,
		steps: `INSERT INTO reward_steps (tenant_id, user_id, grant_id, step, component, state, output, created_at,
			updated_at) VALUES ` + d.Tuples(n, 9),
		entries: `INSERT INTO ledger_entries (tenant_id, user_id, id, business_key, kind, asset, amount, debit_account,
			credit_account, source_kind, source_id, lot_expires_at, created_at) VALUES ` + d.Tuples(n, 13),
		accounts: `INSERT INTO ledger_accounts (tenant_id, user_id, asset, shard, balance, created_at, updated_at)
			VALUES ` + d.Tuples(n+1, 7) + ` ON CONFLICT (tenant_id, user_id, asset, shard) DO UPDATE SET
			balance = ledger_accounts.balance + excluded.balance, updated_at = excluded.updated_at`,
		lots: `INSERT INTO ledger_lots (tenant_id, user_id, asset, expires_at, id, granted, remaining, created_at,
			updated_at) VALUES ` + d.Tuples(n, 9) + ` ON CONFLICT (tenant_id, user_id, asset, expires_at) DO UPDATE SET
			granted = ledger_lots.granted + excluded.granted, remaining = ledger_lots.remaining + excluded.remaining,
			updated_at = excluded.updated_at`,
		outb: `INSERT INTO bus_outbox (id, msg_id, subject, payload, created_at) VALUES ` + d.Tuples(2*n, 5),
		sent: `UPDATE bus_outbox SET sent_at = ` + d.Placeholder(1) + ` WHERE id IN (` +
			d.Placeholders(2, 2*n) + `)`,
		activity: `INSERT INTO activity_records (tenant_id, user_id, id, type, source_kind, source_id, occurred_at,
			recorded_at, data) VALUES ` + d.Tuples(2*n, 9),
		keyGrants: `INSERT INTO floor_grants (tenant_id, id, user_id, source_kind, source_id, seq, state, created_at)
			VALUES ` + d.Tuples(n, 8) + ` ON CONFLICT DO NOTHING`,
		keyEntries: `INSERT INTO floor_entries (tenant_id, id, business_key, user_id, amount, debit_account,
			credit_account, created_at) VALUES ` + d.Tuples(n, 8),
		keyAccounts: `INSERT INTO floor_accounts (tenant_id, user_id, asset, shard, balance) VALUES ` +
			d.Tuples(n+1, 5) + ` ON CONFLICT (tenant_id, user_id, asset, shard) DO UPDATE SET
			balance = floor_accounts.balance + excluded.balance`,
		keyOutbox: `INSERT INTO floor_outbox (id, payload) VALUES ` + d.Tuples(n, 2),
		// About the size of a grant.succeeded or ledger.posted event.
		payload: `{"data":` + strings.Repeat(`"perk"`, 60) + `}`,
	}
}

// write writes batch k: grants k*32 to k*32+31, for 32 distinct users of 10,000.
func (f *floor) write(ctx context.Context, db *sqldb.DB, k, level int) error {
	const tenant = "t_floor"
	now := time.Now().UnixMicro()
	expires := time.Now().AddDate(1, 0, 0).UnixMicro()
	if level == floorKeys {
		return f.writeKeys(ctx, db, k)
	}
	var grants, steps, entries, accounts, lots, outb, sent, activity []any
	sent = append(sent, now)
	for j := range floorBatch {
		g := k*floorBatch + j
		id := fmt.Sprintf("%s%012d", f.prefix, g)
		user := fmt.Sprintf("u%d", (k*floorBatch+j)%10_000)
		source := "order-" + id
		grants = append(grants, tenant, user, "g"+id, "bench", source, 0, `{"steps":[]}`, `{}`, "succeeded", 1, 5,
			now, now, now, now)
		steps = append(steps, tenant, user, "g"+id, "points", "grant_points", "succeeded", `{"entry_id":"e`+id+`"}`,
			now, now)
		entries = append(entries, tenant, user, "e"+id, "grant:"+id, "grant", "points", 1, "merchant:points",
			"user:"+user+":points", "bench", source, expires, now)
		accounts = append(accounts, tenant, user, "points", 0, 1, now, now)
		lots = append(lots, tenant, user, "points", expires, "l"+id, 1, 1, now, now)
		for m, subject := range []string{"domain.grant.succeeded", "domain.ledger.posted"} {
			mid := fmt.Sprintf("o%d%s", m, id)
			outb = append(outb, mid, mid, subject, f.payload, now)
			sent = append(sent, mid)
			activity = append(activity, tenant, user, fmt.Sprintf("a%d%s", m, id), subject, "bench", source, now, now,
				f.payload)
		}
	}
	accounts = append(accounts, tenant, "", "points", k%8, -floorBatch, now, now) // the merchant's issuance account
	statements := []floorStmt{{f.grants, grants}, {f.entries, entries}, {f.accounts, accounts}}
	if level >= floorReward {
		statements = append(statements, floorStmt{f.steps, steps}, floorStmt{f.lots, lots}, floorStmt{f.outb, outb})
	}
	if err := floorTx(ctx, db, statements...); err != nil || level < floorAll {
		return err
	}
	return floorTx(ctx, db, floorStmt{f.sent, sent}, floorStmt{f.activity, activity})
}

// writeKeys writes batch k of the "keys" level.
func (f *floor) writeKeys(ctx context.Context, db *sqldb.DB, k int) error {
	const tenant = "t_floor"
	now := time.Now().UnixMicro()
	var grants, entries, accounts, outb []any
	for j := range floorBatch {
		id := fmt.Sprintf("%s%012d", f.prefix, k*floorBatch+j)
		user := fmt.Sprintf("u%d", (k*floorBatch+j)%10_000)
		grants = append(grants, tenant, "g"+id, user, "bench", "order-"+id, 0, "succeeded", now)
		entries = append(entries, tenant, "e"+id, "grant:"+id, user, 1, "merchant:points", "user:"+user+":points", now)
		accounts = append(accounts, tenant, user, "points", 0, 1)
		outb = append(outb, "o"+id, f.payload)
	}
	accounts = append(accounts, tenant, "", "points", k%8, -floorBatch)
	return floorTx(ctx, db, floorStmt{f.keyGrants, grants}, floorStmt{f.keyEntries, entries},
		floorStmt{f.keyAccounts, accounts}, floorStmt{f.keyOutbox, outb})
}

// floorStmt is one statement of a floor transaction and its arguments.
type floorStmt struct {
	q    string
	args []any
}

// floorTx runs statements in one transaction.
func floorTx(ctx context.Context, db *sqldb.DB, statements ...floorStmt) error {
	return db.Tx(ctx, func(tx *sqldb.Tx) error {
		for _, s := range statements {
			if _, err := tx.Exec(ctx, s.q, s.args...); err != nil {
				return fmt.Errorf("%.40s: %w", s.q, err)
			}
		}
		return nil
	})
}

// BenchmarkEventFloor is BenchmarkGrantFloor for BenchmarkEventsEndToEnd: the rows one event of
// that run writes — almost every event there is a user's first on a task, so it claims the task —
// in the product's tables with no code in between, in batches of 256 (the task consumer's batch):
// the user task, the consumer's processed-message marker and the task.claimed outbox row in one
// transaction, then the relay's sent mark and the claim's activity record in another. That is the
// 6 row changes per event that SQLite's total_changes() counts on a node over the run's 20,000
// events (which complete no stage: each user task sees about one event). The users of a batch are
// scattered as the run scatters them, and the processed markers are keyed by a hash, as the
// events' message ids are. The "keys" level writes the same rows into bare tables that carry
// nothing but their keys (no secondary index): the ceiling of any schema.
//
//	go test -run '^$' -bench BenchmarkEventFloor -benchtime 40960x ./internal/app/
func BenchmarkEventFloor(b *testing.B) {
	for _, d := range sqldbtest.Dialects {
		for _, keys := range []bool{false, true} {
			name := string(d) + "/product"
			if keys {
				name = string(d) + "/keys"
			}
			b.Run(name, func(b *testing.B) { benchEventFloor(b, d, keys) })
		}
	}
}

// eventBatch is the task consumer's batch.
const eventBatch = 256

// eventKeyTables are the bare tables of BenchmarkEventFloor's "keys" level.
var eventKeyTables = []string{
	`CREATE TABLE floor_user_tasks (tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, task_key TEXT NOT NULL,
		period_key TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, progress BIGINT NOT NULL,
		updated_at BIGINT NOT NULL, PRIMARY KEY (tenant_id, user_id, task_key, period_key))`,
	`CREATE TABLE floor_processed (consumer TEXT NOT NULL, msg_id TEXT NOT NULL, PRIMARY KEY (consumer, msg_id))`,
	`CREATE TABLE floor_event_outbox (id TEXT PRIMARY KEY, payload TEXT NOT NULL, sent_at BIGINT)`,
	`CREATE TABLE floor_activity (tenant_id TEXT NOT NULL, id TEXT NOT NULL, user_id TEXT NOT NULL,
		data TEXT NOT NULL, PRIMARY KEY (tenant_id, id))`,
}

// eventFloor holds the statements of an event floor run, and how many values each takes per event.
type eventFloor struct {
	tasks, processed, outbox, sent, activity string
	table                                    string // of the user tasks
	keys                                     bool
}

func newEventFloor(d sqldb.Dialect, n int, keys bool) eventFloor {
	if keys {
		return eventFloor{keys: true, table: "floor_user_tasks",
			tasks: `INSERT INTO floor_user_tasks (tenant_id, user_id, task_key, period_key, id, state, progress,
				updated_at) VALUES ` + d.Tuples(n, 8) + ` ON CONFLICT DO NOTHING`,
			processed: `INSERT INTO floor_processed (consumer, msg_id) VALUES ` + d.Tuples(n, 2),
			outbox:    `INSERT INTO floor_event_outbox (id, payload) VALUES ` + d.Tuples(n, 2),
			sent: `UPDATE floor_event_outbox SET sent_at = ` + d.Placeholder(1) + ` WHERE id IN (` +
				d.Placeholders(2, n) + `)`,
			activity: `INSERT INTO floor_activity (tenant_id, id, user_id, data) VALUES ` + d.Tuples(n, 4)}
	}
	return eventFloor{table: "user_tasks",
		tasks: `INSERT INTO user_tasks (tenant_id, user_id, task_key, period_key, id, period, task_version, state,
			progress, claimed_at, updated_at) VALUES ` + d.Tuples(n, 11) + ` ON CONFLICT DO NOTHING`,
		processed: `INSERT INTO bus_processed (consumer, msg_id, processed_at) VALUES ` + d.Tuples(n, 3),
		outbox:    `INSERT INTO bus_outbox (id, msg_id, subject, payload, created_at) VALUES ` + d.Tuples(n, 5),
		sent:      `UPDATE bus_outbox SET sent_at = ` + d.Placeholder(1) + ` WHERE id IN (` + d.Placeholders(2, n) + `)`,
		activity: `INSERT INTO activity_records (tenant_id, user_id, id, type, source_kind, source_id, occurred_at,
			recorded_at, data) VALUES ` + d.Tuples(n, 9)}
}

// write writes the rows of events first to first+n-1.
func (ef eventFloor) write(ctx context.Context, db *sqldb.DB, f *floor, first, n int) error {
	now := time.Now().UnixMicro()
	var ut, pr, ob, st, ac []any
	st = append(st, now)
	for e := first; e < first+n; e++ {
		id := fmt.Sprintf("%s%012d", f.prefix, e)
		// Users and tasks as the events run spreads them (see eventsBench.batch): 10,000 users,
		// 20 tasks, each pair once over the first 200,000 events, the users of a batch scattered.
		user, task := fmt.Sprintf("u%d", e*7919%10_000), fmt.Sprintf("bench-%02d", e/7%20)
		msg := fmt.Sprintf("bev_%016x", uint64(e)*0x9e3779b97f4a7c15) // a message id: a hash
		st = append(st, "o"+id)
		if ef.keys {
			ut = append(ut, "t_floor", user, task, "once", "ut"+id, "claimed", 1, now)
			pr = append(pr, "task.progress", msg)
			ob = append(ob, "o"+id, f.payload)
			ac = append(ac, "t_floor", "a"+id, user, f.payload)
			continue
		}
		ut = append(ut, "t_floor", user, task, "once", "ut"+id, "once", 1, "claimed", 1, now, now)
		pr = append(pr, "task.progress", msg, now)
		ob = append(ob, "o"+id, "o"+id, "domain.task.claimed", f.payload, now)
		ac = append(ac, "t_floor", user, "a"+id, "task.claimed", "task", task, now, now, f.payload)
	}
	if err := floorTx(ctx, db, floorStmt{ef.tasks, ut}, floorStmt{ef.processed, pr}, floorStmt{ef.outbox, ob}); err != nil {
		return err
	}
	return floorTx(ctx, db, floorStmt{ef.sent, st}, floorStmt{ef.activity, ac})
}

func benchEventFloor(b *testing.B, d sqldb.Dialect, keys bool) {
	db := sqldbtest.Open(b, d, Migrations())
	ctx := context.Background()
	if keys {
		for _, q := range eventKeyTables {
			_, err := db.Writer().ExecContext(ctx, q)
			require.NoError(b, err)
		}
	}
	f := newFloor(d, randomPrefix())
	n := eventBatch
	ef := newEventFloor(d, n, keys)
	batches := (max(b.N, 4*n) + n - 1) / n
	// One writer: the task consumer's batches come one after the other.
	b.ResetTimer()
	res := runLoad(b, 1, batches, func(ctx context.Context, k int) error { return ef.write(ctx, db, f, k*n, n) })
	b.StopTimer()
	events := batches * n
	var rows int64
	require.NoError(b, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM `+ef.table).Scan(&rows))
	require.Equal(b, int64(min(events, 200_000)), rows, "one user task per (user, task)")
	reportFloor(b, res, n, "event")
}

// BenchmarkSteadyEventFloor is BenchmarkEventFloor for the mix a long run of the events benchmark
// settles into, once every (user, task) pair is claimed: each event adds one to its user task's
// progress and leaves a processed marker, and one in ten completes its stage (the user task's state
// changes) and grants, the grant's rows written as BenchmarkGrantFloor's "all" level writes them.
// It leaves out the completion's own activity record and outbox event, so it is a lower bound. The
// 200,000 user tasks are written before the timer starts. One writer, batches of 320 events (32 of
// them completing).
//
//	go test -run '^$' -bench BenchmarkSteadyEventFloor -benchtime 40960x ./internal/app/
func BenchmarkSteadyEventFloor(b *testing.B) {
	for _, d := range sqldbtest.Dialects {
		b.Run(string(d), func(b *testing.B) { benchSteadyFloor(b, d) })
	}
}

// steadyBatch is a steady floor batch: ten events per grant of a grant floor batch.
const steadyBatch = 10 * floorBatch

// steadyFill writes the user task of every (user, task) pair of the events run.
var steadyFill = map[sqldb.Dialect]string{
	sqldb.SQLite: `INSERT INTO user_tasks (tenant_id, user_id, task_key, period_key, id, period, task_version, state,
		progress, claimed_at, updated_at)
		WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 199999)
		SELECT 't_floor', 'u' || (i % 10000), printf('bench-%02d', i / 10000), 'once', 'ut' || i, 'once', 1,
			'claimed', 1, 0, 0 FROM n`,
	sqldb.Postgres: `INSERT INTO user_tasks (tenant_id, user_id, task_key, period_key, id, period, task_version, state,
		progress, claimed_at, updated_at)
		SELECT 't_floor', 'u' || (i % 10000), 'bench-' || lpad((i / 10000)::text, 2, '0'), 'once', 'ut' || i, 'once', 1,
			'claimed', 1, 0, 0 FROM generate_series(0, 199999) AS i`,
}

func benchSteadyFloor(b *testing.B, d sqldb.Dialect) {
	db := sqldbtest.Open(b, d, Migrations())
	ctx := context.Background()
	for _, q := range []string{steadyFill[d], `ANALYZE user_tasks`} { // the planner's figures for the join below
		_, err := db.Writer().ExecContext(ctx, q)
		require.NoError(b, err)
	}
	f := newFloor(d, randomPrefix())
	const n = steadyBatch
	pairs := func(k int) string { // the user tasks of k (user, task) pairs, by primary key on both engines
		return ` FROM (VALUES ` + d.Tuples(k, 2) + `) AS v WHERE tenant_id = 't_floor' AND period_key = 'once'
			AND user_id = v.column1 AND task_key = v.column2`
	}
	progress := `UPDATE user_tasks SET progress = progress + 1` + pairs(n)
	completed := `UPDATE user_tasks SET state = 'rewarded'` + pairs(floorBatch)
	processed := `INSERT INTO bus_processed (consumer, msg_id, processed_at) VALUES ` + d.Tuples(n, 3)
	batches := (max(b.N, 4*n) + n - 1) / n
	b.ResetTimer()
	res := runLoad(b, 1, batches, func(ctx context.Context, k int) error {
		now := time.Now().UnixMicro()
		var up, done, pr []any
		for e := k * n; e < (k+1)*n; e++ {
			user, task := fmt.Sprintf("u%d", e*7919%10_000), fmt.Sprintf("bench-%02d", e/7%20)
			up = append(up, user, task)
			if e%10 == 0 {
				done = append(done, user, task)
			}
			pr = append(pr, "task.progress", fmt.Sprintf("bev_%016x", uint64(e)*0x9e3779b97f4a7c15), now)
		}
		if err := floorTx(ctx, db, floorStmt{progress, up}, floorStmt{completed, done}, floorStmt{processed, pr}); err != nil {
			return err
		}
		return f.write(ctx, db, k, floorAll)
	})
	b.StopTimer()
	events := batches * n
	var total int64
	require.NoError(b, db.Reader().QueryRow(ctx, `SELECT SUM(progress) FROM user_tasks`).Scan(&total))
	require.Equal(b, int64(200_000+events), total, "one step of progress per event")
	reportFloor(b, res, n, "event")
}
