package task

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/reward"
)

// UsersFunc returns a user's attributes (and tags), which trigger filters and audiences see as
// user. It is called inside the event transaction: keep it fast (cache).
type UsersFunc func(ctx context.Context, tenantID, userID string) (map[string]any, error)

// Options configures a Service. Snapshot, Catalog and Rewards are required.
type Options struct {
	// Snapshot serves the live task definitions (and their index) from memory.
	Snapshot *catalog.Snapshot
	// Catalog loads the versions in-flight user tasks are pinned to, and archives terminated tasks.
	Catalog *catalog.Service
	// Rewards creates and runs the grants of completed stages.
	Rewards *reward.Service
	// Events writes the task.* domain events; nil writes none.
	Events bus.EventsFunc
	// TimeZone returns a tenant's time zone, which cuts daily, weekly and monthly periods; nil (or a
	// nil answer) means UTC.
	TimeZone func(tenantID string) *time.Location
	// Users returns a user's attributes for filters and audiences; nil means none (an empty map).
	Users UsersFunc
	// SweepInterval is how often Run expires due user tasks (default 1m).
	SweepInterval time.Duration
	// BatchSize is the most behaviour events Consume applies in one transaction (default 256).
	BatchSize int
	// Clock tells the time; nil means the wall clock.
	Clock clock.Clock
	// Registerer registers the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger logs what goes wrong in the background; nil means slog.Default().
	Logger *slog.Logger
}

// Service runs the task center.
type Service struct {
	db      *sqldb.DB
	opts    Options
	clock   clock.Clock
	log     *slog.Logger
	metrics *metrics
	dialect sqldb.Dialect

	versionsMu sync.Mutex
	versions   map[string]*compiled // "<tenant>/<key>@<version>" → a pinned, non-live version
}

// maxCachedVersions bounds the pinned-version cache; it is emptied when full.
const maxCachedVersions = 4096

// New returns a Service on db.
func New(db *sqldb.DB, opts Options) (*Service, error) {
	if opts.Snapshot == nil || opts.Catalog == nil || opts.Rewards == nil {
		return nil, errors.New("task: Snapshot, Catalog and Rewards are required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = defaultProgressBatch
	}
	if err := db.Prepare(context.Background(), preparedStatements(db.Dialect())...); err != nil {
		return nil, fmt.Errorf("task: %w", err)
	}
	return &Service{db: db, opts: opts, clock: opts.Clock, log: opts.Logger.With("module", "task"),
		metrics: newMetrics(opts.Registerer), dialect: db.Dialect(), versions: map[string]*compiled{}}, nil
}

// now is the clock's time at the stored (microsecond) precision.
func (s *Service) now() time.Time { return sqldb.FromMicros(sqldb.Micros(s.clock.Now())) }

// zone is the tenant's time zone.
func (s *Service) zone(tenantID string) *time.Location {
	if s.opts.TimeZone != nil {
		if loc := s.opts.TimeZone(tenantID); loc != nil {
			return loc
		}
	}
	return time.UTC
}

// index returns the tenant's live tasks (an empty index when none).
func (s *Service) index(tenantID string) *index {
	if idx, ok := s.opts.Snapshot.Index(tenantID, KindTask).(*index); ok {
		return idx
	}
	return &index{}
}

// live returns the live version of a task, or nil.
func (s *Service) live(tenantID, key string) *compiled {
	return s.index(tenantID).byKey[key]
}

// liveTask returns the live version of a task, or a problem NotFound.
func (s *Service) liveTask(tenantID, key string) (*compiled, error) {
	c := s.live(tenantID, key)
	if c == nil {
		return nil, problem.NotFound("task %q not found", key).WithCode("task-not-found")
	}
	if c.err != nil {
		return nil, c.err
	}
	return c, nil
}

// killed reports whether a kill switch turns the task (or the whole module) off.
func (s *Service) killed(tenantID, key string) bool {
	snap := s.opts.Snapshot
	return snap.Killed(tenantID, "module:"+KindTask) || snap.Killed(tenantID, KindTask+":"+key)
}

// version returns a task's version: the live one from the snapshot, an older one (an in-flight
// user task's) from the config center, parsed once per process.
func (s *Service) version(ctx context.Context, tenantID, key string, version int) (*compiled, error) {
	if c := s.live(tenantID, key); c != nil && c.version == version {
		return c, c.err
	}
	cacheKey := tenantID + "/" + key + "@" + strconv.Itoa(version)
	s.versionsMu.Lock()
	c, ok := s.versions[cacheKey]
	s.versionsMu.Unlock()
	if ok {
		return c, c.err
	}
	r, err := s.opts.Catalog.Get(ctx, catalog.GetParams{TenantID: tenantID, Kind: KindTask, Key: key})
	if err != nil {
		return nil, fmt.Errorf("task: load %s: %w", key, err)
	}
	v, err := s.opts.Catalog.Version(ctx, catalog.VersionParams{TenantID: tenantID, ID: r.ID, Version: version})
	if err != nil {
		return nil, fmt.Errorf("task: load %s version %d: %w", key, version, err)
	}
	c = compile(catalog.Published{ResourceID: r.ID, TenantID: tenantID, Kind: KindTask, Key: key,
		Version: version, Spec: v.Spec, PublishedAt: v.PublishedAt})
	s.versionsMu.Lock()
	if len(s.versions) >= maxCachedVersions {
		clear(s.versions)
	}
	s.versions[cacheKey] = c
	s.versionsMu.Unlock()
	return c, c.err
}

// users returns a user's attributes (an empty map without Options.Users).
func (s *Service) users(ctx context.Context, tenantID, userID string) (map[string]any, error) {
	if s.opts.Users == nil {
		return map[string]any{}, nil
	}
	attrs, err := s.opts.Users(ctx, tenantID, userID)
	if err != nil {
		return nil, fmt.Errorf("task: user attributes of %s: %w", userID, err)
	}
	if attrs == nil {
		attrs = map[string]any{}
	}
	return attrs, nil
}

// emit writes domain events in tx, if a sink is configured.
func (s *Service) emit(ctx context.Context, tx *sqldb.Tx, events []bus.Event) error {
	if s.opts.Events == nil || len(events) == 0 {
		return nil
	}
	if err := s.opts.Events(ctx, tx, events...); err != nil {
		return fmt.Errorf("task: enqueue %s: %w", events[0].Type, err)
	}
	return nil
}

// event builds a task.* event about ut.
func (s *Service) event(typ string, ut *UserTask, from State, grantIDs []string) bus.Event {
	now := s.now()
	data := eventData{UserTaskID: ut.ID, Task: ut.Task, Version: ut.TaskVersion, Period: ut.Period,
		PeriodKey: ut.PeriodKey, State: ut.State, From: from, Stage: ut.Stage, Progress: ut.Progress,
		Reason: ut.Reason, GrantIDs: grantIDs}
	return bus.Event{ID: ids.New("evt", now), Type: typ, TenantID: ut.TenantID, UserID: ut.UserID,
		SourceKind: EventSourceKind, SourceID: ut.ID, Time: now, Data: mustJSON(data)}
}

// move applies a transition to ut (checked by the state machine) and returns its event.
func (s *Service) move(ut *UserTask, to State, grantIDs []string) (bus.Event, error) {
	from := ut.State
	if err := CheckTransition(from, to); err != nil {
		return bus.Event{}, err
	}
	now := s.now()
	ut.State, ut.UpdatedAt = to, now
	switch to {
	case StateCompleted:
		ut.CompletedAt = &now
	case StateRewarded:
		ut.RewardedAt = &now
	}
	return s.event(eventType(to), ut, from, grantIDs), nil
}
