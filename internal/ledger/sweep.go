package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// ExpireDue writes an expire entry (user → sys:expired) for what remains free in each lot past its
// expiry, for up to limit accounts, and returns how many entries it wrote. Held value is left
// until its hold settles (a released hold's value is expired by a later sweep). A debt is paid off
// from the lots first. It is safe to run on every node at once: each account is claimed with a
// row lock (PostgreSQL skips accounts another node holds), rechecked under it, and every expiry
// has a business key derived from the lot and how much of it had expired before, so it cannot be
// written twice.
func (s *Service) ExpireDue(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		limit = 100
	}
	now := s.clock.Now()
	due, err := s.dueAccounts(ctx, now, limit)
	if err != nil {
		return 0, err
	}
	written := 0
	for _, a := range due {
		n := 0
		err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
			var err error
			n, err = s.expireAccount(ctx, tx, a, now)
			return err
		})
		if err != nil {
			return written, err
		}
		written += n
	}
	return written, nil
}

// dueAccounts finds accounts with free value in a lot past its expiry.
func (s *Service) dueAccounts(ctx context.Context, now time.Time, limit int) ([]accountKey, error) {
	rows, err := s.db.Reader().Query(ctx, `SELECT DISTINCT tenant_id, user_id, asset FROM ledger_lots
		WHERE expires_at > 0 AND expires_at <= $1 AND remaining > held LIMIT $2`, sqldb.Micros(now), limit)
	if err != nil {
		return nil, fmt.Errorf("ledger: find due lots: %w", err)
	}
	defer rows.Close()
	var out []accountKey
	for rows.Next() {
		var k accountKey
		if err := rows.Scan(&k.tenant, &k.owner, &k.asset); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// expireAccount expires the due lots of one account, under its lock.
func (s *Service) expireAccount(ctx context.Context, tx *sqldb.Tx, a accountKey, now time.Time) (int, error) {
	if _, ok, err := s.lockAccount(ctx, tx, a.tenant, a.owner, a.asset, true); err != nil || !ok {
		return 0, err // locked by another node (or a writer): a later sweep comes back
	}
	lots, err := loadLots(ctx, tx, a.tenant, a.owner, a.asset)
	if err != nil {
		return 0, err
	}
	netDebt(lots)
	var ps []posting
	var total int64
	for _, l := range lots {
		if l.expires == debtLot || l.expires > sqldb.Micros(now) || l.free() <= 0 {
			continue
		}
		amount := l.free()
		ps = append(ps, posting{lot: l.expires, Entry: Entry{ID: ids.New("led", now), TenantID: a.tenant,
			UserID: a.owner, Kind: KindExpire, Asset: a.asset, Amount: amount, Debit: a.owner, Credit: AccountExpired,
			Delta: -amount, BusinessKey: fmt.Sprintf("%sexpire:%s:%d", internalKeyPrefix, l.id, l.expired),
			LotExpiresAt: lotTime(l.expires), CreatedAt: now}})
		l.take(amount)
		l.expired += amount
		l.dExpir += amount
		total += amount
	}
	if len(ps) == 0 {
		return 0, saveLots(ctx, tx, a.tenant, a.owner, a.asset, lots, now) // debt netting, if any
	}
	inserted, err := insertEntries(ctx, tx, ps)
	if err != nil {
		return 0, err
	}
	if len(inserted) != len(ps) {
		// Under the account lock the lot state decides the keys, so this means the table and the
		// lots disagree; refuse rather than expire twice.
		return 0, fmt.Errorf("ledger: expiry of %s/%s/%s found entries already written", a.tenant, a.owner, a.asset)
	}
	if err := saveLots(ctx, tx, a.tenant, a.owner, a.asset, lots, now); err != nil {
		return 0, err
	}
	// Past-due lots with nothing left are of no more use (the entries keep the history).
	if _, err := tx.Exec(ctx, `DELETE FROM ledger_lots WHERE tenant_id = $1 AND user_id = $2 AND asset = $3
		AND expires_at > 0 AND expires_at <= $4 AND remaining = 0 AND held = 0`,
		a.tenant, a.owner, a.asset, sqldb.Micros(now)); err != nil {
		return 0, fmt.Errorf("ledger: drop used lots: %w", err)
	}
	if err := setAccount(ctx, tx, a.tenant, a.owner, a.asset, -total, 0, now); err != nil {
		return 0, err
	}
	entries := make([]Entry, len(ps))
	for i, p := range ps {
		entries[i] = p.Entry
	}
	if err := s.emit(ctx, tx, entries); err != nil {
		return 0, err
	}
	deltas := map[accountKey]int64{{a.tenant, AccountExpired, a.asset, shardOf(a.owner)}: total}
	if err := upsertAccounts(ctx, tx, deltas, now); err != nil {
		return 0, err
	}
	s.posted(tx, entries)
	tx.AfterCommit(func() { s.metrics.expired.Add(float64(total)) })
	return len(ps), nil
}
