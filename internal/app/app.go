// Package app is perk's composition root: the only package that knows every module. It opens the
// store, the bus and the kv, builds the modules, wires their narrow interfaces together and runs
// the HTTP server and the background workers.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/perkhq/perk/internal/activity"
	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/config"
	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/httpapi"
	"github.com/perkhq/perk/internal/ingest"
	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/idem"
	"github.com/perkhq/perk/internal/platform/kv"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/reward"
	"github.com/perkhq/perk/internal/task"
	"github.com/perkhq/perk/internal/tenant"
	"github.com/perkhq/perk/internal/webhook"
)

// Version is the build's version, set with -ldflags at build time.
var Version = "dev"

// Options are what New needs besides the config.
type Options struct {
	Config config.Config
	// Stdout receives the start-up banner (URLs and keys); nil discards it.
	Stdout io.Writer
	// Logger overrides the logger built from the config.
	Logger *slog.Logger
	// Clock overrides the wall clock, for tests.
	Clock clock.Clock
	// NodeName names this node (default: host name and pid).
	NodeName string
}

// App is one running perk node.
type App struct {
	cfg      config.Config
	log      *slog.Logger
	clock    clock.Clock
	stdout   io.Writer
	registry *prometheus.Registry
	node     string

	db         *sqldb.DB
	bus        *bus.Bus
	kv         kv.Store
	redis      redis.UniversalClient // nil without Redis
	idem       *idem.Service
	idemSQL    *idem.SQLStorage
	tenants    *tenant.Service
	catalog    *catalog.Service
	snapshot   *catalog.Snapshot
	relay      *bus.Relay
	ledger     *ledger.Service
	rewards    *reward.Service
	zones      *zoneCache
	webhooks   *webhook.Service
	dispatcher *webhook.Dispatcher
	activity   *activity.Service
	ingest     *ingest.Service
	coupons    *coupon.Service
	tasks      *task.Service
	http       *httpapi.Server

	closers []func() error
	closeMu sync.Once
}

// New opens everything a node needs and builds the modules. Close releases what it opened.
func New(ctx context.Context, opts Options) (_ *App, err error) {
	a := &App{cfg: opts.Config, clock: opts.Clock, stdout: opts.Stdout, node: opts.NodeName,
		registry: prometheus.NewRegistry()}
	if a.clock == nil {
		a.clock = clock.Real{}
	}
	if a.stdout == nil {
		a.stdout = io.Discard
	}
	if a.node == "" {
		host, _ := os.Hostname()
		a.node = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	a.log = opts.Logger
	if a.log == nil {
		a.log = newLogger(a.cfg.Log, os.Stderr)
	}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	steps := []func(context.Context) error{a.openStore, a.openBus, a.openKV, a.buildModules}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == config.LogFormat("text") {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func (a *App) onClose(fn func() error) { a.closers = append(a.closers, fn) }

// Close releases everything New opened, in reverse order.
func (a *App) Close() {
	a.closeMu.Do(func() {
		for i := len(a.closers) - 1; i >= 0; i-- {
			if err := a.closers[i](); err != nil {
				a.log.Warn("close", "err", err)
			}
		}
	})
}

// DB returns the store, for tests and tools.
func (a *App) DB() *sqldb.DB { return a.db }

// Handler returns the HTTP API, for in-process tests.
func (a *App) Handler() http.Handler { return a.http.Handler() }

// Snapshot returns the node's config snapshot.
func (a *App) Snapshot() *catalog.Snapshot { return a.snapshot }

// Catalog returns the config center service.
func (a *App) Catalog() *catalog.Service { return a.catalog }

// Tenants returns the tenant service.
func (a *App) Tenants() *tenant.Service { return a.tenants }

// PlatformKeyPath is where the platform key is written on first start.
func (a *App) PlatformKeyPath() string { return filepath.Join(a.cfg.DataDir, "platform-key") }

// Run serves HTTP on the configured address and runs the background workers until ctx is done,
// then shuts down gracefully: it stops taking requests, drains those in flight, stops the relay
// after its current batch and closes the bus and the store.
func (a *App) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.Server.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.Server.Addr, err)
	}
	return a.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	defer a.Close()
	if err := a.start(ctx, ln); err != nil {
		return err
	}
	srv := &http.Server{Handler: a.http.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: a.cfg.Server.ReadTimeout.Std(), WriteTimeout: a.cfg.Server.WriteTimeout.Std(),
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	workers, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	a.runWorkers(workers, &wg)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	a.log.Info("perk is serving", "addr", ln.Addr().String(), "node", a.node, "version", Version)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.cfg.Server.ShutdownTimeout.Std())
	defer cancel()
	a.log.Info("shutting down: draining requests")
	if err := srv.Shutdown(shutdownCtx); err != nil {
		a.log.Warn("http shutdown", "err", err)
	}
	stopWorkers()
	wg.Wait()
	a.log.Info("stopped")
	if errors.Is(serveErr, http.ErrServerClosed) {
		return nil
	}
	return serveErr
}

// baseURL is the public URL of the node.
func (a *App) baseURL(ln net.Listener) string {
	if a.cfg.Server.BaseURL != "" {
		return strings.TrimRight(a.cfg.Server.BaseURL, "/")
	}
	return "http://" + ln.Addr().String()
}
