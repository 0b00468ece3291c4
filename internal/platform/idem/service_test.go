package idem_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/idem"
	"github.com/perkhq/perk/internal/platform/kv"
	"github.com/perkhq/perk/internal/platform/kv/kvtest"
	"github.com/perkhq/perk/internal/platform/problem"
)

// switchSource is an OperationSource whose configuration a test changes at run time, as the
// config center would.
type switchSource struct {
	mu  sync.Mutex
	cfg idem.OperationConfig
}

func (s *switchSource) Operation(_, _ string) idem.OperationConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

func (s *switchSource) set(cfg idem.OperationConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
}

type doBundle struct {
	svc    *idem.Service
	source *switchSource
	calls  int
}

func setupDo(t *testing.T, st idem.Storage) *doBundle {
	t.Helper()
	b := &doBundle{source: &switchSource{}}
	svc, err := idem.NewService(idem.ServiceOptions{
		Storages: map[string]idem.Storage{idem.StorageSQL: st},
		Source:   b.source,
	})
	require.NoError(t, err)
	b.svc = svc
	return b
}

// created is a handler body that counts its runs.
func (b *doBundle) created(context.Context) (idem.Response, error) {
	b.calls++
	return idem.Response{
		Status: 201,
		Header: http.Header{"Content-Type": {"application/json"}, "X-Trace": {"not kept"}},
		Body:   []byte(`{"id":1}`),
	}, nil
}

func call(key, body string) idem.Call {
	return idem.Call{Tenant: "mch_1", Scope: "key_1", Operation: "orders.create", Key: key, Fingerprint: []byte(body)}
}

func requireProblem(t *testing.T, err error, kind problem.Kind, code string) *problem.Error {
	t.Helper()
	p, ok := problem.As(err)
	require.True(t, ok, "want a problem, got %v", err)
	require.Equal(t, kind, p.Kind)
	require.Equal(t, code, p.Code)
	return p
}

func TestDo(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, newStorage storageFactory) {
		ctx := context.Background()

		t.Run("FreshThenReplayed", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			b := setupDo(t, st)
			resp, out, err := b.svc.Do(ctx, call("k1", "a"), b.created)
			require.NoError(t, err)
			require.Equal(t, idem.OutcomeFresh, out)
			require.Equal(t, "not kept", resp.Header.Get("X-Trace"), "the fresh answer is the handler's own")

			again, out, err := b.svc.Do(ctx, call("k1", "a"), b.created)
			require.NoError(t, err)
			require.Equal(t, idem.OutcomeReplayed, out)
			require.Equal(t, 1, b.calls)
			require.Equal(t, 201, again.Status)
			require.Equal(t, resp.Body, again.Body)
			require.Equal(t, http.Header{"Content-Type": {"application/json"}}, again.Header)
		})

		t.Run("ErrorsAndServerErrorsAreNotStored", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			b := setupDo(t, st)
			boom := errors.New("boom")
			_, out, err := b.svc.Do(ctx, call("k1", "a"), func(context.Context) (idem.Response, error) {
				return idem.Response{}, boom
			})
			require.ErrorIs(t, err, boom)
			require.Equal(t, idem.OutcomeAbandoned, out)

			resp, out, err := b.svc.Do(ctx, call("k1", "a"), func(context.Context) (idem.Response, error) {
				return idem.Response{Status: 503}, nil
			})
			require.NoError(t, err)
			require.Equal(t, idem.OutcomeAbandoned, out)
			require.Equal(t, 503, resp.Status)

			require.Panics(t, func() {
				_, _, _ = b.svc.Do(ctx, call("k1", "a"), func(context.Context) (idem.Response, error) { panic("handler bug") })
			})

			_, out, err = b.svc.Do(ctx, call("k1", "a"), b.created)
			require.NoError(t, err)
			require.Equal(t, idem.OutcomeFresh, out, "after failures the key runs again")
			require.Equal(t, 1, b.calls)
		})

		t.Run("ClientErrorsAreStored", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			b := setupDo(t, st)
			runs := 0
			refuse := func(context.Context) (idem.Response, error) {
				runs++
				return idem.Response{Status: 409, Body: []byte("sold out")}, nil
			}
			_, _, err := b.svc.Do(ctx, call("k1", "a"), refuse)
			require.NoError(t, err)
			resp, out, err := b.svc.Do(ctx, call("k1", "a"), refuse)
			require.NoError(t, err)
			require.Equal(t, idem.OutcomeReplayed, out)
			require.Equal(t, 409, resp.Status)
			require.Equal(t, 1, runs)
		})

		t.Run("Mismatch", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			b := setupDo(t, st)
			_, _, err := b.svc.Do(ctx, call("k1", "a"), b.created)
			require.NoError(t, err)
			_, out, err := b.svc.Do(ctx, call("k1", "b"), b.created)
			requireProblem(t, err, problem.KindInvalid, idem.CodeKeyMismatch)
			require.Equal(t, idem.OutcomeMismatch, out)

			other := call("k1", "a")
			other.Operation = "orders.cancel"
			_, _, err = b.svc.Do(ctx, other, b.created)
			requireProblem(t, err, problem.KindInvalid, idem.CodeKeyMismatch)
			require.Equal(t, 1, b.calls)
		})

		t.Run("InFlight", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			b := setupDo(t, st)
			entered, release := make(chan struct{}), make(chan struct{})
			done := make(chan error)
			go func() {
				_, _, err := b.svc.Do(ctx, call("k1", "a"), func(context.Context) (idem.Response, error) {
					close(entered)
					<-release
					return idem.Response{Status: 200}, nil
				})
				done <- err
			}()
			await(t, entered, "the first call to start")
			_, out, err := b.svc.Do(ctx, call("k1", "a"), b.created)
			requireProblem(t, err, problem.KindConflict, idem.CodeInFlight)
			require.Equal(t, idem.OutcomeInFlight, out)
			close(release)
			require.NoError(t, await(t, done, "the first call to finish"))
			require.Zero(t, b.calls)
		})

		t.Run("Policies", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			b := setupDo(t, st)
			_, _, err := b.svc.Do(ctx, call("k1", "a"), b.created)
			require.NoError(t, err)

			b.source.set(idem.OperationConfig{Policy: idem.PolicyDuplicate})
			_, out, err := b.svc.Do(ctx, call("k1", "a"), b.created)
			p := requireProblem(t, err, problem.KindConflict, idem.CodeDuplicate)
			require.Equal(t, 201, p.Extensions["original_status"])
			require.Equal(t, idem.OutcomeDuplicate, out)

			b.source.set(idem.OperationConfig{Policy: idem.PolicyFail})
			_, out, err = b.svc.Do(ctx, call("k1", "a"), b.created)
			requireProblem(t, err, problem.KindConflict, idem.CodeKeyUsed)
			require.Equal(t, idem.OutcomeKeyUsed, out)

			b.source.set(idem.OperationConfig{Policy: idem.PolicyReplay})
			_, out, err = b.svc.Do(ctx, call("k1", "a"), b.created)
			require.NoError(t, err)
			require.Equal(t, idem.OutcomeReplayed, out)
			require.Equal(t, 1, b.calls)
		})

		t.Run("MissingAndMalformedKeys", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			b := setupDo(t, st)
			for range 2 {
				_, out, err := b.svc.Do(ctx, call("", "a"), b.created)
				require.NoError(t, err)
				require.Equal(t, idem.OutcomeNone, out)
			}
			require.Equal(t, 2, b.calls, "without a key every call runs")

			b.source.set(idem.OperationConfig{Required: true})
			_, out, err := b.svc.Do(ctx, call("", "a"), b.created)
			requireProblem(t, err, problem.KindBadRequest, idem.CodeKeyMissing)
			require.Equal(t, idem.OutcomeMissing, out)

			_, out, err = b.svc.Do(ctx, call(strings.Repeat("k", 256), "a"), b.created)
			requireProblem(t, err, problem.KindBadRequest, idem.CodeKeyInvalid)
			require.Equal(t, idem.OutcomeBadKey, out)
			require.Equal(t, 2, b.calls)
		})

		t.Run("TenantsAndScopesAreIndependent", func(t *testing.T) {
			t.Parallel()
			st, _ := newStorage(t)
			b := setupDo(t, st)
			for _, c := range []idem.Call{
				{Tenant: "mch_1", Scope: "key_1", Operation: "op", Key: "same"},
				{Tenant: "mch_2", Scope: "key_1", Operation: "op", Key: "same"},
				{Tenant: "mch_1", Scope: "key_2", Operation: "op", Key: "same"},
			} {
				_, out, err := b.svc.Do(ctx, c, b.created)
				require.NoError(t, err)
				require.Equal(t, idem.OutcomeFresh, out, "%+v", c)
			}
			require.Equal(t, 3, b.calls)
		})

		t.Run("CompletedRecordExpiresAfterTTL", func(t *testing.T) {
			t.Parallel()
			st, fake := newStorage(t)
			if fake == nil {
				t.Log("real-time TTL expiry is covered by TestStorage/redis/CompletedRecordExpires")
				return
			}
			b := setupDo(t, st)
			_, _, err := b.svc.Do(ctx, call("k1", "a"), b.created)
			require.NoError(t, err)
			fake.Advance(idem.DefaultTTL - 1)
			_, out, _ := b.svc.Do(ctx, call("k1", "a"), b.created)
			require.Equal(t, idem.OutcomeReplayed, out)
			fake.Advance(1)
			_, out, err = b.svc.Do(ctx, call("k1", "a"), b.created)
			require.NoError(t, err)
			require.Equal(t, idem.OutcomeFresh, out)
			require.Equal(t, 2, b.calls)
		})
	})
}

func TestDoStorageFailures(t *testing.T) {
	t.Parallel()
	client, err := kv.NewRedisClient("redis://127.0.0.1:1/0", nil) // nothing listens on port 1
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	src := &switchSource{}
	svc, err := idem.NewService(idem.ServiceOptions{
		Storages: map[string]idem.Storage{idem.StorageRedis: idem.NewRedisStorage(client, "x:")},
		Source:   src,
	})
	require.NoError(t, err)
	noop := func(context.Context) (idem.Response, error) { return idem.Response{Status: 200}, nil }

	_, out, err := svc.Do(context.Background(), call("k", "a"), noop)
	requireProblem(t, err, problem.KindUnavailable, idem.CodeUnavailable)
	require.Equal(t, idem.OutcomeError, out)

	src.set(idem.OperationConfig{Storage: idem.StorageSQL})
	_, out, err = svc.Do(context.Background(), call("k", "a"), noop)
	require.ErrorContains(t, err, `storage "sql"`)
	require.Equal(t, idem.OutcomeError, out)
}

func TestNewServiceDefaultStorage(t *testing.T) {
	t.Parallel()
	_, err := idem.NewService(idem.ServiceOptions{})
	require.Error(t, err)
	st := idem.NewRedisStorage(nil, "")
	_, err = idem.NewService(idem.ServiceOptions{Storages: map[string]idem.Storage{"a": st, "b": st}})
	require.Error(t, err, "two unnamed storages and no default")
	_, err = idem.NewService(idem.ServiceOptions{Storages: map[string]idem.Storage{"a": st}, Default: "b"})
	require.Error(t, err)
	_, err = idem.NewService(idem.ServiceOptions{Storages: map[string]idem.Storage{"a": st, "b": st}, Default: "b"})
	require.NoError(t, err)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	client := kvtest.Client(t)
	reg := prometheus.NewPedanticRegistry()
	svc, err := idem.NewService(idem.ServiceOptions{
		Storages:   map[string]idem.Storage{idem.StorageRedis: idem.NewRedisStorage(client, kvtest.Prefix(t, client))},
		Registerer: reg,
	})
	require.NoError(t, err)
	ctx := context.Background()
	ok := func(context.Context) (idem.Response, error) { return idem.Response{Status: 200}, nil }
	_, _, err = svc.Do(ctx, call("k", "a"), ok)
	require.NoError(t, err)
	_, _, err = svc.Do(ctx, call("k", "a"), ok)
	require.NoError(t, err)
	_, _, err = svc.Do(ctx, call("k", "b"), ok)
	require.Error(t, err)

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP perk_idem_outcomes_total Idempotent calls by operation and outcome (fresh, replayed, mismatch, in_flight, duplicate, …).
# TYPE perk_idem_outcomes_total counter
perk_idem_outcomes_total{operation="orders.create",outcome="fresh"} 1
perk_idem_outcomes_total{operation="orders.create",outcome="mismatch"} 1
perk_idem_outcomes_total{operation="orders.create",outcome="replayed"} 1
`)))
}
