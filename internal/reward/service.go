package reward

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/tenant"
)

// Options configures a Service. Every field is optional; the defaults suit production.
type Options struct {
	// Clock tells the time; nil means the wall clock.
	Clock clock.Clock
	// Ledger posts grant_points and grant_growth; *ledger.Service is one.
	Ledger Ledger
	// Coupons issues coupons for issue_coupon; nil refuses flows that use it.
	Coupons CouponIssuer
	// TimeZone returns a tenant's time zone, in which points' period expiries (days, end of month
	// or year) are computed; nil (or a nil answer) means UTC.
	TimeZone func(tenantID string) *time.Location
	// Events writes domain events in the caller's transaction; (*bus.Bus).EnqueueEvent is one.
	// nil writes none (and emit_event fails).
	Events bus.EventsFunc
	// Flows finds published flows (CatalogFlows); nil allows inline rewards only.
	Flows FlowSource
	// Components holds the components flows may use; nil means a new registry. The built-ins are
	// added to it unless it has a component of the same name already.
	Components *Registry
	// HTTPClient makes call_external's requests (default: a client with no overall timeout; each
	// request has its step's timeout).
	HTTPClient *http.Client
	// Node names this executor in leases and logs (default a random id).
	Node string
	// Lease is how long a claimed grant stays with its executor before others may take it over
	// (default 2m). Every step renews it; it must exceed the longest call_external request.
	Lease time.Duration
	// RetryBase is the delay before a grant's first retry (default 30s); it doubles per failed
	// attempt, with jitter, up to MaxBackoff. A step's retry.backoff_seconds overrides it.
	RetryBase time.Duration
	// MaxBackoff caps the delay between attempts (default 1h).
	MaxBackoff time.Duration
	// SweepInterval is how often Run looks for due grants (default 5s).
	SweepInterval time.Duration
	// SweepBatch is how many grants one sweep claims (default 100).
	SweepBatch int
	// SweepWorkers is how many claimed grants a sweep runs at once (default 4).
	SweepWorkers int
	// MaxBatch bounds the grants Create coalesces into one transaction on the fast path (flows
	// that only write to the database); default 128, 1 turns the fast path off.
	MaxBatch int
	// Registerer registers the service's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger logs failures; nil means slog.Default().
	Logger *slog.Logger
	// Fault is a test hook called at every step boundary of the executor (see FaultPoint). An
	// error (or a panic) stops the execution there, as if the process had died: nothing more is
	// written and the lease is left to expire.
	Fault func(Fault) error
}

// Service creates, executes and reports grants.
type Service struct {
	db      *sqldb.DB
	opts    Options
	clock   clock.Clock
	reg     *Registry
	log     *slog.Logger
	metrics *metrics

	flowsMu sync.Mutex
	flows   map[string]*flow // "<resource id>@<version>" → parsed flow

	fast *ledger.GroupCommitter[fastRequest, fastResult]
}

// maxCachedFlows bounds the parsed-flow cache; it is emptied when full.
const maxCachedFlows = 4096

// New returns a Service on db with the built-in components registered.
func New(db *sqldb.DB, opts Options) (*Service, error) {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Components == nil {
		opts.Components = NewRegistry()
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{}
	}
	if opts.Node == "" {
		opts.Node = "node-" + ids.Secret(5)
	}
	opts = withDurations(opts)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Service{db: db, opts: opts, clock: opts.Clock, reg: opts.Components,
		log: opts.Logger.With("module", "reward", "node", opts.Node), metrics: m, flows: map[string]*flow{}}
	for _, c := range []Component{
		grantComponent{name: ComponentGrantPoints, asset: "points", ledger: opts.Ledger, zone: opts.TimeZone},
		grantComponent{name: ComponentGrantGrowth, asset: "growth", ledger: opts.Ledger, zone: opts.TimeZone},
		couponComponent{issuer: opts.Coupons},
		externalComponent{client: opts.HTTPClient},
		eventComponent{events: opts.Events},
	} {
		if s.reg.has(c.Name()) {
			continue
		}
		if err := s.reg.Register(c); err != nil {
			return nil, err
		}
	}
	if opts.MaxBatch > 1 {
		// Prepared now, not later: the one writer connection is busy inside transactions.
		if err := db.Prepare(context.Background(), preparedStatements(db.Dialect())...); err != nil {
			return nil, fmt.Errorf("reward: %w", err)
		}
		// One batch at a time: concurrent batches would lock the same ledger rows in different orders.
		s.fast = ledger.NewGroupCommitter(ledger.GroupCommitOptions{MaxBatch: opts.MaxBatch, Workers: 1,
			OnBatch: func(size int, _ time.Duration) { m.batch.Observe(float64(size)) }}, s.flushFast)
	}
	return s, nil
}

// Close stops the fast path's group committer after it has flushed what is queued. Create keeps
// working afterwards, on the slow path (and CreateManyTx falls back to it).
func (s *Service) Close() {
	if s.fast != nil {
		s.fast.Close()
	}
}

func withDurations(o Options) Options {
	if o.Lease <= 0 {
		o.Lease = 2 * time.Minute
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 30 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Hour
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 5 * time.Second
	}
	if o.SweepBatch <= 0 {
		o.SweepBatch = 100
	}
	if o.SweepWorkers <= 0 {
		o.SweepWorkers = 4
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 128
	}
	return o
}

// Components returns the registry of components (built-ins included), for RegisterKinds.
func (s *Service) Components() *Registry { return s.reg }

// now is the clock's time at the stored (microsecond) precision.
func (s *Service) now() time.Time { return sqldb.FromMicros(sqldb.Micros(s.clock.Now())) }

// CreateParams describes a grant. Name exactly one of Flow and Rewards.
type CreateParams struct {
	TenantID string
	UserID   string
	// SourceKind and SourceID name what earned the reward ("task", "ut_…"); Seq tells apart several
	// grants of one source (stage 1, 2 …). The four are unique: a repeat returns the first grant.
	SourceKind string
	SourceID   string
	Seq        int
	// Flow is the key of a published flow; the grant is pinned to its live version.
	Flow string
	// Rewards is an inline list of rewards, compiled to a flow stored with the grant.
	Rewards []Reward
	// Params are visible to the flow's conditions (params.x) and sent by call_external.
	Params json.RawMessage
}

// CreateTx writes a grant in the caller's transaction and enqueues its grant.created event. A
// grant with the same source returns the existing one with created=false (and writes nothing):
// that is how a re-delivered event never grants twice. Bad input is a problem Invalid with field
// paths (user_id, flow, rewards[0].amount, params), and nothing is written. Call
// ExecuteAfterCommit to run it right after the commit.
//
// The flow is looked up through the FlowSource; give it a Snapshot (CatalogFlows.Snapshot) so that
// the lookup reads memory, not the database, while tx is open.
func (s *Service) CreateTx(ctx context.Context, tx *sqldb.Tx, p CreateParams) (Grant, bool, error) {
	g, _, err := s.prepare(ctx, p)
	if err != nil {
		return Grant{}, false, err
	}
	return s.insert(ctx, tx, g)
}

// insert writes a prepared grant (see CreateTx).
func (s *Service) insert(ctx context.Context, tx *sqldb.Tx, g Grant) (Grant, bool, error) {
	inserted, err := insertGrant(ctx, tx, g)
	if err != nil {
		return Grant{}, false, fmt.Errorf("reward: create grant: %w", err)
	}
	if !inserted {
		existing, err := grantBySource(ctx, tx, g.TenantID, g.SourceKind, g.SourceID, g.Seq)
		if err != nil {
			return Grant{}, false, fmt.Errorf("reward: create grant: %w", err)
		}
		if existing.UserID != g.UserID {
			return Grant{}, false, sourceConflict(g, existing)
		}
		return existing, false, nil
	}
	if err := s.emit(ctx, tx, EventCreated, g, nil); err != nil {
		return Grant{}, false, err
	}
	tx.AfterCommit(func() { s.metrics.transition(StatePending) })
	return g, true, nil
}

// Create writes a grant in its own transaction and runs it at once (the synchronous path). It
// returns the grant with its steps as they stand after the run: succeeded when the flow finished,
// else pending, failed or waiting for the sweeper. A failed run is never an error here. A repeat
// of an existing source runs that grant if it is due, and returns it.
func (s *Service) Create(ctx context.Context, p CreateParams) (Grant, bool, error) {
	prepared, f, err := s.prepare(ctx, p) // outside the transaction: the flow lookup may read
	if err != nil {
		return Grant{}, false, err
	}
	if s.fast != nil && f.fastEligible() {
		r, err := s.fast.Do(ctx, fastRequest{g: prepared, f: f})
		switch {
		case errors.Is(err, ledger.ErrClosed):
		case err != nil:
			return Grant{}, false, err
		case r.created:
			return r.g, true, nil // as Get would read it back
		}
	}
	var (
		g       Grant
		created bool
	)
	err = s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		if g, created, err = s.insert(ctx, tx, prepared); err != nil {
			return err
		}
		if created || g.State == StatePending || g.State == StateFailed {
			return s.ExecuteAfterCommit(ctx, tx, g.ID)
		}
		return nil
	})
	if err != nil {
		return Grant{}, false, err
	}
	out, err := s.Get(ctx, g.TenantID, g.ID)
	return out, created, err
}

// ExecuteAfterCommit claims the grant in tx (when it is due) and runs it right after tx commits,
// before the caller's Tx call returns: the synchronous path, with no window for another executor
// to take the grant. A failed run is logged and left to the sweeper — the claim's lease expires
// and the grant is replayed; it is durable either way. The error is the claim's.
func (s *Service) ExecuteAfterCommit(ctx context.Context, tx *sqldb.Tx, grantID string) error {
	ctx = context.WithoutCancel(ctx)
	g, claimed, err := s.claimIn(ctx, tx, grantID, s.newToken())
	if err != nil || !claimed {
		return err
	}
	tx.AfterCommit(func() {
		s.metrics.transition(StateRunning)
		if _, err := s.run(ctx, g); err != nil {
			s.log.Warn("reward: inline execution failed; the sweeper will replay the grant", "grant", grantID, "err", err)
		}
	})
	return nil
}

// prepare validates CreateParams and builds the grant row; it returns the grant's flow too.
func (s *Service) prepare(ctx context.Context, p CreateParams) (Grant, *flow, error) {
	var fs problem.Fields
	checkIdentity(&fs, p)
	params, ok := compactObject(p.Params)
	switch {
	case !ok:
		fs.Add("params", "must be a JSON object")
	case len(params) > maxParamsBytes:
		fs.Add("params", "must be at most %d bytes", maxParamsBytes)
	}
	now := s.now()
	g := Grant{ID: ids.New("grt", now), TenantID: p.TenantID, UserID: p.UserID, SourceKind: p.SourceKind,
		SourceID: p.SourceID, Seq: p.Seq, Params: params, State: StatePending, NextAttemptAt: &now,
		CreatedAt: now, UpdatedAt: now}
	f, err := s.resolveFlow(ctx, &fs, p)
	if err != nil {
		return Grant{}, nil, err
	}
	if err := fs.Err("invalid grant"); err != nil {
		return Grant{}, nil, err
	}
	g.FlowKey, g.FlowVersion, g.flowID = f.ref.Key, f.ref.Version, f.ref.ID
	if f.ref.ID == "" {
		g.flowSpec = string(f.normalised())
	}
	g.MaxAttempts = f.maxAttempts()
	return g, f, nil
}

func checkIdentity(fs *problem.Fields, p CreateParams) {
	if p.TenantID == "" || len(p.TenantID) > 64 {
		fs.Add("tenant_id", "is required (at most 64 characters)")
	}
	if !tenant.ValidUserID(p.UserID) {
		fs.Add("user_id", "must be 1 to 128 characters of A-Z a-z 0-9 _ . : @ -")
	}
	if !sourceKindPattern.MatchString(p.SourceKind) {
		fs.Add("source_kind", "must be a slug of at most 32 characters")
	}
	if !sourceIDPattern.MatchString(p.SourceID) {
		fs.Add("source_id", "must be 1 to 128 printable ASCII characters without spaces")
	}
	if p.Seq < 0 || p.Seq > 1_000_000 {
		fs.Add("seq", "must be between 0 and 1000000")
	}
}

// resolveFlow finds the grant's flow: the live version of p.Flow, or p.Rewards compiled. Problems
// with the input go to fs; the error is for failures to look the flow up.
func (s *Service) resolveFlow(ctx context.Context, fs *problem.Fields, p CreateParams) (*flow, error) {
	switch {
	case p.Flow != "" && len(p.Rewards) > 0:
		fs.Add("flow", "name a flow or list rewards, not both")
		return &flow{}, nil
	case p.Flow != "":
		return s.liveFlow(ctx, fs, p.TenantID, p.Flow)
	case len(p.Rewards) == 0:
		fs.Add("rewards", "name a flow or list at least one reward")
		return &flow{}, nil
	}
	before := len(*fs)
	spec := compileRewards(fs, "rewards", p.Rewards, s.opts.Coupons != nil)
	if len(*fs) > before {
		return &flow{}, nil
	}
	f, err := s.inlineFlow(string(mustJSON(spec)))
	if err != nil {
		return nil, fmt.Errorf("reward: inline rewards compiled to a bad flow: %w", err)
	}
	return f, nil
}

func (s *Service) liveFlow(ctx context.Context, fs *problem.Fields, tenantID, key string) (*flow, error) {
	if !flowKeyPattern.MatchString(key) {
		fs.Add("flow", "must be a flow key (a slug)")
		return &flow{}, nil
	}
	if s.opts.Flows == nil {
		fs.Add("flow", "flows are not available on this node; list rewards instead")
		return &flow{}, nil
	}
	ref, spec, err := s.opts.Flows.Live(ctx, tenantID, key)
	if problem.Is(err, problem.KindNotFound) {
		fs.Add("flow", "unknown flow %q: no published flow has this key", key)
		return &flow{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reward: look up flow %s: %w", key, err)
	}
	return s.cachedFlow(ref, spec)
}

// cachedFlow parses a published flow version once per process (versions never change).
func (s *Service) cachedFlow(ref FlowRef, spec json.RawMessage) (*flow, error) {
	key := ref.ID + "@" + strconv.Itoa(ref.Version)
	s.flowsMu.Lock()
	f, ok := s.flows[key]
	s.flowsMu.Unlock()
	if ok {
		return f, nil
	}
	f, err := parseFlow(spec, s.reg, "spec", false)
	if err != nil {
		return nil, fmt.Errorf("reward: flow %s version %d no longer validates on this node: %w", ref.Key, ref.Version, err)
	}
	f.ref = ref
	s.remember(key, f)
	return f, nil
}

// flowOf loads the flow a grant is pinned to.
func (s *Service) flowOf(ctx context.Context, g Grant) (*flow, error) {
	if g.flowID == "" {
		return s.inlineFlow(g.flowSpec)
	}
	ref := FlowRef{ID: g.flowID, Key: g.FlowKey, Version: g.FlowVersion}
	key := ref.ID + "@" + strconv.Itoa(ref.Version)
	s.flowsMu.Lock()
	f, ok := s.flows[key]
	s.flowsMu.Unlock()
	if ok {
		return f, nil
	}
	if s.opts.Flows == nil {
		return nil, errors.New("reward: flows are not available on this node")
	}
	spec, err := s.opts.Flows.Spec(ctx, g.TenantID, ref)
	if err != nil {
		return nil, err
	}
	return s.cachedFlow(ref, spec)
}

// inlineFlow parses the flow stored with a grant, once per distinct spec (many grants share one
// reward list).
func (s *Service) inlineFlow(spec string) (*flow, error) {
	key := "inline:" + spec
	s.flowsMu.Lock()
	f, ok := s.flows[key]
	s.flowsMu.Unlock()
	if ok {
		return f, nil
	}
	f, err := parseFlow(json.RawMessage(spec), s.reg, "spec", false)
	if err != nil {
		return nil, fmt.Errorf("reward: the grant's inline flow no longer validates: %w", err)
	}
	s.remember(key, f)
	return f, nil
}

func (s *Service) remember(key string, f *flow) {
	s.flowsMu.Lock()
	defer s.flowsMu.Unlock()
	if len(s.flows) >= maxCachedFlows {
		clear(s.flows)
	}
	s.flows[key] = f
}

// emit writes one of the module's grant events, if an event sink is configured.
func (s *Service) emit(ctx context.Context, tx *sqldb.Tx, typ string, g Grant, steps []Step) error {
	return s.emitAll(ctx, tx, []bus.Event{s.event(typ, g, steps)})
}

// event builds one of the module's grant events.
func (s *Service) event(typ string, g Grant, steps []Step) bus.Event {
	data := eventData{ID: g.ID, SourceKind: g.SourceKind, SourceID: g.SourceID, Seq: g.Seq, Flow: g.FlowKey,
		FlowVersion: g.FlowVersion, State: g.State, Attempts: g.Attempts, LastError: g.LastError, Steps: steps}
	now := s.now()
	return bus.Event{ID: ids.New("evt", now), Type: typ, TenantID: g.TenantID, UserID: g.UserID,
		SourceKind: SourceGrant, SourceID: g.ID, Time: now, Data: mustJSON(data)}
}

// emitAll writes events in tx, in order, if an event sink is configured.
func (s *Service) emitAll(ctx context.Context, tx *sqldb.Tx, events []bus.Event) error {
	if s.opts.Events == nil || len(events) == 0 {
		return nil
	}
	if err := s.opts.Events(ctx, tx, events...); err != nil {
		return fmt.Errorf("reward: enqueue %s: %w", events[0].Type, err)
	}
	return nil
}

// eventData is the payload of the grant.* events.
type eventData struct {
	ID          string `json:"grant_id"`
	SourceKind  string `json:"source_kind"`
	SourceID    string `json:"source_id"`
	Seq         int    `json:"seq"`
	Flow        string `json:"flow,omitempty"`
	FlowVersion int    `json:"flow_version,omitempty"`
	State       State  `json:"state"`
	Attempts    int    `json:"attempts"`
	LastError   string `json:"last_error,omitempty"`
	Steps       []Step `json:"steps,omitempty"`
}

// notFound is the error for a grant that does not exist (or is another tenant's).
func notFound(id string) error {
	return problem.NotFound("grant %q not found", id).WithCode("grant-not-found")
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
