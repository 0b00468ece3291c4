package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// Hold TTL bounds.
const (
	DefaultHoldTTL = 15 * time.Minute
	MaxHoldTTL     = 30 * 24 * time.Hour
)

// HoldParams describes a reservation.
type HoldParams struct {
	TenantID string
	UserID   string
	Asset    string
	Amount   int64
	// TTL is how long the hold lasts unless captured or released (default 15 minutes, at most 30
	// days); after it the TTL sweep releases it.
	TTL time.Duration
	// BusinessKey makes the hold idempotent: the same key returns the same hold, whatever its state.
	BusinessKey string
	SourceKind  string
	SourceID    string
}

// Hold reserves part of a user's available balance, taken from the lots earliest expiry first: the
// balance stays, the available balance drops. More than the available balance is refused with a
// Conflict (insufficient-balance) and writes nothing. A repeated business key returns the first
// hold with created=false (a Conflict, ledger-key-reused, if it was for another user, asset or
// amount).
func (s *Service) Hold(ctx context.Context, p HoldParams) (Hold, bool, error) {
	now := s.clock.Now()
	if p.TTL == 0 {
		p.TTL = DefaultHoldTTL
	}
	var fs problem.Fields
	checkTenant(&fs, p.TenantID)
	checkUser(&fs, p.UserID)
	if err := s.checkAsset(ctx, &fs, p.TenantID, p.Asset); err != nil {
		return Hold{}, false, err
	}
	checkAmount(&fs, p.Amount)
	if p.TTL < time.Second || p.TTL > MaxHoldTTL {
		fs.Add("ttl", "must be between 1 second and %s", MaxHoldTTL)
	}
	checkKey(&fs, "business_key", p.BusinessKey)
	checkSource(&fs, p.SourceKind, p.SourceID)
	if err := fs.Err("the hold is invalid"); err != nil {
		return Hold{}, false, err
	}
	h := Hold{ID: ids.New("hld", now), TenantID: p.TenantID, UserID: p.UserID, Asset: p.Asset, Amount: p.Amount,
		State: HoldActive, BusinessKey: p.BusinessKey, SourceKind: p.SourceKind, SourceID: p.SourceID,
		CreatedAt: now, ExpiresAt: now.Add(p.TTL)}
	var (
		out     Hold
		created bool
	)
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		out, created, err = s.hold(ctx, tx, h)
		return err
	})
	return out, created, err
}

func (s *Service) hold(ctx context.Context, tx *sqldb.Tx, h Hold) (Hold, bool, error) {
	acct, _, err := s.lockAccount(ctx, tx, h.TenantID, h.UserID, h.Asset, false)
	if err != nil {
		return Hold{}, false, err
	}
	if old, ok, err := holdByKey(ctx, tx, h.TenantID, h.BusinessKey); err != nil || ok {
		return sameHold(old, h, err)
	}
	if h.Amount > acct.available() {
		return Hold{}, false, insufficient(acct.available(), h.Amount)
	}
	res, err := tx.Exec(ctx, `INSERT INTO ledger_holds (tenant_id, user_id, id, business_key, asset, amount, state,
		source_kind, source_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $10)
		ON CONFLICT (tenant_id, business_key) DO NOTHING`, h.TenantID, h.UserID, h.ID, h.BusinessKey, h.Asset, h.Amount,
		h.SourceKind, h.SourceID, sqldb.Micros(h.CreatedAt), sqldb.Micros(h.ExpiresAt))
	if err != nil {
		return Hold{}, false, fmt.Errorf("ledger: insert hold: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 { // the key was taken meanwhile, for another account
		old, _, err := holdByKey(ctx, tx, h.TenantID, h.BusinessKey)
		return sameHold(old, h, err)
	}
	now := s.clock.Now()
	lots, err := loadLots(ctx, tx, h.TenantID, h.UserID, h.Asset)
	if err != nil {
		return Hold{}, false, err
	}
	netDebt(lots)
	for _, a := range allocate(lots, h.Amount) {
		a.lot.hold(a.amount)
		if _, err := tx.Exec(ctx, `INSERT INTO ledger_hold_lots (tenant_id, user_id, hold_id, lot_expires_at, amount)
			VALUES ($1, $2, $3, $4, $5)`, h.TenantID, h.UserID, h.ID, a.lot.expires, a.amount); err != nil {
			return Hold{}, false, fmt.Errorf("ledger: insert hold allocation: %w", err)
		}
	}
	if err := saveLots(ctx, tx, h.TenantID, h.UserID, h.Asset, lots, now); err != nil {
		return Hold{}, false, err
	}
	if err := setAccount(ctx, tx, h.TenantID, h.UserID, h.Asset, 0, h.Amount, now); err != nil {
		return Hold{}, false, err
	}
	return h, true, nil
}

func sameHold(old, want Hold, err error) (Hold, bool, error) {
	if err != nil {
		return Hold{}, false, err
	}
	if old.UserID != want.UserID || old.Asset != want.Asset || old.Amount != want.Amount {
		return Hold{}, false, problem.Conflict("business key %q was already used for a hold of %d %s for %s",
			want.BusinessKey, old.Amount, old.Asset, old.UserID).WithCode("ledger-key-reused").
			WithField("business_key", "already used for a different hold").With("hold_id", old.ID)
	}
	return old, false, nil
}

const holdColumns = `tenant_id, user_id, id, business_key, asset, amount, captured, state, source_kind, source_id,
	entry_id, created_at, expires_at, settled_at`

func scanHold(scan func(...any) error) (Hold, error) {
	var (
		h                  Hold
		state              string
		created, expiresAt int64
		settled            sql.NullInt64
	)
	if err := scan(&h.TenantID, &h.UserID, &h.ID, &h.BusinessKey, &h.Asset, &h.Amount, &h.Captured, &state,
		&h.SourceKind, &h.SourceID, &h.EntryID, &created, &expiresAt, &settled); err != nil {
		return Hold{}, err
	}
	h.State = HoldState(state)
	h.CreatedAt, h.ExpiresAt = sqldb.FromMicros(created), sqldb.FromMicros(expiresAt)
	if settled.Valid {
		t := sqldb.FromMicros(settled.Int64)
		h.SettledAt = &t
	}
	return h, nil
}

func holdWhere(ctx context.Context, q sqldb.Querier, where string, args ...any) (Hold, bool, error) {
	h, err := scanHold(q.QueryRow(ctx, `SELECT `+holdColumns+` FROM ledger_holds WHERE `+where, args...).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return Hold{}, false, nil
	}
	if err != nil {
		return Hold{}, false, fmt.Errorf("ledger: read hold: %w", err)
	}
	return h, true, nil
}

func holdByKey(ctx context.Context, q sqldb.Querier, tenantID, key string) (Hold, bool, error) {
	return holdWhere(ctx, q, `tenant_id = $1 AND business_key = $2`, tenantID, key)
}

// GetHold returns one of the tenant's holds.
func (s *Service) GetHold(ctx context.Context, tenantID, holdID string) (Hold, error) {
	h, ok, err := holdWhere(ctx, s.db.Reader(), `tenant_id = $1 AND id = $2`, tenantID, holdID)
	if err != nil {
		return Hold{}, err
	}
	if !ok {
		return Hold{}, holdNotFound(holdID)
	}
	return h, nil
}

func holdNotFound(id string) error {
	return problem.NotFound("hold %q not found", id).WithCode("hold-not-found")
}

// CaptureParams names the hold to capture.
type CaptureParams struct {
	TenantID string
	HoldID   string
	// Amount captures part of the hold (the rest is released); 0 captures all of it.
	Amount int64
	Reason string
}

// Capture turns an active hold into a spend: a capture entry from the user to sys:spent, taken from
// the lots the hold reserved; what is not captured is released. Capturing a captured hold again
// returns the same entry; a released hold, or one past its TTL, is a Conflict (hold-not-active,
// hold-expired — the latter releases it).
func (s *Service) Capture(ctx context.Context, p CaptureParams) (Hold, Entry, error) {
	var fs problem.Fields
	checkTenant(&fs, p.TenantID)
	if p.HoldID == "" {
		fs.Add("hold_id", "is required")
	}
	if p.Amount < 0 || p.Amount > MaxAmount {
		fs.Add("amount", "must be positive (or 0 for the whole hold)")
	}
	if len(p.Reason) > 500 {
		fs.Add("reason", "must be at most 500 characters")
	}
	if err := fs.Err("the capture is invalid"); err != nil {
		return Hold{}, Entry{}, err
	}
	var (
		h        Hold
		e        Entry
		expiredE error
	)
	err := s.settle(ctx, p.TenantID, p.HoldID, func(tx *sqldb.Tx, cur Hold, now time.Time) error {
		expiredE = nil
		switch {
		case cur.State == HoldCaptured:
			h = cur
			found, err := entriesByKey(ctx, tx, tx.Dialect(), cur.TenantID, []string{captureKey(cur.ID)})
			e = found[captureKey(cur.ID)]
			return err
		case cur.State != HoldActive:
			return notActive(cur)
		case !now.Before(cur.ExpiresAt):
			var err error
			h, err = s.release(ctx, tx, cur, HoldExpired, now)
			expiredE = problem.Conflict("hold %s expired at %s and was released", cur.ID, cur.ExpiresAt.Format(time.RFC3339)).
				WithCode("hold-expired")
			return err
		case p.Amount > cur.Amount:
			return problem.Invalid("the capture is larger than the hold").
				WithField("amount", fmt.Sprintf("must be at most the held %d", cur.Amount))
		}
		var err error
		h, e, err = s.capture(ctx, tx, cur, p, now)
		return err
	})
	if err == nil {
		err = expiredE
	}
	if err != nil {
		return Hold{}, Entry{}, err
	}
	return h, e, nil
}

// Release gives an active hold's amount back to the available balance. Releasing a released (or
// expired) hold again returns it unchanged; a captured hold is a Conflict (hold-not-active).
func (s *Service) Release(ctx context.Context, tenantID, holdID string) (Hold, error) {
	var h Hold
	err := s.settle(ctx, tenantID, holdID, func(tx *sqldb.Tx, cur Hold, now time.Time) error {
		switch cur.State {
		case HoldReleased, HoldExpired:
			h = cur
			return nil
		case HoldCaptured:
			return notActive(cur)
		}
		var err error
		h, err = s.release(ctx, tx, cur, HoldReleased, now)
		return err
	})
	return h, err
}

func notActive(h Hold) error {
	return problem.Conflict("hold %s is %s", h.ID, h.State).WithCode("hold-not-active").With("state", string(h.State))
}

func captureKey(holdID string) string { return internalKeyPrefix + "capture:" + holdID }

// settle runs fn on a hold with its account locked, in one transaction.
func (s *Service) settle(ctx context.Context, tenantID, holdID string, fn func(tx *sqldb.Tx, cur Hold, now time.Time) error) error {
	h, ok, err := holdWhere(ctx, s.db.Reader(), `tenant_id = $1 AND id = $2`, tenantID, holdID)
	if err != nil {
		return err
	}
	if !ok {
		return holdNotFound(holdID)
	}
	return s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		if _, _, err := s.lockAccount(ctx, tx, h.TenantID, h.UserID, h.Asset, false); err != nil {
			return err
		}
		cur, _, err := holdWhere(ctx, tx, `tenant_id = $1 AND user_id = $2 AND id = $3`, h.TenantID, h.UserID, h.ID)
		if err != nil {
			return err
		}
		return fn(tx, cur, s.clock.Now())
	})
}

// holdAllocations loads what a hold reserves, in lot order, and the lots themselves.
func holdAllocations(ctx context.Context, tx *sqldb.Tx, h Hold) ([]*lot, []allocation, error) {
	lots, err := loadLots(ctx, tx, h.TenantID, h.UserID, h.Asset)
	if err != nil {
		return nil, nil, err
	}
	byExpiry := make(map[int64]*lot, len(lots))
	for _, l := range lots {
		byExpiry[l.expires] = l
	}
	rows, err := tx.Query(ctx, `SELECT lot_expires_at, amount FROM ledger_hold_lots
		WHERE tenant_id = $1 AND user_id = $2 AND hold_id = $3 ORDER BY lot_expires_at`, h.TenantID, h.UserID, h.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: read hold allocations: %w", err)
	}
	defer rows.Close()
	var allocs []allocation
	for rows.Next() {
		var (
			expires int64
			amount  int64
		)
		if err := rows.Scan(&expires, &amount); err != nil {
			return nil, nil, err
		}
		l, ok := byExpiry[expires]
		if !ok {
			return nil, nil, fmt.Errorf("ledger: hold %s reserves a missing lot", h.ID)
		}
		allocs = append(allocs, allocation{lot: l, amount: amount})
	}
	return lots, allocs, rows.Err()
}

// unreserve drops a hold's allocations from its lots, consuming the first take of them (earliest
// expiry first), and saves the lots.
func unreserve(ctx context.Context, tx *sqldb.Tx, h Hold, take int64, now time.Time) error {
	lots, allocs, err := holdAllocations(ctx, tx, h)
	if err != nil {
		return err
	}
	for _, a := range allocs {
		a.lot.hold(-a.amount)
		n := min(a.amount, take)
		a.lot.take(n)
		take -= n
	}
	if err := saveLots(ctx, tx, h.TenantID, h.UserID, h.Asset, lots, now); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `DELETE FROM ledger_hold_lots WHERE tenant_id = $1 AND user_id = $2 AND hold_id = $3`,
		h.TenantID, h.UserID, h.ID)
	return err
}

func (s *Service) release(ctx context.Context, tx *sqldb.Tx, h Hold, state HoldState, now time.Time) (Hold, error) {
	if err := unreserve(ctx, tx, h, 0, now); err != nil {
		return Hold{}, err
	}
	if err := setAccount(ctx, tx, h.TenantID, h.UserID, h.Asset, 0, -h.Amount, now); err != nil {
		return Hold{}, err
	}
	if _, err := tx.Exec(ctx, `UPDATE ledger_holds SET state = $1, settled_at = $2
		WHERE tenant_id = $3 AND user_id = $4 AND id = $5`, string(state), sqldb.Micros(now), h.TenantID, h.UserID, h.ID); err != nil {
		return Hold{}, fmt.Errorf("ledger: release hold: %w", err)
	}
	h.State, h.SettledAt = state, &now
	return h, nil
}

func (s *Service) capture(ctx context.Context, tx *sqldb.Tx, h Hold, p CaptureParams, now time.Time) (Hold, Entry, error) {
	amount := p.Amount
	if amount == 0 {
		amount = h.Amount
	}
	pst := posting{Entry: Entry{ID: ids.New("led", now), TenantID: h.TenantID, UserID: h.UserID, Kind: KindCapture,
		Asset: h.Asset, Amount: amount, Debit: h.UserID, Credit: AccountSpent, Delta: -amount,
		BusinessKey: captureKey(h.ID), SourceKind: h.SourceKind, SourceID: h.SourceID, Reason: p.Reason, HoldID: h.ID,
		CreatedAt: now}}
	if _, dup, err := s.insertOne(ctx, tx, pst); err != nil || dup {
		if err == nil { // the key is the hold's own, and the hold is active under the account lock
			err = fmt.Errorf("ledger: hold %s has a capture entry but is active", h.ID)
		}
		return Hold{}, Entry{}, err
	}
	if err := unreserve(ctx, tx, h, amount, now); err != nil {
		return Hold{}, Entry{}, err
	}
	// finish moves the balance; the hold's whole amount leaves held.
	if _, err := s.finish(ctx, tx, pst, -amount, -h.Amount, now); err != nil {
		return Hold{}, Entry{}, err
	}
	if _, err := tx.Exec(ctx, `UPDATE ledger_holds SET state = 'captured', captured = $1, entry_id = $2, settled_at = $3
		WHERE tenant_id = $4 AND user_id = $5 AND id = $6`, amount, pst.ID, sqldb.Micros(now), h.TenantID, h.UserID, h.ID); err != nil {
		return Hold{}, Entry{}, fmt.Errorf("ledger: capture hold: %w", err)
	}
	h.State, h.Captured, h.EntryID, h.SettledAt = HoldCaptured, amount, pst.ID, &now
	return h, pst.Entry, nil
}

// ReleaseExpiredHolds releases up to limit active holds past their TTL (state "expired") and
// returns how many it released. It is safe to run on every node at once: each hold is released
// under its account's lock, after checking it is still active.
func (s *Service) ReleaseExpiredHolds(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		limit = 100
	}
	now := s.clock.Now()
	rows, err := s.db.Reader().Query(ctx, `SELECT tenant_id, user_id, id, asset FROM ledger_holds
		WHERE state = 'active' AND expires_at <= $1 ORDER BY expires_at LIMIT $2`, sqldb.Micros(now), limit)
	if err != nil {
		return 0, fmt.Errorf("ledger: find expired holds: %w", err)
	}
	var due []Hold
	for rows.Next() {
		var h Hold
		if err := rows.Scan(&h.TenantID, &h.UserID, &h.ID, &h.Asset); err != nil {
			rows.Close()
			return 0, err
		}
		due = append(due, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	released := 0
	for _, h := range due {
		done := false
		err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
			done = false
			if _, ok, err := s.lockAccount(ctx, tx, h.TenantID, h.UserID, h.Asset, true); err != nil || !ok {
				return err // locked by another node: it is someone else's to release
			}
			cur, ok, err := holdWhere(ctx, tx, `tenant_id = $1 AND user_id = $2 AND id = $3`, h.TenantID, h.UserID, h.ID)
			if err != nil || !ok || cur.State != HoldActive || now.Before(cur.ExpiresAt) {
				return err
			}
			_, err = s.release(ctx, tx, cur, HoldExpired, now)
			done = err == nil
			return err
		})
		if err != nil {
			return released, err
		}
		if done {
			released++
		}
	}
	return released, nil
}
