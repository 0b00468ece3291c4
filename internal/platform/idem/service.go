package idem

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
)

// Defaults for ServiceOptions fields left at zero.
const (
	DefaultTTL   = 24 * time.Hour
	DefaultLease = time.Minute
)

// DefaultKeepHeaders are the response headers stored with a completed response and replayed.
var DefaultKeepHeaders = []string{"Content-Type", "Content-Language", "Content-Location", "Location", "ETag", "Last-Modified"}

// ServiceOptions configures NewService.
type ServiceOptions struct {
	// Storages are the storages available by name (StorageRedis, StorageSQL); at least one.
	Storages map[string]Storage
	// Default names the storage used when an operation names none; "" picks "redis" when
	// available, else the only or "sql" storage.
	Default string
	// Source tells each operation's configuration; nil means StaticSource{} (keys optional, replay).
	Source OperationSource
	// TTL is how long completed records are kept (default DefaultTTL).
	TTL time.Duration
	// Lease is how long an in-flight claim blocks its key before another caller may take it over,
	// in case its holder died (default DefaultLease). It should exceed the longest handler.
	Lease time.Duration
	// KeepHeaders are the response headers stored and replayed (default DefaultKeepHeaders).
	KeepHeaders []string
	// Registerer receives the outcome counter; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger reports responses that could not be stored (default slog.Default()).
	Logger *slog.Logger
}

// Service runs idempotent calls. It is safe for concurrent use.
type Service struct {
	storages map[string]Storage
	def      string
	source   OperationSource
	ttl      time.Duration
	lease    time.Duration
	keep     []string
	keys     *keyExprs
	outcomes *prometheus.CounterVec
	log      *slog.Logger
}

// NewService returns a Service over the given storages.
func NewService(opts ServiceOptions) (*Service, error) {
	def, err := defaultStorage(opts.Storages, opts.Default)
	if err != nil {
		return nil, err
	}
	keys, err := newKeyExprs()
	if err != nil {
		return nil, err
	}
	outcomes, err := newOutcomes(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Service{storages: opts.Storages, def: def, source: opts.Source, ttl: opts.TTL, lease: opts.Lease,
		keep: opts.KeepHeaders, keys: keys, outcomes: outcomes, log: opts.Logger}
	if s.source == nil {
		s.source = StaticSource{}
	}
	if s.ttl <= 0 {
		s.ttl = DefaultTTL
	}
	if s.lease <= 0 {
		s.lease = DefaultLease
	}
	if s.keep == nil {
		s.keep = DefaultKeepHeaders
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s, nil
}

func defaultStorage(storages map[string]Storage, def string) (string, error) {
	if def == "" {
		for _, name := range []string{StorageRedis, StorageSQL} {
			if _, ok := storages[name]; ok {
				def = name
				break
			}
		}
	}
	if def == "" && len(storages) == 1 {
		for name := range storages {
			def = name
		}
	}
	if _, ok := storages[def]; !ok {
		return "", fmt.Errorf("idem: default storage %q is not among the %d storages given", def, len(storages))
	}
	return def, nil
}

func newOutcomes(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "perk_idem_outcomes_total",
		Help: "Idempotent calls by operation and outcome (fresh, replayed, mismatch, in_flight, duplicate, …).",
	}, []string{"operation", "outcome"})
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			return nil, err
		}
		return already.ExistingCollector.(*prometheus.CounterVec), nil
	}
	return c, nil
}

// Do runs fn at most once per key: the first call with c.Key runs fn and stores its response;
// later calls with the same key get the answer the operation's Policy gives. Errors a client
// should see are *problem.Error values:
//
//   - no key where required: bad-request "idempotency-key-missing" (400);
//   - a malformed key: bad-request "idempotency-key-invalid" (400);
//   - same key, other fingerprint: invalid "idempotency-key-mismatch" (422);
//   - same key while the first call runs: conflict "request-in-flight" (409);
//   - a completed key under PolicyDuplicate: conflict "duplicate-request" with original_status;
//   - a completed key under PolicyFail: conflict "idempotency-key-used";
//   - the storage is down: unavailable "idempotency-unavailable" (503).
//
// When fn returns an error or a Status >= 500, or panics, nothing is stored and the key may be
// tried again; fn's response and error are returned as they are.
func (s *Service) Do(ctx context.Context, c Call, fn func(ctx context.Context) (Response, error)) (Response, Outcome, error) {
	return s.do(ctx, c, s.source.Operation(c.Tenant, c.Operation), fn)
}

func (s *Service) do(ctx context.Context, c Call, cfg OperationConfig, fn func(ctx context.Context) (Response, error)) (resp Response, out Outcome, err error) {
	defer func() { s.outcomes.WithLabelValues(c.Operation, string(out)).Inc() }()
	switch {
	case c.Key == "" && cfg.Required:
		return Response{}, OutcomeMissing, problem.New(problem.KindBadRequest,
			"this operation requires an %s header", KeyHeader).WithCode(CodeKeyMissing)
	case c.Key == "":
		resp, err = fn(ctx)
		return resp, OutcomeNone, err
	case len(c.Key) > MaxKeyLength:
		return Response{}, OutcomeBadKey, badKey("the idempotency key is longer than %d characters", MaxKeyLength)
	}
	st, ok := s.storages[cfg.Storage]
	if cfg.Storage == "" {
		st, ok = s.storages[s.def], true
	}
	if !ok {
		return Response{}, OutcomeError, fmt.Errorf("idem: operation %q names storage %q, which is not configured", c.Operation, cfg.Storage)
	}
	claim := Claim{
		RecordKey:   RecordKey{Tenant: c.Tenant, Scope: c.Scope, Key: c.Key},
		Fingerprint: fingerprint(c.Operation, c.Fingerprint),
		Token:       ids.Secret(16),
	}
	rec, claimed, err := st.Begin(ctx, claim, s.lease)
	if err != nil {
		return Response{}, OutcomeError, unavailable(err)
	}
	if !claimed {
		return answer(cfg.Policy, claim, rec)
	}
	ttl := cfg.TTL
	if ttl <= 0 {
		ttl = s.ttl
	}
	return s.run(ctx, st, claim, ttl, fn)
}

// run calls fn under the claim and stores its response, or abandons the claim.
func (s *Service) run(ctx context.Context, st Storage, claim Claim, ttl time.Duration, fn func(ctx context.Context) (Response, error)) (Response, Outcome, error) {
	settled := false
	defer func() {
		if !settled { // fn panicked
			s.abandon(ctx, st, claim)
		}
	}()
	resp, err := fn(ctx)
	settled = true
	if err != nil || resp.Status >= 500 {
		s.abandon(ctx, st, claim)
		return resp, OutcomeAbandoned, err
	}
	stored := Response{Status: resp.Status, Header: keepHeaders(resp.Header, s.keep), Body: resp.Body}
	if err := st.Complete(context.WithoutCancel(ctx), claim, stored, ttl); err != nil {
		// The effect happened and the caller gets its answer; a retry may run fn again.
		s.log.ErrorContext(ctx, "idem: response not stored", "tenant", claim.Tenant, "key", claim.Key, "err", err)
	}
	return resp, OutcomeFresh, nil
}

func (s *Service) abandon(ctx context.Context, st Storage, claim Claim) {
	if err := st.Abandon(context.WithoutCancel(ctx), claim); err != nil && !errors.Is(err, ErrClaimLost) {
		s.log.ErrorContext(ctx, "idem: claim not abandoned; the key is blocked until its lease ends",
			"tenant", claim.Tenant, "key", claim.Key, "err", err)
	}
}

// answer is what a key that is already taken answers.
func answer(policy Policy, claim Claim, rec Record) (Response, Outcome, error) {
	switch {
	case rec.Fingerprint != claim.Fingerprint:
		return Response{}, OutcomeMismatch, problem.Invalid(
			"this idempotency key was used with another request payload").WithCode(CodeKeyMismatch)
	case rec.State != StateCompleted:
		return Response{}, OutcomeInFlight, problem.Conflict(
			"a request with this idempotency key is still being processed; retry later").WithCode(CodeInFlight)
	case policy == PolicyDuplicate:
		return Response{}, OutcomeDuplicate, problem.Conflict(
			"this request was already processed").WithCode(CodeDuplicate).With("original_status", rec.Response.Status)
	case policy == PolicyFail:
		return Response{}, OutcomeKeyUsed, problem.Conflict(
			"this idempotency key was already used").WithCode(CodeKeyUsed)
	}
	return rec.Response, OutcomeReplayed, nil
}

func unavailable(err error) error {
	return problem.Unavailable("idempotency storage is unavailable; retry later").WithCode(CodeUnavailable).Wrap(err)
}

// fingerprint binds the caller's fingerprint to the operation.
func fingerprint(operation string, fp []byte) string {
	h := sha256.New()
	h.Write([]byte(operation))
	h.Write([]byte{0})
	h.Write(fp)
	return hex.EncodeToString(h.Sum(nil))
}

func keepHeaders(h http.Header, keep []string) http.Header {
	out := http.Header{}
	for _, name := range keep {
		if vs := h.Values(name); len(vs) > 0 {
			out[http.CanonicalHeaderKey(name)] = append([]string(nil), vs...)
		}
	}
	return out
}
