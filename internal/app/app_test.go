package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/client"
	"github.com/perkhq/perk/internal/config"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/kv/kvtest"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// node is one running perk node in a test.
type node struct {
	app      *App
	url      string
	platform *client.Client
	stopped  chan error
	cancel   context.CancelFunc
}

type nodeOptions struct {
	dialect     sqldb.Dialect
	dbURL       string // share a PostgreSQL schema between nodes
	dataDir     string // share an SQLite file (or embedded bus) between restarts
	busPrefix   string // "" = embedded bus; else external NATS with this prefix
	refresh     time.Duration
	demo        bool
	redisPrefix string // "" = no Redis
	clock       clock.Clock
}

func testConfig(t testing.TB, o nodeOptions) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = o.dataDir
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if o.dialect == sqldb.Postgres {
		cfg.Database.URL = o.dbURL
		if cfg.Database.URL == "" {
			cfg.Database.URL = sqldbtest.FreshSchema(t)
		}
		cfg.Database.MaxOpenConns = 8
	}
	if o.busPrefix != "" {
		cfg.Bus.URL = bustest.URL()
		cfg.Bus.Prefix = o.busPrefix
	}
	if o.refresh > 0 {
		cfg.Catalog.RefreshInterval = config.Duration(o.refresh)
	}
	cfg.Demo.Enabled = o.demo
	if o.redisPrefix != "" {
		cfg.Redis.URL = kvtest.RedisURL()
		cfg.Redis.KeyPrefix = o.redisPrefix
	}
	cfg.Server.ShutdownTimeout = config.Seconds(5)
	return cfg
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startNode builds a node and serves it on a free loopback port until the test ends.
func startNode(t testing.TB, o nodeOptions) *node {
	t.Helper()
	cfg := testConfig(t, o)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, Options{Config: cfg, Logger: quietLogger(), Clock: o.clock})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	n := &node{app: a, url: "http://" + ln.Addr().String(), stopped: make(chan error, 1), cancel: cancel}
	go func() { n.stopped <- a.Serve(ctx, ln) }()
	t.Cleanup(n.stop)
	key, err := os.ReadFile(a.PlatformKeyPath())
	require.Eventually(t, func() bool {
		key, err = os.ReadFile(a.PlatformKeyPath())
		return err == nil && a.Snapshot().Loaded()
	}, 10*time.Second, 10*time.Millisecond)
	n.platform = client.New(n.url, strings.TrimSpace(string(key)))
	require.Eventually(t, func() bool { _, err := n.platform.Health(ctx); return err == nil }, 10*time.Second, 10*time.Millisecond)
	return n
}

func (n *node) stop() {
	n.cancel()
	select {
	case <-n.stopped:
	case <-time.After(30 * time.Second):
	}
}

func randomPrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "a" + hex.EncodeToString(b)
}

func externalPrefix(t testing.TB) string {
	t.Helper()
	p := randomPrefix()
	t.Cleanup(func() { bustest.DeleteStreams(bustest.URL(), p) })
	return p
}

func TestServeOnEveryEngine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		dialect sqldb.Dialect
		bus     bool // external bus
	}{{"sqlite-embedded", sqldb.SQLite, false}, {"postgres-external", sqldb.Postgres, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := nodeOptions{dialect: tc.dialect, demo: true}
			if tc.bus {
				o.busPrefix = externalPrefix(t)
			}
			n := startNode(t, o)
			ctx := context.Background()
			h, err := n.platform.Health(ctx)
			require.NoError(t, err)
			require.Equal(t, string(tc.dialect), h.Info["database"])
			nm, err := n.platform.CreateMerchant(ctx, "Shop", "Asia/Shanghai")
			require.NoError(t, err)
			merchant := client.New(n.url, nm.AdminKey.Secret)
			me, err := merchant.Me(ctx)
			require.NoError(t, err)
			require.Equal(t, nm.Merchant.ID, me.TenantID)

			raw, err := os.ReadFile(filepath.Join(n.app.cfg.DataDir, "demo.json"))
			require.NoError(t, err)
			require.Contains(t, string(raw), `"api_key": "perk_`)
			info, err := os.Stat(n.app.PlatformKeyPath())
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
		})
	}
}

func TestConfigPublishReachesOtherNode(t *testing.T) {
	t.Parallel()
	dbURL, dir := sqldbtest.FreshSchema(t), t.TempDir()
	prefix := externalPrefix(t)
	// a long refresh interval: only the CONFIG notice can carry the change in time
	a := startNode(t, nodeOptions{dialect: sqldb.Postgres, dbURL: dbURL, dataDir: dir, busPrefix: prefix, refresh: time.Hour})
	b := startNode(t, nodeOptions{dialect: sqldb.Postgres, dbURL: dbURL, dataDir: dir, busPrefix: prefix, refresh: time.Hour})
	ctx := context.Background()
	nm, err := a.platform.CreateMerchant(ctx, "Shop", "")
	require.NoError(t, err)
	admin := client.New(a.url, nm.AdminKey.Secret)
	start := time.Now()
	publishSwitch(t, admin, "tasks-off", "module:task")
	require.Eventually(t, func() bool { return b.app.Snapshot().Killed(nm.Merchant.ID, "module:task") },
		10*time.Second, 2*time.Millisecond)
	t.Logf("publish on node A seen by node B after %s", time.Since(start).Round(time.Millisecond))
	// both nodes converge on the same snapshot version, which /healthz shows
	require.Eventually(t, func() bool { return a.app.Snapshot().Killed(nm.Merchant.ID, "module:task") },
		10*time.Second, 2*time.Millisecond)
	hb, err := b.platform.Health(ctx)
	require.NoError(t, err)
	require.EqualValues(t, a.app.Snapshot().Version(), hb.Info["config_snapshot_version"])
	require.Positive(t, a.app.Snapshot().Version())
}

func TestLostNoticeIsRepairedByRefresh(t *testing.T) {
	t.Parallel()
	dbURL, dir := sqldbtest.FreshSchema(t), t.TempDir()
	// different bus prefixes: B never hears A's notices, only its periodic refresh can find the change
	a := startNode(t, nodeOptions{dialect: sqldb.Postgres, dbURL: dbURL, dataDir: dir, busPrefix: externalPrefix(t), refresh: time.Hour})
	b := startNode(t, nodeOptions{dialect: sqldb.Postgres, dbURL: dbURL, dataDir: dir, busPrefix: externalPrefix(t), refresh: 100 * time.Millisecond})
	nm, err := a.platform.CreateMerchant(context.Background(), "Shop", "")
	require.NoError(t, err)
	publishSwitch(t, client.New(a.url, nm.AdminKey.Secret), "coupons-off", "module:coupon")
	require.Eventually(t, func() bool { return b.app.Snapshot().Killed(nm.Merchant.ID, "module:coupon") },
		10*time.Second, 5*time.Millisecond)
}

func publishSwitch(t *testing.T, c *client.Client, key, target string) {
	t.Helper()
	ctx := context.Background()
	_, err := c.Do(ctx, "POST", "/v1/config/switch", map[string]any{"key": key,
		"spec": map[string]any{"target": target, "off": true, "reason": "test"}}, nil)
	require.NoError(t, err)
	_, err = c.Do(ctx, "POST", "/v1/config/switch/"+key+"/publish", nil, nil)
	require.NoError(t, err)
}

func TestPendingMigrationsStopServe(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, nodeOptions{dialect: sqldb.SQLite})
	ctx := context.Background()
	// an existing database on which only some modules were migrated: an upgrade brought the rest
	db, err := sqldb.Open(ctx, storeOptions(cfg))
	require.NoError(t, err)
	require.NoError(t, db.Migrate(ctx, Migrations()[:2], nil))
	require.NoError(t, db.Close())

	_, err = New(ctx, Options{Config: cfg, Logger: quietLogger()})
	require.Error(t, err)
	require.Contains(t, err.Error(), "pending migration")
	require.Contains(t, err.Error(), "perk migrate")

	var lines []string
	require.NoError(t, Migrate(ctx, cfg, func(l string) { lines = append(lines, l) }))
	require.Greater(t, len(lines), 1)
	require.Contains(t, lines[0], "migrated ")
	a, err := New(ctx, Options{Config: cfg, Logger: quietLogger()})
	require.NoError(t, err)
	a.Close()
}

func TestAutoMigrate(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, nodeOptions{dialect: sqldb.SQLite})
	ctx := context.Background()
	db, err := sqldb.Open(ctx, storeOptions(cfg))
	require.NoError(t, err)
	require.NoError(t, db.Migrate(ctx, Migrations()[:1], nil))
	require.NoError(t, db.Close())
	cfg.Database.AutoMigrate = true
	a, err := New(ctx, Options{Config: cfg, Logger: quietLogger()})
	require.NoError(t, err)
	pending, err := a.DB().Pending(ctx, Migrations())
	require.NoError(t, err)
	require.Empty(t, pending)
	a.Close()
}

func TestGracefulShutdownReturns(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOptions{dialect: sqldb.SQLite})
	n.cancel()
	select {
	case err := <-n.stopped:
		require.NoError(t, err)
		n.stopped <- err // let the cleanup's stop return at once
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	_, err := n.platform.Health(context.Background())
	require.Error(t, err)
	var p *client.Problem
	require.False(t, errors.As(err, &p), "the server should be gone, not answering")
}

// TestDBMetrics scrapes /metrics: the pool gauges on both engines, and on SQLite the background
// checkpoints, which copy the writes of the node's start-up into the database file.
func TestDBMetrics(t *testing.T) {
	t.Parallel()
	for _, d := range []sqldb.Dialect{sqldb.SQLite, sqldb.Postgres} {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			n := startNode(t, nodeOptions{dialect: d})
			_, err := n.platform.CreateMerchant(context.Background(), "Shop", "")
			require.NoError(t, err)
			okCheckpoints := regexp.MustCompile(`(?m)^perk_db_checkpoints_total\{result="ok"\} ([0-9.e+]+)$`)
			var body string
			require.Eventually(t, func() bool {
				body = scrape(t, n.url+"/metrics")
				m := okCheckpoints.FindStringSubmatch(body)
				if d != sqldb.SQLite {
					return true
				}
				return m != nil && m[1] != "0" && strings.Contains(body, "perk_db_wal_frames ")
			}, 10*time.Second, 20*time.Millisecond)
			require.Contains(t, body, `perk_db_open_connections{pool="write"}`)
			if d != sqldb.SQLite {
				require.NotContains(t, body, "perk_db_checkpoints_total")
			}
		})
	}
}

// scrape GETs url and returns the body.
func scrape(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(raw)
}
