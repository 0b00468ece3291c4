package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

var sets = []sqldb.Migrations{ledger.Migrations}

const (
	shop  = "mch_shop"
	other = "mch_other"
	alice = "u-alice"
	bob   = "u-bob"
)

// start is the fake clock's start: 2026-03-10 09:00 UTC, a Tuesday.
var start = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)

type testBundle struct {
	db    *sqldb.DB
	svc   *ledger.Service
	clock *clock.Fake
	reg   *prometheus.Registry
	// corrupted is set by tests that damage the ledger on purpose: it skips the final verify.
	corrupted bool
}

// setup builds a Service on db with a fake clock and a metrics registry. When the test ends, the
// ledger must verify clean (unless the test says otherwise with skipVerify).
func setup(t *testing.T, db *sqldb.DB, opts ...func(*ledger.Options)) *testBundle {
	t.Helper()
	b := &testBundle{db: db, clock: clock.NewFake(start), reg: prometheus.NewRegistry()}
	o := ledger.Options{Clock: b.clock, Registerer: b.reg}
	for _, fn := range opts {
		fn(&o)
	}
	svc, err := ledger.New(db, o)
	require.NoError(t, err)
	b.svc = svc
	t.Cleanup(func() { _ = svc.Close() })
	t.Cleanup(func() {
		if !t.Failed() && !b.corrupted {
			b.requireClean(t)
		}
	})
	return b
}

func (b *testBundle) requireClean(t *testing.T) {
	t.Helper()
	r, err := b.svc.Verify(context.Background())
	require.NoError(t, err)
	require.True(t, r.OK(), "ledger verify: %v", r.Mismatches)
}

func (b *testBundle) grant(t *testing.T, user string, amount int64, key string, exp ledger.Expiry) ledger.Entry {
	t.Helper()
	e, created, err := b.svc.Grant(context.Background(), ledger.GrantParams{TenantID: shop, UserID: user,
		Asset: ledger.AssetPoints, Amount: amount, BusinessKey: key, Expiry: exp, SourceKind: "test", SourceID: key})
	require.NoError(t, err)
	require.True(t, created, "grant %s should be new", key)
	return e
}

func (b *testBundle) spend(t *testing.T, user string, amount int64, key string) ledger.Entry {
	t.Helper()
	e, created, err := b.svc.Spend(context.Background(), ledger.SpendParams{TenantID: shop, UserID: user,
		Asset: ledger.AssetPoints, Amount: amount, BusinessKey: key})
	require.NoError(t, err)
	require.True(t, created)
	return e
}

// account returns the user's points account (zero if none).
func (b *testBundle) account(t *testing.T, user string) ledger.Account {
	t.Helper()
	return b.accountOf(t, shop, user, ledger.AssetPoints)
}

func (b *testBundle) accountOf(t *testing.T, tenant, user, asset string) ledger.Account {
	t.Helper()
	accts, err := b.svc.Accounts(context.Background(), tenant, user)
	require.NoError(t, err)
	for _, a := range accts {
		if a.Asset == asset {
			return a
		}
	}
	return ledger.Account{Asset: asset}
}

// remaining lists the remaining amount of each of the user's points lots, in spending order.
func (b *testBundle) remaining(t *testing.T, user string) []int64 {
	t.Helper()
	lots, err := b.svc.Lots(context.Background(), shop, user, ledger.AssetPoints)
	require.NoError(t, err)
	out := []int64{}
	for _, l := range lots {
		out = append(out, l.Remaining)
	}
	return out
}

// counts returns the row count of every ledger table.
func (b *testBundle) counts(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range []string{"ledger_entries", "ledger_accounts", "ledger_lots", "ledger_holds", "ledger_hold_lots", "ledger_assets"} {
		var n int
		require.NoError(t, b.db.Reader().QueryRow(context.Background(), "SELECT COUNT(*) FROM "+table).Scan(&n))
		out[table] = n
	}
	return out
}

func (b *testBundle) liability(t *testing.T) ledger.Liability {
	t.Helper()
	l, err := b.svc.Liability(context.Background(), shop, ledger.AssetPoints)
	require.NoError(t, err)
	return l
}

// requireProblem asserts err is a problem of the given kind and code and returns it.
func requireProblem(t *testing.T, err error, kind problem.Kind, code string) *problem.Error {
	t.Helper()
	require.Error(t, err)
	pe, ok := problem.As(err)
	require.True(t, ok, "want a problem error, got %v", err)
	require.Equal(t, kind, pe.Kind, "error: %v", err)
	require.Equal(t, code, pe.Code, "error: %v", err)
	return pe
}

func fieldPaths(pe *problem.Error) []string {
	paths := make([]string, len(pe.Fields))
	for i, f := range pe.Fields {
		paths[i] = f.Path
	}
	return paths
}

func days(n int) ledger.Expiry { return ledger.Expiry{Policy: ledger.ExpireAfterDays, Days: n} }

var never = ledger.Expiry{}
