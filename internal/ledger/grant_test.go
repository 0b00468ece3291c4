package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

func TestGrant(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		e := b.grant(t, alice, 100, "order-1", never)
		require.Equal(t, ledger.KindGrant, e.Kind)
		require.Equal(t, ledger.AccountIssuance, e.Debit)
		require.Equal(t, alice, e.Credit)
		require.EqualValues(t, 100, e.Delta)
		require.Nil(t, e.LotExpiresAt)
		require.True(t, strings.HasPrefix(e.ID, "led_"))

		acct := b.account(t, alice)
		require.EqualValues(t, 100, acct.Balance)
		require.EqualValues(t, 100, acct.Available)
		require.Zero(t, acct.Held)
		require.Equal(t, ledger.Liability{Asset: "points", Outstanding: 100, Issued: 100}, b.liability(t))

		// The same key again: the same entry, nothing new.
		again, created, err := b.svc.Grant(ctx, ledger.GrantParams{TenantID: shop, UserID: alice, Asset: "points",
			Amount: 100, BusinessKey: "order-1"})
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, e.ID, again.ID)
		require.EqualValues(t, 100, b.account(t, alice).Balance)

		// The same key for something else: a conflict naming the key.
		for _, p := range []ledger.GrantParams{
			{TenantID: shop, UserID: alice, Asset: "points", Amount: 99, BusinessKey: "order-1"},
			{TenantID: shop, UserID: bob, Asset: "points", Amount: 100, BusinessKey: "order-1"},
			{TenantID: shop, UserID: alice, Asset: "growth", Amount: 100, BusinessKey: "order-1"},
		} {
			_, _, err := b.svc.Grant(ctx, p)
			pe := requireProblem(t, err, problem.KindConflict, "ledger-key-reused")
			require.Equal(t, e.ID, pe.Extensions["entry_id"])
		}
		// A spend may not reuse a grant's key either.
		_, _, err = b.svc.Spend(ctx, ledger.SpendParams{TenantID: shop, UserID: alice, Asset: "points", Amount: 1,
			BusinessKey: "order-1"})
		requireProblem(t, err, problem.KindConflict, "ledger-key-reused")
		require.EqualValues(t, 100, b.account(t, alice).Balance)

		// Keys are per tenant.
		_, created, err = b.svc.Grant(ctx, ledger.GrantParams{TenantID: other, UserID: alice, Asset: "points",
			Amount: 5, BusinessKey: "order-1"})
		require.NoError(t, err)
		require.True(t, created)
		require.EqualValues(t, 5, b.accountOf(t, other, alice, "points").Balance)
		require.EqualValues(t, 100, b.account(t, alice).Balance)

		// Growth is an account of its own.
		_, _, err = b.svc.Grant(ctx, ledger.GrantParams{TenantID: shop, UserID: alice, Asset: "growth", Amount: 7,
			BusinessKey: "growth-1"})
		require.NoError(t, err)
		accts, err := b.svc.Accounts(ctx, shop, alice)
		require.NoError(t, err)
		require.Len(t, accts, 2)
		require.Equal(t, "growth", accts[0].Asset)
		require.EqualValues(t, 7, accts[0].Balance)

		none, err := b.svc.Accounts(ctx, shop, "u-nobody")
		require.NoError(t, err)
		require.Empty(t, none)
	})
}

func TestGrantTx(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		p := ledger.GrantParams{TenantID: shop, UserID: alice, Asset: "points", Amount: 40, BusinessKey: "task-1"}

		// Rolled back with the caller's transaction: nothing stays.
		boom := errors.New("caller failed later")
		err := db.Tx(ctx, func(tx *sqldb.Tx) error {
			_, created, err := b.svc.GrantTx(ctx, tx, p)
			require.NoError(t, err)
			require.True(t, created)
			return boom
		})
		require.ErrorIs(t, err, boom)
		require.Zero(t, b.counts(t)["ledger_entries"])
		require.Zero(t, b.account(t, alice).Balance)

		// Committed with it; a repeat in a later transaction changes nothing and leaves the
		// transaction usable (no aborted statement on PostgreSQL).
		var first ledger.Entry
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			var err error
			first, _, err = b.svc.GrantTx(ctx, tx, p)
			return err
		}))
		require.NoError(t, db.Tx(ctx, func(tx *sqldb.Tx) error {
			e, created, err := b.svc.GrantTx(ctx, tx, p)
			require.NoError(t, err)
			require.False(t, created)
			require.Equal(t, first.ID, e.ID)
			_, _, err = b.svc.GrantTx(ctx, tx, ledger.GrantParams{TenantID: shop, UserID: alice, Asset: "points",
				Amount: 41, BusinessKey: "task-1"})
			requireProblem(t, err, problem.KindConflict, "ledger-key-reused")
			_, created, err = b.svc.GrantTx(ctx, tx, ledger.GrantParams{TenantID: shop, UserID: alice, Asset: "points",
				Amount: 2, BusinessKey: "task-2"})
			require.True(t, created)
			return err
		}))
		require.EqualValues(t, 42, b.account(t, alice).Balance)
	})
}

func TestGrantOneKeyManyGoroutines(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		const n = 100
		for _, mode := range []string{"Grant", "GrantTx"} {
			key := "one-key-" + mode
			var created atomic.Int32
			ids := make([]string, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					p := ledger.GrantParams{TenantID: shop, UserID: alice, Asset: "points", Amount: 10, BusinessKey: key}
					var (
						e   ledger.Entry
						c   bool
						err error
					)
					if mode == "Grant" {
						e, c, err = b.svc.Grant(ctx, p)
					} else {
						err = db.Tx(ctx, func(tx *sqldb.Tx) error {
							e, c, err = b.svc.GrantTx(ctx, tx, p)
							return err
						})
					}
					if !assertNoError(t, err) {
						return
					}
					if c {
						created.Add(1)
					}
					ids[i] = e.ID
				})
			}
			wg.Wait()
			require.EqualValues(t, 1, created.Load(), mode)
			for _, id := range ids {
				require.Equal(t, ids[0], id, mode)
			}
			var entries int
			require.NoError(t, db.Reader().QueryRow(ctx, `SELECT COUNT(*) FROM ledger_entries WHERE business_key = $1`, key).Scan(&entries))
			require.Equal(t, 1, entries, mode)
		}
		require.EqualValues(t, 20, b.account(t, alice).Balance)
	})
}

// assertNoError reports err from a goroutine without stopping it (require may not be called off
// the test goroutine).
func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

func TestGrantGroupCommit(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		const users, perUser = 20, 25
		var wg sync.WaitGroup
		for u := range users {
			for i := range perUser {
				wg.Go(func() {
					exp := never
					if i%2 == 0 {
						exp = days(1 + i%3)
					}
					_, created, err := b.svc.Grant(ctx, ledger.GrantParams{TenantID: shop, UserID: fmt.Sprintf("u-%d", u),
						Asset: "points", Amount: int64(i + 1), BusinessKey: fmt.Sprintf("k-%d-%d", u, i), Expiry: exp})
					if assertNoError(t, err) && !created {
						t.Errorf("grant k-%d-%d not created", u, i)
					}
				})
			}
		}
		wg.Wait()
		for u := range users {
			require.EqualValues(t, perUser*(perUser+1)/2, b.account(t, fmt.Sprintf("u-%d", u)).Balance)
			require.Len(t, b.remaining(t, fmt.Sprintf("u-%d", u)), 4) // three day-lots and never
		}
		require.EqualValues(t, users*perUser*(perUser+1)/2, b.liability(t).Outstanding)
		require.Equal(t, users*perUser, b.counts(t)["ledger_entries"])

		// The committer coalesced: fewer transactions than grants.
		var batches, grants float64
		mfs, err := b.reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			switch mf.GetName() {
			case "perk_ledger_grant_batch_size":
				batches = float64(mf.GetMetric()[0].GetHistogram().GetSampleCount())
				grants = mf.GetMetric()[0].GetHistogram().GetSampleSum()
			case "perk_ledger_entries_posted_total":
				require.EqualValues(t, users*perUser, mf.GetMetric()[0].GetCounter().GetValue())
			}
		}
		require.EqualValues(t, users*perUser, grants)
		require.Less(t, batches, grants)
	})
}

// TestGrantBatchIsolation: one grant that fails inside a batch (here: its event cannot be written)
// does not fail the grants batched with it.
func TestGrantBatchIsolation(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		const n = 40
		var (
			posted     atomic.Int32
			refusedLen atomic.Int32 // events in the hook call that was refused first
		)
		gate, blocked := make(chan struct{}), make(chan struct{})
		b := setup(t, db, func(o *ledger.Options) {
			o.Committers = 1
			o.Events = func(ctx context.Context, tx *sqldb.Tx, evs ...bus.Event) error {
				for _, e := range evs {
					switch e.UserID {
					case "u-gate":
						close(blocked)
						<-gate
					case "u-poison":
						refusedLen.CompareAndSwap(0, int32(len(evs)))
						return errors.New("the event store refuses this one")
					}
				}
				posted.Add(int32(len(evs)))
				return nil
			}
		})
		var once sync.Once
		openGate := func() { once.Do(func() { close(gate) }) }
		t.Cleanup(openGate) // so that Close cannot hang if the test fails early
		ctx := context.Background()
		// Hold the committer in a first batch while the others queue up behind it.
		gateDone := make(chan error, 1)
		go func() {
			_, _, err := b.svc.Grant(ctx, ledger.GrantParams{TenantID: shop, UserID: "u-gate", Asset: "points",
				Amount: 1, BusinessKey: "gate"})
			gateDone <- err
		}()
		<-blocked
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range errs {
			wg.Go(func() {
				user := fmt.Sprintf("u-%d", i)
				if i == 17 {
					user = "u-poison"
				}
				_, _, errs[i] = b.svc.Grant(ctx, ledger.GrantParams{TenantID: shop, UserID: user, Asset: "points",
					Amount: 1, BusinessKey: fmt.Sprintf("k-%d", i)})
			})
		}
		require.Eventually(t, func() bool { return b.svc.QueuedGrants() == n }, 10*time.Second, time.Millisecond)
		openGate()
		wg.Wait()
		require.NoError(t, <-gateDone)
		require.EqualValues(t, n, refusedLen.Load(), "the poison should have failed a batch of all the others")
		for i, err := range errs {
			if i == 17 {
				require.ErrorContains(t, err, "refuses this one")
				continue
			}
			require.NoError(t, err, i)
		}
		require.Equal(t, n, b.counts(t)["ledger_entries"]) // the gate and 39 others
		require.EqualValues(t, n, posted.Load())
		require.Zero(t, b.account(t, "u-poison").Balance)
	})
}

func TestGrantValidation(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		b.grant(t, alice, 1, "seed", never) // something to compare against
		before := b.counts(t)
		past := start.Add(-time.Hour)
		for _, tc := range []struct {
			name  string
			p     ledger.GrantParams
			paths []string
		}{
			{"zero amount", ledger.GrantParams{UserID: alice, Asset: "points", Amount: 0, BusinessKey: "k"}, []string{"amount"}},
			{"negative amount", ledger.GrantParams{UserID: alice, Asset: "points", Amount: -5, BusinessKey: "k"}, []string{"amount"}},
			{"huge amount", ledger.GrantParams{UserID: alice, Asset: "points", Amount: ledger.MaxAmount + 1, BusinessKey: "k"}, []string{"amount"}},
			{"unknown asset", ledger.GrantParams{UserID: alice, Asset: "gold", Amount: 1, BusinessKey: "k"}, []string{"asset"}},
			{"malformed asset", ledger.GrantParams{UserID: alice, Asset: "Gold!", Amount: 1, BusinessKey: "k"}, []string{"asset"}},
			{"no asset", ledger.GrantParams{UserID: alice, Amount: 1, BusinessKey: "k"}, []string{"asset"}},
			{"no user", ledger.GrantParams{Asset: "points", Amount: 1, BusinessKey: "k"}, []string{"user_id"}},
			{"system user", ledger.GrantParams{UserID: "sys:issuance", Asset: "points", Amount: 1, BusinessKey: "k"}, []string{"user_id"}},
			{"no key", ledger.GrantParams{UserID: alice, Asset: "points", Amount: 1}, []string{"business_key"}},
			{"key with space", ledger.GrantParams{UserID: alice, Asset: "points", Amount: 1, BusinessKey: "a b"}, []string{"business_key"}},
			{"reserved key", ledger.GrantParams{UserID: alice, Asset: "points", Amount: 1, BusinessKey: "ledger:x"}, []string{"business_key"}},
			{"past expiry", ledger.GrantParams{UserID: alice, Asset: "points", Amount: 1, BusinessKey: "k",
				Expiry: ledger.Expiry{Policy: ledger.ExpireAt, At: past}}, []string{"expiry.at"}},
			{"zero days", ledger.GrantParams{UserID: alice, Asset: "points", Amount: 1, BusinessKey: "k", Expiry: days(0)}, []string{"expiry.days"}},
			{"bad policy", ledger.GrantParams{UserID: alice, Asset: "points", Amount: 1, BusinessKey: "k",
				Expiry: ledger.Expiry{Policy: "sometime"}}, []string{"expiry.policy"}},
			{"everything", ledger.GrantParams{Asset: "gold", Amount: -1}, []string{"user_id", "asset", "amount", "business_key"}},
		} {
			tc.p.TenantID = shop
			for _, fn := range []func() error{
				func() error { _, _, err := b.svc.Grant(ctx, tc.p); return err },
				func() error {
					return db.Tx(ctx, func(tx *sqldb.Tx) error { _, _, err := b.svc.GrantTx(ctx, tx, tc.p); return err })
				},
			} {
				pe := requireProblem(t, fn(), problem.KindInvalid, "")
				require.ElementsMatch(t, tc.paths, fieldPaths(pe), tc.name)
			}
		}
		require.Equal(t, before, b.counts(t), "bad input wrote something")
	})
}

func TestAssets(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		b := setup(t, db)
		ctx := context.Background()
		p := ledger.GrantParams{TenantID: shop, UserID: alice, Asset: "stars", Amount: 3, BusinessKey: "s-1"}
		_, _, err := b.svc.Grant(ctx, p)
		pe := requireProblem(t, err, problem.KindInvalid, "")
		require.Equal(t, []string{"asset"}, fieldPaths(pe))

		a, err := b.svc.DefineAsset(ctx, ledger.DefineAssetParams{TenantID: shop, Asset: "stars", Name: "Stars"})
		require.NoError(t, err)
		require.Equal(t, ledger.Asset{Asset: "stars", Name: "Stars"}, a)
		_, err = b.svc.DefineAsset(ctx, ledger.DefineAssetParams{TenantID: shop, Asset: "stars", Name: "Renamed"})
		require.NoError(t, err)
		for _, bad := range []string{"points", "Stars", "9lives", strings.Repeat("a", 33)} {
			_, err = b.svc.DefineAsset(ctx, ledger.DefineAssetParams{TenantID: shop, Asset: bad})
			pe = requireProblem(t, err, problem.KindInvalid, "")
			require.Equal(t, []string{"asset"}, fieldPaths(pe), bad)
		}
		_, created, err := b.svc.Grant(ctx, p)
		require.NoError(t, err)
		require.True(t, created)
		require.EqualValues(t, 3, b.accountOf(t, shop, alice, "stars").Balance)

		// Another node (a second service on the same database) finds the asset too; another
		// tenant does not have it.
		svc2, err := ledger.New(db, ledger.Options{Clock: b.clock})
		require.NoError(t, err)
		defer svc2.Close()
		_, _, err = svc2.Grant(ctx, ledger.GrantParams{TenantID: shop, UserID: bob, Asset: "stars", Amount: 1, BusinessKey: "s-2"})
		require.NoError(t, err)
		_, _, err = svc2.Grant(ctx, ledger.GrantParams{TenantID: other, UserID: bob, Asset: "stars", Amount: 1, BusinessKey: "s-3"})
		requireProblem(t, err, problem.KindInvalid, "")

		assets, err := b.svc.Assets(ctx, shop)
		require.NoError(t, err)
		require.Equal(t, []ledger.Asset{{Asset: "points", BuiltIn: true}, {Asset: "growth", BuiltIn: true},
			{Asset: "stars", Name: "Stars"}}, assets)
	})
}
