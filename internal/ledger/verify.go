package ledger

import (
	"context"
	"fmt"
)

// The checks Verify runs; each names the Check of the mismatches it finds.
const (
	// CheckBalance: an account's cached balance (summed over its shards) equals the sum of its entries.
	CheckBalance = "balance"
	// CheckZeroSum: the cached balances of one asset sum to zero over all accounts (double entry).
	CheckZeroSum = "zero-sum"
	// CheckLots: a user's lots sum to the account's balance, and their held parts to its held.
	CheckLots = "lots"
	// CheckHeld: a user's held amount equals the sum of the active holds.
	CheckHeld = "held"
	// CheckLotHeld: a lot's held part equals what active holds reserve of it.
	CheckLotHeld = "lot-held"
	// CheckHoldAllocations: an active hold's reservations sum to its amount; a settled hold has none.
	CheckHoldAllocations = "hold-allocations"
)

// Report is the result of Verify.
type Report struct {
	Entries    int        `json:"entries"`
	Accounts   int        `json:"accounts"`
	Lots       int        `json:"lots"`
	Holds      int        `json:"holds"`
	Mismatches []Mismatch `json:"mismatches"`
}

// OK tells whether Verify found nothing wrong.
func (r Report) OK() bool { return len(r.Mismatches) == 0 }

// Mismatch is one thing Verify found wrong: what was cached against what was recomputed.
type Mismatch struct {
	Check    string `json:"check"`
	TenantID string `json:"tenant_id"`
	// Account is the owner (user id or system account), or the hold id for hold checks.
	Account  string `json:"account,omitempty"`
	Asset    string `json:"asset,omitempty"`
	Cached   int64  `json:"cached"`
	Computed int64  `json:"computed"`
	Detail   string `json:"detail"`
}

// String renders a mismatch for the command line.
func (m Mismatch) String() string {
	return fmt.Sprintf("%s: tenant %s account %s asset %s: cached %d, computed %d (%s)",
		m.Check, m.TenantID, m.Account, m.Asset, m.Cached, m.Computed, m.Detail)
}

// verifyQueries select (tenant, account, asset, cached, computed) rows that disagree. Each is a
// UNION ALL of the cached and the recomputed side, grouped: one sort, no join to index.
var verifyQueries = []struct {
	check, detail, query string
}{
	{CheckBalance, "account balance differs from the sum of its entries", `
		SELECT tenant_id, owner, asset, SUM(cached), SUM(computed) FROM (
			SELECT tenant_id, user_id AS owner, asset, balance AS cached, 0 AS computed FROM ledger_accounts
			UNION ALL
			SELECT tenant_id, credit_account, asset, 0, amount FROM ledger_entries
			UNION ALL
			SELECT tenant_id, debit_account, asset, 0, -amount FROM ledger_entries
		) sides GROUP BY tenant_id, owner, asset HAVING SUM(cached) <> SUM(computed)`},
	{CheckZeroSum, "the balances of the asset do not sum to zero", `
		SELECT tenant_id, '', asset, SUM(balance), 0 FROM ledger_accounts GROUP BY tenant_id, asset
		HAVING SUM(balance) <> 0`},
	{CheckLots, "account balance differs from the sum of its lots", `
		SELECT tenant_id, user_id, asset, SUM(cached), SUM(computed) FROM (
			SELECT tenant_id, user_id, asset, balance AS cached, 0 AS computed FROM ledger_accounts
			WHERE shard = 0 AND user_id NOT LIKE 'sys:%'
			UNION ALL
			SELECT tenant_id, user_id, asset, 0, remaining FROM ledger_lots
		) sides GROUP BY tenant_id, user_id, asset HAVING SUM(cached) <> SUM(computed)`},
	{CheckLots, "account held differs from the held parts of its lots", `
		SELECT tenant_id, user_id, asset, SUM(cached), SUM(computed) FROM (
			SELECT tenant_id, user_id, asset, held AS cached, 0 AS computed FROM ledger_accounts
			WHERE shard = 0 AND user_id NOT LIKE 'sys:%'
			UNION ALL
			SELECT tenant_id, user_id, asset, 0, held FROM ledger_lots
		) sides GROUP BY tenant_id, user_id, asset HAVING SUM(cached) <> SUM(computed)`},
	{CheckHeld, "account held differs from the sum of its active holds", `
		SELECT tenant_id, user_id, asset, SUM(cached), SUM(computed) FROM (
			SELECT tenant_id, user_id, asset, held AS cached, 0 AS computed FROM ledger_accounts
			WHERE shard = 0 AND user_id NOT LIKE 'sys:%'
			UNION ALL
			SELECT tenant_id, user_id, asset, 0, amount FROM ledger_holds WHERE state = 'active'
		) sides GROUP BY tenant_id, user_id, asset HAVING SUM(cached) <> SUM(computed)`},
	{CheckLotHeld, "a lot's held part differs from what active holds reserve of it", `
		SELECT tenant_id, user_id, asset, SUM(cached), SUM(computed) FROM (
			SELECT tenant_id, user_id, asset, expires_at, held AS cached, 0 AS computed FROM ledger_lots
			UNION ALL
			SELECT hl.tenant_id, hl.user_id, h.asset, hl.lot_expires_at, 0, hl.amount
			FROM ledger_hold_lots hl JOIN ledger_holds h
				ON h.tenant_id = hl.tenant_id AND h.user_id = hl.user_id AND h.id = hl.hold_id
			WHERE h.state = 'active'
		) sides GROUP BY tenant_id, user_id, asset, expires_at HAVING SUM(cached) <> SUM(computed)`},
	{CheckHoldAllocations, "a hold's reservations do not match it", `
		SELECT h.tenant_id, h.id, h.asset, CASE WHEN h.state = 'active' THEN h.amount ELSE 0 END,
			COALESCE(SUM(hl.amount), 0)
		FROM ledger_holds h LEFT JOIN ledger_hold_lots hl
			ON hl.tenant_id = h.tenant_id AND hl.user_id = h.user_id AND hl.hold_id = h.id
		GROUP BY h.tenant_id, h.id, h.asset, h.state, h.amount
		HAVING CASE WHEN h.state = 'active' THEN h.amount ELSE 0 END <> COALESCE(SUM(hl.amount), 0)`},
}

// Verify recomputes every account from the entries, every user balance from the lots and every
// held amount from the holds, and reports each disagreement. Each check is one statement, so it
// reads one consistent state even while writers run. A non-nil error means Verify could not run.
func (s *Service) Verify(ctx context.Context) (Report, error) {
	var r Report
	q := s.db.Reader()
	for _, c := range []struct {
		dst   *int
		query string
	}{
		{&r.Entries, `SELECT COUNT(*) FROM ledger_entries`},
		{&r.Accounts, `SELECT COUNT(*) FROM ledger_accounts`},
		{&r.Lots, `SELECT COUNT(*) FROM ledger_lots`},
		{&r.Holds, `SELECT COUNT(*) FROM ledger_holds`},
	} {
		if err := q.QueryRow(ctx, c.query).Scan(c.dst); err != nil {
			return Report{}, fmt.Errorf("ledger: verify: %w", err)
		}
	}
	r.Mismatches = []Mismatch{}
	for _, v := range verifyQueries {
		rows, err := q.Query(ctx, v.query)
		if err != nil {
			return Report{}, fmt.Errorf("ledger: verify %s: %w", v.check, err)
		}
		for rows.Next() {
			m := Mismatch{Check: v.check, Detail: v.detail}
			if err := rows.Scan(&m.TenantID, &m.Account, &m.Asset, &m.Cached, &m.Computed); err != nil {
				rows.Close()
				return Report{}, fmt.Errorf("ledger: verify %s: %w", v.check, err)
			}
			r.Mismatches = append(r.Mismatches, m)
		}
		if err := rows.Close(); err != nil {
			return Report{}, err
		}
		if err := rows.Err(); err != nil {
			return Report{}, fmt.Errorf("ledger: verify %s: %w", v.check, err)
		}
	}
	return r, nil
}
