package idem_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/idem"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/kv/kvtest"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	long    = time.Hour
	signal  = 30 * time.Second // liveness bound on waiting for a handler to start
	waitFor = 15 * time.Second
	tick    = 20 * time.Millisecond
)

// storageFactory returns a fresh Storage on one backend: its own key prefix on Redis (fake =
// nil: real time), its own database (or schema) and fake clock on SQL.
type storageFactory func(t *testing.T) (st idem.Storage, fake *clock.Fake)

// forEachBackend runs fn as parallel subtests "redis", "sqlite" and "postgres".
func forEachBackend(t *testing.T, fn func(t *testing.T, newStorage storageFactory)) {
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		fn(t, func(t *testing.T) (idem.Storage, *clock.Fake) {
			client := kvtest.Client(t)
			return idem.NewRedisStorage(client, kvtest.Prefix(t, client)), nil
		})
	})
	for _, d := range sqldbtest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			fn(t, func(t *testing.T) (idem.Storage, *clock.Fake) {
				db := sqldbtest.Open(t, d, []sqldb.Migrations{idem.Migrations})
				fake := clock.NewFake(epoch)
				return idem.NewSQLStorage(db, fake), fake
			})
		})
	}
}

// short is a duration the test lets run out, and expire makes it pass.
func short(fake *clock.Fake) time.Duration {
	if fake != nil {
		return time.Minute
	}
	return 300 * time.Millisecond
}

func expire(fake *clock.Fake) {
	if fake != nil {
		fake.Advance(2 * time.Minute)
	}
}

func claim(tenant, scope, key, fp string) idem.Claim {
	return idem.Claim{
		RecordKey:   idem.RecordKey{Tenant: tenant, Scope: scope, Key: key},
		Fingerprint: fp,
		Token:       ids.Secret(16),
	}
}

func TestStorage(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, newStorage storageFactory) {
		ctx := context.Background()
		resp := idem.Response{
			Status: 201,
			Header: http.Header{"Content-Type": {"application/json"}, "Location": {"/v1/orders/1"}},
			Body:   []byte{'{', 0, 0xff, '}'},
		}

		t.Run("ClaimThenInFlight", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			_, claimed, err := st.Begin(ctx, claim("t1", "s1", "k", "fp"), long)
			require.NoError(t, err)
			require.True(t, claimed)
			rec, claimed, err := st.Begin(ctx, claim("t1", "s1", "k", "other"), long)
			require.NoError(t, err)
			require.False(t, claimed)
			require.Equal(t, idem.Record{State: idem.StateInFlight, Fingerprint: "fp"}, rec)
		})

		t.Run("CompleteThenRecord", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			c := claim("t1", "s1", "k", "fp")
			_, _, err := st.Begin(ctx, c, long)
			require.NoError(t, err)
			require.NoError(t, st.Complete(ctx, c, resp, long))
			rec, claimed, err := st.Begin(ctx, claim("t1", "s1", "k", "fp"), long)
			require.NoError(t, err)
			require.False(t, claimed)
			require.Equal(t, idem.Record{State: idem.StateCompleted, Fingerprint: "fp", Response: resp}, rec)
			require.ErrorIs(t, st.Complete(ctx, c, resp, long), idem.ErrClaimLost, "complete twice")
			require.ErrorIs(t, st.Abandon(ctx, c), idem.ErrClaimLost, "a completed record stays")
		})

		t.Run("EmptyResponse", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			c := claim("t1", "s1", "k", "fp")
			_, _, err := st.Begin(ctx, c, long)
			require.NoError(t, err)
			require.NoError(t, st.Complete(ctx, c, idem.Response{Status: 204, Body: []byte{}}, long))
			rec, _, err := st.Begin(ctx, c, long)
			require.NoError(t, err)
			require.Equal(t, 204, rec.Response.Status)
			require.Empty(t, rec.Response.Header)
			require.Nil(t, rec.Response.Body)
		})

		t.Run("OnlyTheClaimantCompletesOrAbandons", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			c := claim("t1", "s1", "k", "fp")
			_, _, err := st.Begin(ctx, c, long)
			require.NoError(t, err)
			intruder := c
			intruder.Token = ids.Secret(16)
			require.ErrorIs(t, st.Complete(ctx, intruder, resp, long), idem.ErrClaimLost)
			require.ErrorIs(t, st.Abandon(ctx, intruder), idem.ErrClaimLost)
			rec, claimed, err := st.Begin(ctx, intruder, long)
			require.NoError(t, err)
			require.False(t, claimed)
			require.Equal(t, idem.StateInFlight, rec.State)
		})

		t.Run("AbandonFreesTheKey", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			c := claim("t1", "s1", "k", "fp")
			_, _, err := st.Begin(ctx, c, long)
			require.NoError(t, err)
			require.NoError(t, st.Abandon(ctx, c))
			require.ErrorIs(t, st.Abandon(ctx, c), idem.ErrClaimLost)
			_, claimed, err := st.Begin(ctx, claim("t1", "s1", "k", "other"), long)
			require.NoError(t, err)
			require.True(t, claimed)
		})

		t.Run("KeysAreScopedByTenantAndScope", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			for _, c := range []idem.Claim{
				claim("t1", "s1", "k", "fp"), claim("t2", "s1", "k", "fp"), claim("t1", "s2", "k", "fp"),
				claim("a:1", "b", "k", "fp"), claim("a", "1:b", "k", "fp"),
			} {
				_, claimed, err := st.Begin(ctx, c, long)
				require.NoError(t, err)
				require.True(t, claimed, "%+v", c.RecordKey)
			}
		})

		t.Run("ExpiredLeaseIsTakenOver", func(t *testing.T) {
			t.Parallel()
			st, fake := newStorage(t)
			first := claim("t1", "s1", "k", "fp")
			_, _, err := st.Begin(ctx, first, short(fake))
			require.NoError(t, err)
			if fake != nil {
				_, claimed, err := st.Begin(ctx, claim("t1", "s1", "k", "fp"), long)
				require.NoError(t, err)
				require.False(t, claimed)
			}
			expire(fake)
			second := claim("t1", "s1", "k", "fp")
			require.Eventually(t, func() bool {
				_, claimed, err := st.Begin(ctx, second, long)
				return err == nil && claimed
			}, waitFor, tick, "an expired in-flight claim was never released")
			require.ErrorIs(t, st.Complete(ctx, first, resp, long), idem.ErrClaimLost)
			require.NoError(t, st.Complete(ctx, second, resp, long))
		})

		t.Run("CompletedRecordExpires", func(t *testing.T) {
			t.Parallel()
			st, fake := newStorage(t)
			c := claim("t1", "s1", "k", "fp")
			_, _, err := st.Begin(ctx, c, long)
			require.NoError(t, err)
			require.NoError(t, st.Complete(ctx, c, resp, short(fake)))
			if fake != nil {
				rec, claimed, err := st.Begin(ctx, claim("t1", "s1", "k", "fp"), long)
				require.NoError(t, err)
				require.False(t, claimed)
				require.Equal(t, idem.StateCompleted, rec.State)
			}
			expire(fake)
			require.Eventually(t, func() bool {
				_, claimed, err := st.Begin(ctx, claim("t1", "s1", "k", "other"), long)
				return err == nil && claimed
			}, waitFor, tick, "a completed record never expired")
		})

		t.Run("OneClaimUnderRace", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			var claims atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make(chan error, 50)
			for range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, claimed, err := st.Begin(ctx, claim("t1", "s1", "race", "fp"), long)
					if claimed {
						claims.Add(1)
					}
					errs <- err
				}()
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			require.EqualValues(t, 1, claims.Load())
		})
	})
}

func TestSQLStoragePurge(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, []sqldb.Migrations{idem.Migrations}, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		fake := clock.NewFake(epoch)
		st := idem.NewSQLStorage(db, fake)
		old := claim("t1", "s1", "old", "fp")
		_, _, err := st.Begin(ctx, old, long)
		require.NoError(t, err)
		require.NoError(t, st.Complete(ctx, old, idem.Response{Status: 200}, time.Minute))
		_, _, err = st.Begin(ctx, claim("t1", "s1", "live", "fp"), 3*time.Hour)
		require.NoError(t, err)

		fake.Advance(2 * time.Hour)
		n, err := st.Purge(ctx, 100)
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		var left []string
		rows, err := db.Reader().Query(ctx, `SELECT idem_key FROM idem_records ORDER BY idem_key`)
		require.NoError(t, err)
		defer rows.Close()
		for rows.Next() {
			var k string
			require.NoError(t, rows.Scan(&k))
			left = append(left, k)
		}
		require.NoError(t, rows.Err())
		require.Equal(t, []string{"live"}, left)
	})
}

// await waits for ch, failing the test if it never comes (liveness only).
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(signal):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}
