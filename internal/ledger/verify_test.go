package ledger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

func TestVerifyFindsCorruption(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.grant(t, alice, 100, "g-1", days(3))
		b.grant(t, bob, 50, "g-2", never)
		b.spend(t, alice, 30, "s-1")
		h := b.hold(t, bob, 20, "order-1", time.Hour)

		r, err := b.svc.Verify(ctx)
		require.NoError(t, err)
		require.True(t, r.OK(), "%v", r.Mismatches)
		require.Equal(t, 3, r.Entries)
		require.Equal(t, 2, r.Lots)
		require.Equal(t, 1, r.Holds)
		require.GreaterOrEqual(t, r.Accounts, 4) // two users, issuance, spent

		b.corrupted = true
		exec := func(q string, args ...any) {
			_, err := db.Writer().ExecContext(ctx, q, args...)
			require.NoError(t, err)
		}
		// A cached balance off by one: the entries and the lots both disagree, and the asset no
		// longer sums to zero.
		exec(`UPDATE ledger_accounts SET balance = balance + 1 WHERE tenant_id = $1 AND user_id = $2`, shop, alice)
		r, err = b.svc.Verify(ctx)
		require.NoError(t, err)
		require.False(t, r.OK())
		require.ElementsMatch(t, []ledger.Mismatch{
			{Check: ledger.CheckBalance, TenantID: shop, Account: alice, Asset: "points", Cached: 71, Computed: 70,
				Detail: "account balance differs from the sum of its entries"},
			{Check: ledger.CheckZeroSum, TenantID: shop, Asset: "points", Cached: 1, Computed: 0,
				Detail: "the balances of the asset do not sum to zero"},
			{Check: ledger.CheckLots, TenantID: shop, Account: alice, Asset: "points", Cached: 71, Computed: 70,
				Detail: "account balance differs from the sum of its lots"},
		}, r.Mismatches)
		require.Contains(t, r.Mismatches[0].String(), "cached")
		exec(`UPDATE ledger_accounts SET balance = balance - 1 WHERE tenant_id = $1 AND user_id = $2`, shop, alice)

		// A system account shard changed.
		exec(`UPDATE ledger_accounts SET balance = balance - 5 WHERE tenant_id = $1 AND user_id = $2`, shop, ledger.AccountSpent)
		requireChecks(t, b, ledger.CheckBalance, ledger.CheckZeroSum)
		exec(`UPDATE ledger_accounts SET balance = balance + 5 WHERE tenant_id = $1 AND user_id = $2`, shop, ledger.AccountSpent)

		// A lot changed behind the account's back.
		exec(`UPDATE ledger_lots SET remaining = remaining + 2 WHERE tenant_id = $1 AND user_id = $2`, shop, alice)
		requireChecks(t, b, ledger.CheckLots)
		exec(`UPDATE ledger_lots SET remaining = remaining - 2 WHERE tenant_id = $1 AND user_id = $2`, shop, alice)

		// Held amounts that no hold explains.
		exec(`UPDATE ledger_accounts SET held = held + 4 WHERE tenant_id = $1 AND user_id = $2`, shop, alice)
		requireChecks(t, b, ledger.CheckLots, ledger.CheckHeld)
		exec(`UPDATE ledger_accounts SET held = held - 4 WHERE tenant_id = $1 AND user_id = $2`, shop, alice)
		exec(`UPDATE ledger_holds SET state = 'released' WHERE id = $1`, h.ID)
		requireChecks(t, b, ledger.CheckHeld, ledger.CheckLotHeld, ledger.CheckHoldAllocations)
		exec(`UPDATE ledger_holds SET state = 'active' WHERE id = $1`, h.ID)

		// An entry nobody accounted for.
		exec(`INSERT INTO ledger_entries (tenant_id, user_id, id, business_key, kind, asset, amount, debit_account,
			credit_account, created_at) VALUES ($1, $2, 'led_x', 'forged', 'grant', 'points', 9, $3, $2, 0)`, shop, "u-carol", ledger.AccountIssuance)
		requireChecks(t, b, ledger.CheckBalance)

		// Entries are append-only, even by hand.
		_, err = db.Writer().ExecContext(ctx, `UPDATE ledger_entries SET amount = 1 WHERE id = 'led_x'`)
		require.Error(t, err)
		_, err = db.Writer().ExecContext(ctx, `DELETE FROM ledger_entries WHERE id = 'led_x'`)
		require.Error(t, err)
	})
}

// requireChecks runs Verify and requires mismatches of exactly these checks.
func requireChecks(t *testing.T, b *testBundle, checks ...string) {
	t.Helper()
	r, err := b.svc.Verify(context.Background())
	require.NoError(t, err)
	got := map[string]bool{}
	for _, m := range r.Mismatches {
		got[m.Check] = true
	}
	want := map[string]bool{}
	for _, c := range checks {
		want[c] = true
	}
	require.Equal(t, want, got, fmt.Sprint(r.Mismatches))
}

func TestEntries(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		for i := range 7 {
			_, _, err := b.svc.Grant(ctx, ledger.GrantParams{TenantID: shop, UserID: alice, Asset: "points", Amount: int64(i + 1),
				BusinessKey: fmt.Sprintf("g-%d", i), SourceKind: "task", SourceID: fmt.Sprintf("task-%d", i%2)})
			require.NoError(t, err)
			b.clock.Advance(time.Hour)
		}
		_, _, err := b.svc.Grant(ctx, ledger.GrantParams{TenantID: shop, UserID: alice, Asset: "growth", Amount: 9, BusinessKey: "gr-1"})
		require.NoError(t, err)
		_, _, err = b.svc.Grant(ctx, ledger.GrantParams{TenantID: shop, UserID: bob, Asset: "points", Amount: 9, BusinessKey: "b-1",
			SourceKind: "task", SourceID: "task-0"})
		require.NoError(t, err)

		// Newest first, three at a time.
		var keys []string
		cursor := ""
		for {
			page, err := b.svc.Entries(ctx, ledger.ListEntriesParams{TenantID: shop, UserID: alice, Asset: "points",
				Cursor: cursor, Limit: 3})
			require.NoError(t, err)
			for _, e := range page.Items {
				keys = append(keys, e.BusinessKey)
			}
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
		require.Equal(t, []string{"g-6", "g-5", "g-4", "g-3", "g-2", "g-1", "g-0"}, keys)

		list := func(p ledger.ListEntriesParams) []string {
			t.Helper()
			p.TenantID = shop
			page, err := b.svc.Entries(ctx, p)
			require.NoError(t, err)
			out := []string{}
			for _, e := range page.Items {
				out = append(out, e.BusinessKey)
			}
			return out
		}
		require.Equal(t, []string{"gr-1", "g-6", "g-5", "g-4", "g-3", "g-2", "g-1", "g-0"}, list(ledger.ListEntriesParams{UserID: alice}))
		require.Equal(t, []string{"gr-1"}, list(ledger.ListEntriesParams{UserID: alice, Asset: "growth"}))
		require.Equal(t, []string{"g-3", "g-2"}, list(ledger.ListEntriesParams{UserID: alice,
			From: start.Add(2 * time.Hour), To: start.Add(4 * time.Hour)}))
		require.Equal(t, []string{"g-6", "g-4", "g-2", "g-0"}, list(ledger.ListEntriesParams{UserID: alice, SourceKind: "task", SourceID: "task-0"}))
		require.Equal(t, []string{"b-1", "g-6", "g-4", "g-2", "g-0"}, list(ledger.ListEntriesParams{SourceKind: "task", SourceID: "task-0"}))
		require.Empty(t, list(ledger.ListEntriesParams{UserID: bob, Asset: "growth"}))
		require.Empty(t, list(ledger.ListEntriesParams{UserID: alice, SourceKind: "nothing"}))

		for _, tc := range []struct {
			p     ledger.ListEntriesParams
			paths []string
		}{
			{ledger.ListEntriesParams{UserID: alice, Cursor: "garbage!"}, []string{"cursor"}},
			{ledger.ListEntriesParams{UserID: alice, Limit: 1000}, []string{"limit"}},
			{ledger.ListEntriesParams{UserID: alice, From: start, To: start}, []string{"to"}},
			{ledger.ListEntriesParams{}, []string{"user_id"}},
		} {
			tc.p.TenantID = shop
			_, err := b.svc.Entries(ctx, tc.p)
			require.Equal(t, tc.paths, fieldPaths(requireProblem(t, err, "invalid", "")))
		}
	})
}
