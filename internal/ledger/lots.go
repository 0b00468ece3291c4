package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// Lot is part of a user's balance with one expiry.
type Lot struct {
	Asset string `json:"asset"`
	// ExpiresAt is nil for value that never expires.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Debt marks the lot that records a balance driven below zero by an adjustment; its Remaining
	// is negative and is paid off from the other lots before they can be spent.
	Debt      bool  `json:"debt,omitempty"`
	Granted   int64 `json:"granted"`
	Remaining int64 `json:"remaining"`
	Held      int64 `json:"held"`
	Expired   int64 `json:"expired"`
}

// lot is a lot as loaded by a writer holding the account lock; changes are made in Go and saved
// as deltas.
type lot struct {
	expires                   int64
	id                        string
	remaining, held, expired  int64
	dRemaining, dHeld, dExpir int64
	fresh                     bool // not in the table yet (a new debt lot)
}

func (l *lot) free() int64 { return l.remaining - l.held }

func (l *lot) take(n int64) {
	l.remaining -= n
	l.dRemaining -= n
}

func (l *lot) hold(n int64) {
	l.held += n
	l.dHeld += n
}

// loadLots reads a user's lots of one asset in spending order: the debt lot, then by expiry, never
// last. The caller holds the account lock.
func loadLots(ctx context.Context, tx *sqldb.Tx, tenantID, userID, asset string) ([]*lot, error) {
	rows, err := tx.Query(ctx, `SELECT expires_at, id, remaining, held, expired FROM ledger_lots
		WHERE tenant_id = $1 AND user_id = $2 AND asset = $3 ORDER BY expires_at`, tenantID, userID, asset)
	if err != nil {
		return nil, fmt.Errorf("ledger: read lots: %w", err)
	}
	defer rows.Close()
	var out []*lot
	for rows.Next() {
		l := &lot{}
		if err := rows.Scan(&l.expires, &l.id, &l.remaining, &l.held, &l.expired); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// saveLots writes the changes made to lots.
func saveLots(ctx context.Context, tx *sqldb.Tx, tenantID, userID, asset string, lots []*lot, now time.Time) error {
	at := sqldb.Micros(now)
	for _, l := range lots {
		if l.fresh {
			if _, err := tx.Exec(ctx, `INSERT INTO ledger_lots (tenant_id, user_id, asset, expires_at, id, granted,
				remaining, held, expired, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, 0, 0, $7, $7)`,
				tenantID, userID, asset, l.expires, l.id, l.remaining, at); err != nil {
				return fmt.Errorf("ledger: create lot: %w", err)
			}
			continue
		}
		if l.dRemaining == 0 && l.dHeld == 0 && l.dExpir == 0 {
			continue
		}
		if _, err := tx.Exec(ctx, `UPDATE ledger_lots SET remaining = remaining + $1, held = held + $2,
			expired = expired + $3, updated_at = $4 WHERE tenant_id = $5 AND user_id = $6 AND asset = $7 AND expires_at = $8`,
			l.dRemaining, l.dHeld, l.dExpir, at, tenantID, userID, asset, l.expires); err != nil {
			return fmt.Errorf("ledger: update lot: %w", err)
		}
	}
	return nil
}

// netDebt pays the debt lot off from the free part of the other lots, earliest expiry first. The
// balance does not change: the debt was already counted in it.
func netDebt(lots []*lot) {
	if len(lots) == 0 || lots[0].expires != debtLot || lots[0].remaining >= 0 {
		return
	}
	debt := lots[0]
	for _, l := range lots[1:] {
		if debt.remaining >= 0 {
			return
		}
		n := min(max(l.free(), 0), -debt.remaining)
		l.take(n)
		debt.take(-n)
	}
}

// allocation is part of an amount taken from one lot.
type allocation struct {
	lot    *lot
	amount int64
}

// allocate picks amount from the free part of the lots, earliest expiry first (never-expiring
// last), and returns what it picked; it may pick less when the lots hold less.
func allocate(lots []*lot, amount int64) []allocation {
	var out []allocation
	for _, l := range lots {
		if amount == 0 {
			break
		}
		if l.expires == debtLot {
			continue
		}
		n := min(max(l.free(), 0), amount)
		if n > 0 {
			out = append(out, allocation{lot: l, amount: n})
			amount -= n
		}
	}
	return out
}

// addDebt records amount owed in the debt lot, creating it when missing.
func addDebt(lots []*lot, amount int64, now time.Time) []*lot {
	if len(lots) > 0 && lots[0].expires == debtLot {
		lots[0].take(amount)
		return lots
	}
	debt := &lot{expires: debtLot, id: ids.New("lot", now), remaining: -amount, fresh: true}
	return append([]*lot{debt}, lots...)
}

// Lots lists a user's lots of an asset in spending order (the debt lot first, never-expiring last),
// leaving out those fully used.
func (s *Service) Lots(ctx context.Context, tenantID, userID, asset string) ([]Lot, error) {
	rows, err := s.db.Reader().Query(ctx, `SELECT expires_at, granted, remaining, held, expired FROM ledger_lots
		WHERE tenant_id = $1 AND user_id = $2 AND asset = $3 AND remaining <> 0 ORDER BY expires_at`, tenantID, userID, asset)
	if err != nil {
		return nil, fmt.Errorf("ledger: read lots: %w", err)
	}
	defer rows.Close()
	out := []Lot{}
	for rows.Next() {
		var (
			l       = Lot{Asset: asset}
			expires int64
		)
		if err := rows.Scan(&expires, &l.Granted, &l.Remaining, &l.Held, &l.Expired); err != nil {
			return nil, err
		}
		l.ExpiresAt = lotTime(expires)
		l.Debt = expires == debtLot
		out = append(out, l)
	}
	return out, rows.Err()
}
