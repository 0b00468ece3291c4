package ledger

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// Accounts lists a user's accounts by asset, with what expires within the service's
// ExpiringWindow. A user without entries has no accounts.
func (s *Service) Accounts(ctx context.Context, tenantID, userID string) ([]Account, error) {
	var fs problem.Fields
	checkTenant(&fs, tenantID)
	checkUser(&fs, userID)
	if err := fs.Err("the account query is invalid"); err != nil {
		return nil, err
	}
	rows, err := s.db.Reader().Query(ctx, `SELECT asset, balance, held FROM ledger_accounts
		WHERE tenant_id = $1 AND user_id = $2 AND shard = 0 ORDER BY asset`, tenantID, userID)
	if err != nil {
		return nil, fmt.Errorf("ledger: read accounts: %w", err)
	}
	defer rows.Close()
	out := []Account{}
	for rows.Next() {
		var a Account
		if err := rows.Scan(&a.Asset, &a.Balance, &a.Held); err != nil {
			return nil, err
		}
		a.Available = a.Balance - a.Held
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	before := s.clock.Now().Add(s.window)
	for i := range out {
		lots, err := s.readLots(ctx, tenantID, userID, out[i].Asset)
		if err != nil {
			return nil, err
		}
		out[i].ExpiringBefore = before
		for _, l := range lots {
			if l.expires <= sqldb.Micros(before) {
				out[i].ExpiringSoon += max(l.free(), 0)
			}
		}
	}
	return out, nil
}

// readLots reads a user's lots of an asset for display, with the debt netted as a writer would.
func (s *Service) readLots(ctx context.Context, tenantID, userID, asset string) ([]*lot, error) {
	rows, err := s.db.Reader().Query(ctx, `SELECT expires_at, id, remaining, held, expired FROM ledger_lots
		WHERE tenant_id = $1 AND user_id = $2 AND asset = $3 AND remaining <> 0 ORDER BY expires_at`, tenantID, userID, asset)
	if err != nil {
		return nil, fmt.Errorf("ledger: read lots: %w", err)
	}
	defer rows.Close()
	var lots []*lot
	for rows.Next() {
		l := &lot{}
		if err := rows.Scan(&l.expires, &l.id, &l.remaining, &l.held, &l.expired); err != nil {
			return nil, err
		}
		lots = append(lots, l)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	netDebt(lots)
	return lots, nil
}

// Period is the grouping of an expiring-soon summary.
type Period string

// The periods of ExpiringSoon.
const (
	ByDay   Period = "day"
	ByMonth Period = "month"
)

// ExpiringSoonParams asks what of a user's balance expires within a window.
type ExpiringSoonParams struct {
	TenantID string
	UserID   string
	Asset    string
	// Within is the window from now (default 30 days, at most 10 years).
	Within time.Duration
	// By groups the amounts per local day (default) or month.
	By Period
	// Location is the tenant's time zone (nil means UTC).
	Location *time.Location
}

// ExpiringSummary is what of a user's balance expires within a window.
type ExpiringSummary struct {
	Asset string `json:"asset"`
	By    Period `json:"by"`
	// Until is the end of the window.
	Until time.Time  `json:"until"`
	Items []Expiring `json:"items"`
}

// ExpiringSoon sums, per local day or month, the free value of the user's lots that expire within
// the window (value already past its expiry but not yet swept is included: it goes next).
func (s *Service) ExpiringSoon(ctx context.Context, p ExpiringSoonParams) (ExpiringSummary, error) {
	if p.Within == 0 {
		p.Within = 30 * 24 * time.Hour
	}
	if p.By == "" {
		p.By = ByDay
	}
	if p.Location == nil {
		p.Location = time.UTC
	}
	var fs problem.Fields
	checkTenant(&fs, p.TenantID)
	checkUser(&fs, p.UserID)
	if err := s.checkAsset(ctx, &fs, p.TenantID, p.Asset); err != nil {
		return ExpiringSummary{}, err
	}
	if p.Within < 0 || p.Within > 10*366*24*time.Hour {
		fs.Add("within", "must be positive and at most 10 years")
	}
	if p.By != ByDay && p.By != ByMonth {
		fs.Add("by", "must be day or month")
	}
	if err := fs.Err("the expiring query is invalid"); err != nil {
		return ExpiringSummary{}, err
	}
	lots, err := s.readLots(ctx, p.TenantID, p.UserID, p.Asset)
	if err != nil {
		return ExpiringSummary{}, err
	}
	end := s.clock.Now().Add(p.Within)
	until := sqldb.Micros(end)
	out := []Expiring{}
	for _, l := range lots {
		if l.expires == debtLot || l.expires > until || l.free() <= 0 {
			continue
		}
		at := sqldb.FromMicros(l.expires)
		// The last valid moment is just before the expiry instant.
		last := at.Add(-time.Microsecond).In(p.Location)
		period := last.Format("2006-01-02")
		if p.By == ByMonth {
			period = last.Format("2006-01")
		}
		if n := len(out); n > 0 && out[n-1].Period == period {
			out[n-1].Amount += l.free()
			continue
		}
		out = append(out, Expiring{Period: period, ExpiresAt: at, Amount: l.free()})
	}
	return ExpiringSummary{Asset: p.Asset, By: p.By, Until: end, Items: out}, nil
}

// Liability returns the tenant's position in an asset from its system accounts.
func (s *Service) Liability(ctx context.Context, tenantID, asset string) (Liability, error) {
	var fs problem.Fields
	checkTenant(&fs, tenantID)
	if err := s.checkAsset(ctx, &fs, tenantID, asset); err != nil {
		return Liability{}, err
	}
	if err := fs.Err("the liability query is invalid"); err != nil {
		return Liability{}, err
	}
	rows, err := s.db.Reader().Query(ctx, `SELECT user_id, COALESCE(SUM(balance), 0) FROM ledger_accounts
		WHERE tenant_id = $1 AND user_id IN ($2, $3, $4, $5) AND asset = $6 GROUP BY user_id`,
		tenantID, AccountIssuance, AccountSpent, AccountExpired, AccountAdjustment, asset)
	if err != nil {
		return Liability{}, fmt.Errorf("ledger: read liability: %w", err)
	}
	defer rows.Close()
	l := Liability{Asset: asset}
	for rows.Next() {
		var (
			owner string
			sum   int64
		)
		if err := rows.Scan(&owner, &sum); err != nil {
			return Liability{}, err
		}
		switch owner {
		case AccountIssuance:
			l.Issued = -sum
		case AccountSpent:
			l.Spent = sum
		case AccountExpired:
			l.Expired = sum
		case AccountAdjustment:
			l.Adjusted = -sum
		}
	}
	l.Outstanding = l.Issued - l.Spent - l.Expired + l.Adjusted
	return l, rows.Err()
}

// ListEntriesParams filters a tenant's entries. UserID is required unless SourceKind and SourceID
// are both given.
type ListEntriesParams struct {
	TenantID   string
	UserID     string
	Asset      string
	From       time.Time // inclusive
	To         time.Time // exclusive
	SourceKind string
	SourceID   string
	Cursor     string
	Limit      int
}

// Entries lists entries newest first, a page at a time.
func (s *Service) Entries(ctx context.Context, p ListEntriesParams) (Page[Entry], error) {
	var fs problem.Fields
	checkTenant(&fs, p.TenantID)
	if p.UserID != "" || p.SourceKind == "" || p.SourceID == "" {
		checkUser(&fs, p.UserID)
	}
	if p.Limit < 0 || p.Limit > sqldb.MaxPageLimit {
		fs.Add("limit", "must be between 1 and %d", sqldb.MaxPageLimit)
	}
	if !p.From.IsZero() && !p.To.IsZero() && !p.To.After(p.From) {
		fs.Add("to", "must be after from")
	}
	after, err := sqldb.DecodeCursor(p.Cursor, 1)
	if err != nil {
		fs.Add("cursor", "is not a cursor this list returned")
	}
	if err := fs.Err("the entry query is invalid"); err != nil {
		return Page[Entry]{}, err
	}
	limit := sqldb.PageLimit(p.Limit)
	where, args := []string{"tenant_id = $1"}, []any{p.TenantID}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if p.UserID != "" {
		add("user_id = ?", p.UserID)
	}
	if p.Asset != "" {
		add("asset = ?", p.Asset)
	}
	if !p.From.IsZero() {
		add("created_at >= ?", sqldb.Micros(p.From))
	}
	if !p.To.IsZero() {
		add("created_at < ?", sqldb.Micros(p.To))
	}
	if p.SourceKind != "" {
		// The literal predicate lets both engines use the partial index on sources even with a
		// generic plan, where the parameter's value is unknown.
		where = append(where, "source_kind <> ''")
		add("source_kind = ?", p.SourceKind)
	}
	if p.SourceID != "" {
		add("source_id = ?", p.SourceID)
	}
	if len(after) == 1 {
		add("id < ?", after[0])
	}
	args = append(args, limit+1)
	rows, err := s.db.Reader().Query(ctx, `SELECT `+entryColumns+` FROM ledger_entries WHERE `+
		strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return Page[Entry]{}, fmt.Errorf("ledger: list entries: %w", err)
	}
	defer rows.Close()
	items := []Entry{}
	for rows.Next() {
		e, err := scanEntry(rows.Scan)
		if err != nil {
			return Page[Entry]{}, err
		}
		items = append(items, e)
	}
	if err := rows.Err(); err != nil {
		return Page[Entry]{}, err
	}
	if len(items) <= limit {
		return Page[Entry]{Items: items}, nil
	}
	items = items[:limit]
	return Page[Entry]{Items: items, Next: sqldb.EncodeCursor(items[limit-1].ID)}, nil
}
