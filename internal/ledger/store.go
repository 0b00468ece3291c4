package ledger

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// chunk bounds the rows of one multi-row statement (PostgreSQL takes at most 65535 parameters,
// SQLite 32766).
const chunk = 500

const entryColumns = `tenant_id, user_id, id, business_key, kind, asset, amount, debit_account, credit_account,
	source_kind, source_id, reason, lot_expires_at, hold_id, created_at`

// preparedRows is the largest multi-row statement prepared when the service starts. Parsing is a
// third of a group commit's CPU on SQLite (it runs in-process), so the multi-row statements come
// in power-of-two sizes (Dialect.ChunkRows) and the common ones are prepared once, at start (not
// later: the one writer connection is busy inside transactions).
const preparedRows = 128

// maxRows bounds the rows of one multi-row statement.
const maxRows = 512

// preparedStatements are the statements the service prepares at start (see sqldb.DB.Prepare).
func preparedStatements(d sqldb.Dialect) []string {
	var qs []string
	for n := 1; n <= preparedRows; n *= 2 {
		qs = append(qs, insertEntriesSQL(d, n), upsertAccountsSQL(d, n), addToLotsSQL(d, n))
	}
	return qs
}

// posting is an entry about to be written, with the stored expiry of the lot it touches.
type posting struct {
	Entry
	lot int64 // 0 when the entry touches no single lot (spend, capture, negative adjust)
}

func (p posting) args() []any {
	var lot any
	if p.lot != 0 {
		lot = p.lot
	}
	return []any{p.TenantID, p.UserID, p.ID, p.BusinessKey, string(p.Kind), p.Asset, p.Amount, p.Debit, p.Credit,
		p.SourceKind, p.SourceID, p.Reason, lot, p.HoldID, sqldb.Micros(p.CreatedAt)}
}

// insertEntries writes the postings, skipping any whose (tenant, business key) exists, and returns
// the ids of those written. It never fails on a duplicate key, so it is safe inside a caller's
// PostgreSQL transaction.
const entryCols = 15

// insertEntriesSQL inserts rows entries, skipping duplicate keys, returning the ids inserted.
func insertEntriesSQL(m sqldb.Dialect, rows int) string {
	var q strings.Builder
	q.WriteString(`INSERT INTO ledger_entries (` + entryColumns + `) VALUES `)
	q.WriteString(m.Tuples(rows, entryCols))
	q.WriteString(` ON CONFLICT (tenant_id, business_key) DO NOTHING RETURNING id`)
	return q.String()
}

func insertEntries(ctx context.Context, tx *sqldb.Tx, ps []posting) (map[string]bool, error) {
	inserted := make(map[string]bool, len(ps))
	for start := 0; start < len(ps); {
		part := ps[start : start+tx.Dialect().ChunkRows(len(ps)-start, maxRows)]
		start += len(part)
		args := make([]any, 0, entryCols*len(part))
		for _, p := range part {
			args = append(args, p.args()...)
		}
		rows, err := tx.Query(ctx, insertEntriesSQL(tx.Dialect(), len(part)), args...)
		if err != nil {
			return nil, fmt.Errorf("ledger: insert entries: %w", err)
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
			return nil, fmt.Errorf("ledger: insert entries: %w", err)
		}
	}
	return inserted, nil
}

func scanEntry(scan func(...any) error) (Entry, error) {
	var (
		e         Entry
		kind      string
		lot       sql.NullInt64
		createdAt int64
	)
	err := scan(&e.TenantID, &e.UserID, &e.ID, &e.BusinessKey, &kind, &e.Asset, &e.Amount, &e.Debit, &e.Credit,
		&e.SourceKind, &e.SourceID, &e.Reason, &lot, &e.HoldID, &createdAt)
	if err != nil {
		return Entry{}, err
	}
	e.Kind = Kind(kind)
	e.CreatedAt = sqldb.FromMicros(createdAt)
	if lot.Valid {
		e.LotExpiresAt = lotTime(lot.Int64)
	}
	e.Delta = e.Amount
	if e.Debit == e.UserID {
		e.Delta = -e.Amount
	}
	return e, nil
}

// entriesByKey reads the tenant's entries with the given business keys.
func entriesByKey(ctx context.Context, q sqldb.Querier, m sqldb.Dialect, tenantID string, keys []string) (map[string]Entry, error) {
	out := make(map[string]Entry, len(keys))
	for start := 0; start < len(keys); start += chunk {
		part := keys[start:min(start+chunk, len(keys))]
		args := make([]any, 0, len(part)+1)
		args = append(args, tenantID)
		for _, k := range part {
			args = append(args, k)
		}
		rows, err := q.Query(ctx, `SELECT `+entryColumns+` FROM ledger_entries WHERE tenant_id = `+m.Placeholder(1)+
			` AND business_key IN (`+m.Placeholders(2, len(part))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("ledger: read entries: %w", err)
		}
		for rows.Next() {
			e, err := scanEntry(rows.Scan)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out[e.BusinessKey] = e
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// entryByKey reads one entry by business key.
func entryByKey(ctx context.Context, q sqldb.Querier, m sqldb.Dialect, tenantID, key string) (Entry, bool, error) {
	found, err := entriesByKey(ctx, q, m, tenantID, []string{key})
	if err != nil {
		return Entry{}, false, err
	}
	e, ok := found[key]
	return e, ok, nil
}

// accountKey names one account row.
type accountKey struct {
	tenant, owner, asset string
	shard                int
}

// upsertAccountsSQL adds to rows account balances, creating missing rows.
func upsertAccountsSQL(m sqldb.Dialect, rows int) string {
	var q strings.Builder
	q.WriteString(`INSERT INTO ledger_accounts (tenant_id, user_id, asset, shard, balance, created_at, updated_at) VALUES `)
	q.WriteString(m.Tuples(rows, 7))
	q.WriteString(` ON CONFLICT (tenant_id, user_id, asset, shard) DO UPDATE SET
		balance = ledger_accounts.balance + excluded.balance, updated_at = excluded.updated_at`)
	return q.String()
}

// upsertAccounts adds each delta to its account's balance, creating missing rows. Rows are
// written in one order (tenant, owner, asset, shard) so concurrent writers cannot deadlock.
func upsertAccounts(ctx context.Context, tx *sqldb.Tx, deltas map[accountKey]int64, now time.Time) error {
	keys := make([]accountKey, 0, len(deltas))
	for k, d := range deltas {
		if d != 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b accountKey) int {
		return cmp.Or(cmp.Compare(a.tenant, b.tenant), cmp.Compare(a.owner, b.owner), cmp.Compare(a.asset, b.asset),
			cmp.Compare(a.shard, b.shard))
	})
	at := sqldb.Micros(now)
	for start := 0; start < len(keys); {
		part := keys[start : start+tx.Dialect().ChunkRows(len(keys)-start, maxRows)]
		start += len(part)
		args := make([]any, 0, 7*len(part))
		for _, k := range part {
			args = append(args, k.tenant, k.owner, k.asset, k.shard, deltas[k], at, at)
		}
		if _, err := tx.Exec(ctx, upsertAccountsSQL(tx.Dialect(), len(part)), args...); err != nil {
			return fmt.Errorf("ledger: update accounts: %w", err)
		}
	}
	return nil
}

// lotKey names one lot.
type lotKey struct {
	tenant, user, asset string
	expires             int64
}

// addToLotsSQL adds to rows lots, creating missing ones.
func addToLotsSQL(m sqldb.Dialect, rows int) string {
	var q strings.Builder
	q.WriteString(`INSERT INTO ledger_lots (tenant_id, user_id, asset, expires_at, id, granted, remaining, created_at,
		updated_at) VALUES `)
	q.WriteString(m.Tuples(rows, 9))
	q.WriteString(` ON CONFLICT (tenant_id, user_id, asset, expires_at) DO UPDATE SET
		granted = ledger_lots.granted + excluded.granted, remaining = ledger_lots.remaining + excluded.remaining,
		updated_at = excluded.updated_at`)
	return q.String()
}

// addToLots adds granted value to lots, creating missing ones, in one order.
func addToLots(ctx context.Context, tx *sqldb.Tx, adds map[lotKey]int64, now time.Time, newID func() string) error {
	keys := make([]lotKey, 0, len(adds))
	for k := range adds {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b lotKey) int {
		return cmp.Or(cmp.Compare(a.tenant, b.tenant), cmp.Compare(a.user, b.user), cmp.Compare(a.asset, b.asset),
			cmp.Compare(a.expires, b.expires))
	})
	at := sqldb.Micros(now)
	for start := 0; start < len(keys); {
		part := keys[start : start+tx.Dialect().ChunkRows(len(keys)-start, maxRows)]
		start += len(part)
		args := make([]any, 0, 9*len(part))
		for _, k := range part {
			args = append(args, k.tenant, k.user, k.asset, k.expires, newID(), adds[k], adds[k], at, at)
		}
		if _, err := tx.Exec(ctx, addToLotsSQL(tx.Dialect(), len(part)), args...); err != nil {
			return fmt.Errorf("ledger: update lots: %w", err)
		}
	}
	return nil
}

// account is a user's account row as locked by a writer.
type account struct {
	exists  bool
	balance int64
	held    int64
}

func (a account) available() int64 { return a.balance - a.held }

// lockAccount reads a user's account row, locking it until the transaction ends (on SQLite the
// write transaction is exclusive already). The account lock serialises every writer of the
// account's lots and holds.
func (s *Service) lockAccount(ctx context.Context, tx *sqldb.Tx, tenantID, userID, asset string, skip bool) (account, bool, error) {
	lock := s.db.Dialect().ForUpdate()
	if skip {
		lock = s.db.Dialect().SkipLocked()
	}
	a := account{exists: true}
	err := tx.QueryRow(ctx, `SELECT balance, held FROM ledger_accounts
		WHERE tenant_id = $1 AND user_id = $2 AND asset = $3 AND shard = 0`+lock, tenantID, userID, asset).Scan(&a.balance, &a.held)
	if errors.Is(err, sql.ErrNoRows) {
		return account{}, false, nil
	}
	if err != nil {
		return account{}, false, fmt.Errorf("ledger: lock account: %w", err)
	}
	return a, true, nil
}

// ensureAccount creates a user's account row if missing, then locks it.
func (s *Service) ensureAccount(ctx context.Context, tx *sqldb.Tx, tenantID, userID, asset string, now time.Time) (account, error) {
	at := sqldb.Micros(now)
	if _, err := tx.Exec(ctx, `INSERT INTO ledger_accounts (tenant_id, user_id, asset, shard, balance, held, created_at, updated_at)
		VALUES ($1, $2, $3, 0, 0, 0, $4, $4) ON CONFLICT (tenant_id, user_id, asset, shard) DO NOTHING`,
		tenantID, userID, asset, at); err != nil {
		return account{}, fmt.Errorf("ledger: create account: %w", err)
	}
	a, _, err := s.lockAccount(ctx, tx, tenantID, userID, asset, false)
	return a, err
}

// setAccount writes a user's account after a change computed in Go.
func setAccount(ctx context.Context, tx *sqldb.Tx, tenantID, userID, asset string, balanceDelta, heldDelta int64, now time.Time) error {
	_, err := tx.Exec(ctx, `UPDATE ledger_accounts SET balance = balance + $1, held = held + $2, updated_at = $3
		WHERE tenant_id = $4 AND user_id = $5 AND asset = $6 AND shard = 0`,
		balanceDelta, heldDelta, sqldb.Micros(now), tenantID, userID, asset)
	if err != nil {
		return fmt.Errorf("ledger: update account: %w", err)
	}
	return nil
}

// event builds the domain event of an entry.
func entryEvent(typ string, e Entry) (bus.Event, error) {
	data, err := json.Marshal(e)
	if err != nil {
		return bus.Event{}, err
	}
	return bus.Event{Type: typ, TenantID: e.TenantID, UserID: e.UserID, SourceKind: "ledger_entry", SourceID: e.ID,
		Time: e.CreatedAt, Data: data}, nil
}

// emit writes EventEntryPosted for each entry (and EventPointsExpired for expire entries) through
// the Events hook, in tx.
func (s *Service) emit(ctx context.Context, tx *sqldb.Tx, entries []Entry) error {
	if s.events == nil || len(entries) == 0 {
		return nil
	}
	events := make([]bus.Event, 0, len(entries))
	for _, e := range entries {
		ev, err := entryEvent(EventEntryPosted, e)
		if err != nil {
			return err
		}
		events = append(events, ev)
		if e.Kind == KindExpire {
			ev, err := entryEvent(EventPointsExpired, e)
			if err != nil {
				return err
			}
			events = append(events, ev)
		}
	}
	if err := s.events(ctx, tx, events...); err != nil {
		return fmt.Errorf("ledger: emit events: %w", err)
	}
	return nil
}

// posted counts committed entries by kind, once tx commits.
func (s *Service) posted(tx *sqldb.Tx, entries []Entry) {
	if len(entries) == 0 {
		return
	}
	counts := map[Kind]int{}
	for _, e := range entries {
		counts[e.Kind]++
	}
	tx.AfterCommit(func() {
		for k, n := range counts {
			s.metrics.entries.WithLabelValues(string(k)).Add(float64(n))
		}
	})
}
