package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/activity"
	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/config"
	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/httpapi"
	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/idem"
	"github.com/perkhq/perk/internal/platform/kv"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/reward"
	"github.com/perkhq/perk/internal/task"
	"github.com/perkhq/perk/internal/tenant"
	"github.com/perkhq/perk/internal/webhook"
)

// Migrations lists every module's migration set, in the order they are applied.
func Migrations() []sqldb.Migrations {
	return []sqldb.Migrations{bus.Migrations, kv.Migrations, idem.Migrations, tenant.Migrations, catalog.Migrations,
		ledger.Migrations, reward.Migrations, webhook.Migrations, activity.Migrations, coupon.Migrations,
		task.Migrations}
}

// countMigrations is how many migration files all modules have for one engine.
func countMigrations(d sqldb.Dialect) int {
	n := 0
	for _, set := range Migrations() {
		dir, err := set.For(d)
		if err != nil {
			continue
		}
		entries, _ := fs.ReadDir(dir, ".")
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".sql") {
				n++
			}
		}
	}
	return n
}

func storeOptions(cfg config.Config) sqldb.Options {
	return sqldb.Options{URL: cfg.Database.URL, ReadURL: cfg.Database.ReadURL,
		SQLitePath: filepath.Join(cfg.DataDir, "perk.db"), MaxOpenConns: cfg.Database.MaxOpenConns,
		BusyTimeout: cfg.Database.SQLite.BusyTimeout.Std(), ReadConns: cfg.Database.SQLite.ReadConns,
		CacheMiB: cfg.Database.SQLite.CacheMiB, ReadCacheMiB: cfg.Database.SQLite.ReadCacheMiB,
		CheckpointInterval: checkpointInterval(cfg.Database.SQLite.CheckpointInterval.Std())}
}

// checkpointInterval maps the setting, where zero means the writer checkpoints itself, to sqldb's
// option, where that is a negative interval.
func checkpointInterval(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// Migrate applies every pending migration, printing one line per step.
func Migrate(ctx context.Context, cfg config.Config, progress func(string)) error {
	db, err := sqldb.Open(ctx, storeOptions(cfg))
	if err != nil {
		return err
	}
	defer db.Close()
	pending, err := db.Pending(ctx, Migrations())
	if err != nil {
		return err
	}
	if len(pending) == 0 {
		progress("the database is up to date")
		return nil
	}
	if err := db.Migrate(ctx, Migrations(), progress); err != nil {
		return err
	}
	progress(fmt.Sprintf("applied %d migration(s)", len(pending)))
	return nil
}

// openStore connects to the database and migrates it when it is new (or when auto-migrate is on).
// An existing database with pending migrations stops start-up with instructions.
func (a *App) openStore(ctx context.Context) error {
	db, err := sqldb.Open(ctx, storeOptions(a.cfg))
	if err != nil {
		return err
	}
	a.db = db
	a.onClose(db.Close)
	pending, err := db.Pending(ctx, Migrations())
	if err != nil {
		return err
	}
	if len(pending) == 0 {
		return nil
	}
	fresh := len(pending) == countMigrations(db.Dialect())
	if !fresh && !a.cfg.Database.AutoMigrate {
		return fmt.Errorf("the database has %d pending migration(s) (%s): back it up, then run 'perk migrate' "+
			"(or start with --auto-migrate)", len(pending), strings.Join(pending, ", "))
	}
	return db.Migrate(ctx, Migrations(), func(line string) { a.log.Info(line) })
}

func (a *App) openBus(ctx context.Context) error {
	b, err := bus.Open(ctx, bus.Options{URL: a.cfg.Bus.URL, DataDir: a.cfg.DataDir, Prefix: a.cfg.Bus.Prefix,
		MaxStoreBytes: a.cfg.Bus.Embedded.MaxStoreBytes, Name: a.node, Clock: a.clock, Logger: a.log,
		Registerer: a.registry})
	if err != nil {
		return err
	}
	a.bus = b
	a.onClose(func() error { b.Close(); return nil })
	a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "perk_bus_connected",
		Help: "1 while this node is connected to the bus."}, func() float64 {
		if b.Connected() {
			return 1
		}
		return 0
	}))
	return nil
}

func (a *App) openKV(ctx context.Context) error {
	if !a.cfg.Redis.Configured() {
		store, err := kv.NewSQL(a.db, kv.SQLOptions{Clock: a.clock, Registerer: a.registry})
		a.kv = store
		return err
	}
	client, err := kv.NewRedisClient(a.cfg.Redis.URL, a.cfg.Redis.ClusterAddrs)
	if err != nil {
		return err
	}
	a.redis = client
	a.onClose(client.Close)
	if err := client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("connect to redis: %w", err)
	}
	store, err := kv.NewRedis(kv.RedisOptions{Client: client, Prefix: a.cfg.Redis.KeyPrefix, Registerer: a.registry})
	a.kv = store
	return err
}

// buildModules makes the services and the HTTP API.
func (a *App) buildModules(ctx context.Context) error {
	a.tenants = tenant.New(a.db, tenant.Options{Clock: a.clock, TouchInterval: a.cfg.Auth.KeyTouchInterval.Std(),
		TokenLeeway: a.cfg.Auth.TokenLeeway.Std(), KeyCacheTTL: keyCacheTTL(a.cfg.Auth.KeyCacheTTL.Std()), Logger: a.log})
	registry := catalog.NewRegistry()
	if err := registerKinds(registry); err != nil {
		return err
	}
	a.catalog = catalog.New(a.db, catalog.Options{Registry: registry, Clock: a.clock,
		Notifier: busNotifier{b: a.bus, local: a.applyLocalChange}, Logger: a.log})
	snap, err := catalog.NewSnapshot(a.db, catalog.SnapshotOptions{Registry: registry,
		RefreshInterval: a.cfg.Catalog.RefreshInterval.Std(), Clock: a.clock, Logger: a.log, Registerer: a.registry})
	if err != nil {
		return err
	}
	a.snapshot = snap
	if err := a.buildIdem(); err != nil {
		return err
	}
	a.relay = bus.NewRelay(a.db, a.bus, bus.RelayOptions{Clock: a.clock, PollInterval: a.cfg.Outbox.PollInterval.Std(),
		BatchSize: a.cfg.Outbox.BatchSize, MaxBackoff: a.cfg.Outbox.MaxBackoff.Std(), Node: a.node,
		Registerer: a.registry, Logger: a.log})
	a.registry.MustRegister(newDBCollector(a.db))
	a.zones = &zoneCache{clock: a.clock, load: func(ctx context.Context, tenantID string) (*time.Location, error) {
		m, err := a.tenants.GetMerchant(ctx, tenantID)
		return m.Location(), err
	}}
	if err := a.buildRewardsCore(registry); err != nil {
		return err
	}
	if err := a.buildBusiness(registry); err != nil {
		return err
	}
	a.http = httpapi.New(httpapi.Deps{Tenants: a.tenants, Catalog: a.catalog, Idem: a.idem,
		Webhooks: a.webhooks, Activity: a.activity, Ledger: a.ledger, Rewards: a.rewards, Ingest: a.ingest, Coupons: a.coupons, Tasks: a.tasks,
		Ready: a.readiness(), Info: a.info, Registry: a.registry, Logger: a.log,
		MaxBodyBytes: a.cfg.Server.MaxBodyBytes, Version: Version})
	return nil
}

// start prepares what must exist before the node takes requests.
func (a *App) start(ctx context.Context, ln net.Listener) error {
	if err := a.snapshot.Load(ctx); err != nil {
		return fmt.Errorf("load config snapshot: %w", err)
	}
	stop, err := a.bus.Watch(ctx, bus.Config, a.bus.Subject(bus.Config, "change"), func(ctx context.Context, m bus.Msg) error {
		var c catalog.Change
		if err := json.Unmarshal(m.Data, &c); err != nil {
			return nil // not ours to fix; the periodic refresh covers it
		}
		return a.snapshot.OnNotice(ctx, c)
	})
	if err != nil {
		return fmt.Errorf("watch config notices: %w", err)
	}
	a.onClose(func() error { stop(); return nil })
	if err := a.startConsumers(ctx); err != nil {
		return err
	}
	created, err := a.tenants.EnsurePlatformKey(ctx, a.PlatformKeyPath())
	if err != nil {
		return err
	}
	base := a.baseURL(ln)
	fmt.Fprintf(a.stdout, "perk %s serving at %s\n  console:      %s/ (landing page; the web console comes in a later release)\n"+
		"  API docs:     %s/docs\n  OpenAPI:      %s/openapi.json\n  metrics:      %s/metrics\n", Version, base, base, base, base, base)
	if created {
		fmt.Fprintf(a.stdout, "  platform key: written to %s (shown nowhere else)\n", a.PlatformKeyPath())
	}
	if a.cfg.Demo.Enabled {
		return a.seedDemo(ctx, base)
	}
	return nil
}

// runWorkers starts the background loops; they stop when ctx is done.
func (a *App) runWorkers(ctx context.Context, wg *sync.WaitGroup) {
	for name, run := range map[string]func(context.Context) error{"outbox relay": a.relay.Run,
		"config refresh": a.snapshot.Run, "webhook dispatcher": a.dispatcher.Run, "activity log": a.activity.Run,
		"grant sweeper": a.rewards.Run, "ledger sweeper": a.sweepLedger, "idempotency purge": a.purgeIdempotency,
		"coupon sweeper": a.coupons.Run, "task sweeper": a.tasks.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				a.log.Error("worker stopped", "worker", name, "err", err)
			}
		}()
	}
}

// busNotifier publishes config changes on the CONFIG stream for every node's snapshot, after
// applying them to this node's own: a client that publishes a resource can use it at once on the
// node that answered (read your writes); other nodes follow within the notice's latency.
type busNotifier struct {
	b     *bus.Bus
	local func(ctx context.Context, c catalog.Change)
}

// Notify implements catalog.Notifier.
func (n busNotifier) Notify(ctx context.Context, c catalog.Change) error {
	n.local(ctx, c)
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return n.b.Publish(ctx, bus.Message{Subject: n.b.Subject(bus.Config, "change"),
		ID: fmt.Sprintf("cfg-%d", c.Seq), Data: data})
}

// applyLocalChange brings this node's snapshot up to a change it just committed; a failure only
// delays it until the notice or the periodic refresh.
func (a *App) applyLocalChange(ctx context.Context, c catalog.Change) {
	if a.snapshot == nil || !a.snapshot.Loaded() {
		return
	}
	if err := a.snapshot.OnNotice(ctx, c); err != nil {
		a.log.Warn("apply own config change", "seq", c.Seq, "err", err)
	}
}

func (a *App) readiness() map[string]func(context.Context) error {
	return map[string]func(context.Context) error{
		"database": func(ctx context.Context) error { return a.db.Writer().PingContext(ctx) },
		"bus":      a.bus.Ping,
		"migrations": func(ctx context.Context) error {
			pending, err := a.db.Pending(ctx, Migrations())
			if err == nil && len(pending) > 0 {
				err = fmt.Errorf("%d pending", len(pending))
			}
			return err
		},
		"config": func(context.Context) error {
			if !a.snapshot.Loaded() {
				return fmt.Errorf("snapshot not loaded")
			}
			return nil
		},
	}
}

func (a *App) info() map[string]any {
	return map[string]any{"node": a.node, "config_snapshot_version": a.snapshot.Version(),
		"database": string(a.db.Dialect()), "bus": a.busMode(), "kv": a.kvMode()}
}

func (a *App) busMode() string {
	if a.cfg.Bus.URL == "" {
		return "embedded"
	}
	return "external"
}

func (a *App) kvMode() string {
	if a.cfg.Redis.Configured() {
		return "redis"
	}
	return "sql"
}

// dbCollector exports the connection pools' statistics and, on SQLite, the background
// checkpoints'.
type dbCollector struct {
	db                                 *sqldb.DB
	open, inUse, waitSecs              *prometheus.Desc
	checkpoints, walFrames, walBacklog *prometheus.Desc
}

func newDBCollector(db *sqldb.DB) *dbCollector {
	labels := []string{"pool"}
	return &dbCollector{db: db,
		open:     prometheus.NewDesc("perk_db_open_connections", "Open connections by pool.", labels, nil),
		inUse:    prometheus.NewDesc("perk_db_in_use_connections", "Connections in use by pool.", labels, nil),
		waitSecs: prometheus.NewDesc("perk_db_wait_seconds_total", "Time spent waiting for a connection.", labels, nil),
		checkpoints: prometheus.NewDesc("perk_db_checkpoints_total",
			"Background checkpoints of the SQLite write-ahead log, by result (ok, busy, error).", []string{"result"}, nil),
		walFrames: prometheus.NewDesc("perk_db_wal_frames",
			"Frames in the SQLite write-ahead log at the last background checkpoint.", nil, nil),
		walBacklog: prometheus.NewDesc("perk_db_wal_backlog_frames",
			"Frames the last background checkpoint could not copy yet (a reader still needed them).", nil, nil)}
}

// Describe implements prometheus.Collector.
func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.open
	ch <- c.inUse
	ch <- c.waitSecs
	ch <- c.checkpoints
	ch <- c.walFrames
	ch <- c.walBacklog
}

// Collect implements prometheus.Collector.
func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	w, r := c.db.Stats()
	for pool, s := range map[string]struct {
		open, inUse int
		wait        float64
	}{
		"write": {w.OpenConnections, w.InUse, w.WaitDuration.Seconds()},
		"read":  {r.OpenConnections, r.InUse, r.WaitDuration.Seconds()},
	} {
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(s.open), pool)
		ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, float64(s.inUse), pool)
		ch <- prometheus.MustNewConstMetric(c.waitSecs, prometheus.CounterValue, s.wait, pool)
	}
	if c.db.Dialect() != sqldb.SQLite {
		return
	}
	cs := c.db.CheckpointStats()
	for result, n := range map[string]int64{"ok": cs.Runs, "busy": cs.Busy, "error": cs.Errors} {
		ch <- prometheus.MustNewConstMetric(c.checkpoints, prometheus.CounterValue, float64(n), result)
	}
	ch <- prometheus.MustNewConstMetric(c.walFrames, prometheus.GaugeValue, float64(cs.WALFrames))
	ch <- prometheus.MustNewConstMetric(c.walBacklog, prometheus.GaugeValue, float64(cs.Backlog))
}

// VerifyLedger recomputes every ledger balance from its entries (and lots and holds) and compares
// it with the cached one. It does not migrate: run it against an up-to-date database.
func VerifyLedger(ctx context.Context, cfg config.Config) (ledger.Report, error) {
	db, err := sqldb.Open(ctx, storeOptions(cfg))
	if err != nil {
		return ledger.Report{}, err
	}
	defer db.Close()
	svc, err := ledger.New(db, ledger.Options{})
	if err != nil {
		return ledger.Report{}, err
	}
	defer svc.Close()
	return svc.Verify(ctx)
}

// keyCacheTTL maps the config (0 = off) to the tenant option (negative = off, 0 = default).
func keyCacheTTL(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
