package config_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/perkhq/perk/internal/config"
)

type testBundle struct {
	dir string
	env map[string]string
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	return &testBundle{dir: t.TempDir(), env: map[string]string{}}
}

func (b *testBundle) lookup(name string) (string, bool) {
	v, ok := b.env[name]
	return v, ok
}

// file writes content to a file in the bundle's directory and returns its path.
func (b *testBundle) file(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(b.dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// load loads the YAML content with the bundle's environment.
func (b *testBundle) load(t *testing.T, content string) (config.Config, error) {
	t.Helper()
	return config.Load(b.file(t, "perk.yaml", content), b.lookup)
}

// problems loads content, requires a *config.Error and returns its problems.
func (b *testBundle) problems(t *testing.T, content string) []config.Problem {
	t.Helper()
	_, err := b.load(t, content)
	var cerr *config.Error
	require.ErrorAs(t, err, &cerr)
	return cerr.Problems
}

func TestDefault(t *testing.T) {
	t.Parallel()
	c := config.Default()
	require.NoError(t, c.Validate())
	require.Equal(t, "./data", c.DataDir)
	require.Equal(t, "127.0.0.1:8080", c.Server.Addr)
	require.Equal(t, int64(1<<20), c.Server.MaxBodyBytes)
	require.Equal(t, 15*time.Second, c.Server.ReadTimeout.Std())
	require.Equal(t, 24*time.Hour, c.Idempotency.TTL.Std())
	require.Equal(t, 200*time.Millisecond, c.Outbox.PollInterval.Std())
	require.Equal(t, config.IdemPolicyReplay, c.Idempotency.DefaultPolicy)
	require.Equal(t, "perk:", c.Redis.KeyPrefix)
	require.False(t, c.Redis.Configured())
	require.True(t, c.Metrics.Enabled)
	require.False(t, c.Demo.Enabled)
}

func TestDurationText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"30s": 30 * time.Second, "1m": time.Minute, "24h": 24 * time.Hour, "200ms": 200 * time.Millisecond,
		"1m30s": 90 * time.Second, "0": 0, "1.5h": 90 * time.Minute, "1500us": 1500 * time.Microsecond,
	} {
		var d config.Duration
		require.NoError(t, d.UnmarshalText([]byte(in)), in)
		require.Equal(t, want, d.Std(), in)
	}
	for d, want := range map[time.Duration]string{
		0: "0s", time.Hour * 24: "24h", time.Minute: "1m", 90 * time.Second: "90s",
		200 * time.Millisecond: "200ms", 1500 * time.Microsecond: "1.5ms",
	} {
		require.Equal(t, want, config.Duration(d).String())
	}
	var d config.Duration
	require.ErrorContains(t, d.UnmarshalText([]byte("30")), `invalid duration "30"`)
	require.ErrorContains(t, d.UnmarshalText([]byte("-5s")), "must not be negative")

	out, err := json.Marshal(struct{ D config.Duration }{config.Seconds(60)})
	require.NoError(t, err)
	require.JSONEq(t, `{"D":"1m"}`, string(out))
	y, err := yaml.Marshal(struct{ D config.Duration }{config.Millis(250)})
	require.NoError(t, err)
	require.Equal(t, "d: 250ms\n", string(y))
}

func TestLoadWithoutFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c, err := config.Load("", b.lookup)
	require.NoError(t, err)
	require.Equal(t, config.Default(), c)
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.load(t, `
data_dir: /var/lib/perk
server:
  addr: ":9000"
  base_url: https://perk.example.com/api
  read_timeout: 1m30s
database:
  url: postgres://perk@db:5432/perk
  read_url: postgresql://perk@replica:5432/perk
  sqlite:
    read_conns: 8
redis:
  cluster_addrs: ["10.0.0.1:6379", "[::1]:6380"]
idempotency:
  storage: redis
  default_policy: fail
timeouts: &t
  x: 1
log:
  level: debug
  format: text
demo:
  enabled: true
`[1:])
	require.Error(t, err) // "timeouts" is not a key
	require.Equal(t, "config: timeouts: unknown key", err.Error())

	c, err := b.load(t, `
data_dir: /var/lib/perk
server:
  addr: ":9000"
  base_url: https://perk.example.com/api
  read_timeout: 1m30s
database:
  url: postgres://perk@db:5432/perk
  read_url: postgresql://perk@replica:5432/perk
  sqlite:
    read_conns: 8
redis:
  cluster_addrs: ["10.0.0.1:6379", "[::1]:6380"]
idempotency:
  storage: redis
  default_policy: fail
log:
  level: debug
  format: text
demo:
  enabled: true
`[1:])
	require.NoError(t, err)
	want := config.Default()
	want.DataDir = "/var/lib/perk"
	want.Server.Addr = ":9000"
	want.Server.BaseURL = "https://perk.example.com/api"
	want.Server.ReadTimeout = config.Seconds(90)
	want.Database.URL = "postgres://perk@db:5432/perk"
	want.Database.ReadURL = "postgresql://perk@replica:5432/perk"
	want.Database.SQLite.ReadConns = 8
	want.Redis.ClusterAddrs = []string{"10.0.0.1:6379", "[::1]:6380"}
	want.Idempotency.Storage = config.IdemStorageRedis
	want.Idempotency.DefaultPolicy = config.IdemPolicyFail
	want.Log = config.Log{Level: config.LogDebug, Format: config.LogText}
	want.Demo.Enabled = true
	require.Equal(t, want, c)
}

func TestLoadEmptyValuesKeepDefaults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, content := range []string{"", "# nothing\n", "server:\n", "server:\n  addr:\n  read_timeout: ~\n"} {
		c, err := b.load(t, content)
		require.NoError(t, err, content)
		require.Equal(t, config.Default(), c, content)
	}
}

func TestLoadMergeKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c, err := b.load(t, `
server: &s
  read_timeout: 5s
  write_timeout: 6s
`[1:])
	require.NoError(t, err)
	require.Equal(t, config.Seconds(6), c.Server.WriteTimeout)

	c, err = b.load(t, "x-defaults: &d\n  read_timeout: 5s\n")
	require.Error(t, err)
	c, err = b.load(t, `
server:
  <<: {read_timeout: 5s, write_timeout: 6s}
  write_timeout: 7s
`[1:])
	require.NoError(t, err)
	require.Equal(t, config.Seconds(5), c.Server.ReadTimeout)
	require.Equal(t, config.Seconds(7), c.Server.WriteTimeout)
}

func TestLoadUnknownKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.load(t, "server:\n  adr: 127.0.0.1:80\n")
	require.EqualError(t, err, "config: server.adr: unknown key")
	var cerr *config.Error
	require.ErrorAs(t, err, &cerr)
	require.Equal(t, []config.Problem{{Path: "server.adr", Message: "unknown key"}}, cerr.Problems)
}

func TestLoadWrongTypes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ps := b.problems(t, `
server: 8080
database:
  max_open_conns: many
  auto_migrate: "yes"
  sqlite:
    busy_timeout: 5
bus:
  prefix: [a]
redis:
  cluster_addrs: 10.0.0.1:6379
  key_prefix: 12
outbox:
  batch_size: 99999999999999999999
catalog:
  refresh_interval: soon
log:
  level: {a: 1}
server2: 1
server2: 2
`[1:])
	require.Equal(t, []config.Problem{
		{Path: "bus.prefix", Message: `want a string, got a list`},
		{Path: "catalog.refresh_interval", Message: `invalid duration "soon": want a number with a unit, e.g. "30s", "5m", "200ms"`},
		{Path: "database.auto_migrate", Message: `want true or false, got string "yes"`},
		{Path: "database.max_open_conns", Message: `want an integer, got string "many"`},
		{Path: "database.sqlite.busy_timeout", Message: `want a duration such as "30s", got integer "5"`},
		{Path: "log.level", Message: `want a string, got a mapping`},
		{Path: "outbox.batch_size", Message: `want an integer, got number "99999999999999999999"`},
		{Path: "redis.cluster_addrs", Message: `want a list of strings, got string "10.0.0.1:6379"`},
		{Path: "redis.key_prefix", Message: `want a string, got integer "12"`},
		{Path: "server", Message: `want a mapping of keys to values, got integer "8080"`},
		{Path: "server2", Message: "unknown key"},
		{Path: "server2", Message: "duplicate key"},
	}, ps)
}

func TestLoadReportsAllProblems(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ps := b.problems(t, `
server:
  adr: 127.0.0.1:80
  read_timeout: fast
database:
  read_url: postgres://replica/perk
bus:
  prefix: "perk test"
outbox:
  batch_size: 0
log:
  level: verbose
`[1:])
	require.Equal(t, []config.Problem{
		{Path: "bus.prefix", Message: `may contain only letters, digits, '_' and '-', got "perk test"`},
		{Path: "database.read_url", Message: "needs database.url: the embedded SQLite store has no read replica"},
		{Path: "log.level", Message: `must be one of debug, info, warn, error, got "verbose"`},
		{Path: "outbox.batch_size", Message: "must be between 1 and 10000, got 0"},
		{Path: "server.adr", Message: "unknown key"},
		{Path: "server.read_timeout", Message: `invalid duration "fast": want a number with a unit, e.g. "30s", "5m", "200ms"`},
	}, ps)
}

func TestLoadFileErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := config.Load(filepath.Join(b.dir, "missing.yaml"), b.lookup)
	require.ErrorIs(t, err, fs.ErrNotExist)

	ps := b.problems(t, "server:\n  addr: [\n")
	require.Len(t, ps, 1)
	require.Empty(t, ps[0].Path)
	require.Contains(t, ps[0].Message, "yaml: line")

	ps = b.problems(t, "- a\n- b\n")
	require.Equal(t, []config.Problem{{Path: "", Message: "want a mapping of keys to values, got a list"}}, ps)
}

func TestEnvOverrides(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.env = map[string]string{
		"PERK_DATA_DIR":                     "/srv/perk",
		"PERK_DATABASE_URL":                 "postgres://env@db/perk",
		"PERK_DATABASE_SQLITE_BUSY_TIMEOUT": "250ms",
		"PERK_DATABASE_AUTO_MIGRATE":        "true",
		"PERK_OUTBOX_BATCH_SIZE":            "1000",
		"PERK_REDIS_CLUSTER_ADDRS":          " a:1, b:2 ,,c:3",
		"PERK_METRICS_ENABLED":              "false",
		"PERK_LOG_LEVEL":                    "warn",
		"PERK_REDIS_KEY_PREFIX":             "",
		"UNRELATED":                         "x",
	}
	c, err := b.load(t, "data_dir: /from/file\ndatabase:\n  url: postgres://file@db/perk\n  max_open_conns: 7\n")
	require.NoError(t, err)
	require.Equal(t, "/srv/perk", c.DataDir)                   // env beats file
	require.Equal(t, "postgres://env@db/perk", c.Database.URL) // env beats file
	require.Equal(t, 7, c.Database.MaxOpenConns)               // file beats default
	require.Equal(t, config.Millis(250), c.Database.SQLite.BusyTimeout)
	require.True(t, c.Database.AutoMigrate)
	require.Equal(t, 1000, c.Outbox.BatchSize)
	require.Equal(t, []string{"a:1", "b:2", "c:3"}, c.Redis.ClusterAddrs)
	require.False(t, c.Metrics.Enabled)
	require.Equal(t, config.LogWarn, c.Log.Level)
	require.Empty(t, c.Redis.KeyPrefix) // set but empty: empty
}

func TestEnvFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.env["PERK_DATABASE_URL_FILE"] = b.file(t, "db-url", "postgres://secret@db/perk\n")
	b.env["PERK_REDIS_URL_FILE"] = b.file(t, "redis-url", "redis://:pw@cache:6379/0\r\n")
	b.env["PERK_SERVER_BASE_URL_FILE"] = b.file(t, "base", "https://x.example\n\n")
	c, err := config.Load("", b.lookup)
	var cerr *config.Error
	require.ErrorAs(t, err, &cerr) // only one trailing newline is trimmed
	require.Equal(t, "server.base_url", cerr.Problems[0].Path)

	delete(b.env, "PERK_SERVER_BASE_URL_FILE")
	c, err = config.Load("", b.lookup)
	require.NoError(t, err)
	require.Equal(t, "postgres://secret@db/perk", c.Database.URL)
	require.Equal(t, "redis://:pw@cache:6379/0", c.Redis.URL)
}

func TestEnvProblems(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.env = map[string]string{
		"PERK_DATABASE_URL":             "postgres://a/b",
		"PERK_DATABASE_URL_FILE":        "/dev/null",
		"PERK_REDIS_URL_FILE":           filepath.Join(b.dir, "missing"),
		"PERK_OUTBOX_BATCH_SIZE":        "lots",
		"PERK_METRICS_ENABLED":          "maybe",
		"PERK_CATALOG_REFRESH_INTERVAL": "10",
		"PERK_SERVER_MAX_BODY_BYTES":    "",
	}
	_, err := config.Load("", b.lookup)
	var cerr *config.Error
	require.ErrorAs(t, err, &cerr)
	require.Len(t, cerr.Problems, 6)
	msgs := map[string]string{}
	for _, p := range cerr.Problems {
		msgs[p.Path] = p.Message
	}
	require.Equal(t, map[string]string{
		"catalog.refresh_interval": `PERK_CATALOG_REFRESH_INTERVAL: invalid duration "10": want a number with a unit, e.g. "30s", "5m", "200ms"`,
		"database.url":             "both PERK_DATABASE_URL and PERK_DATABASE_URL_FILE are set; set one",
		"metrics.enabled":          `PERK_METRICS_ENABLED: want true or false, got "maybe"`,
		"outbox.batch_size":        `PERK_OUTBOX_BATCH_SIZE: want an integer, got "lots"`,
		"redis.url":                msgs["redis.url"],
		"server.max_body_bytes":    `PERK_SERVER_MAX_BODY_BYTES: want an integer, got ""`,
	}, msgs)
	require.Contains(t, msgs["redis.url"], "PERK_REDIS_URL_FILE: open ")
}

func TestEnvNames(t *testing.T) {
	t.Parallel()
	names := config.EnvNames()
	for _, want := range []string{
		"PERK_DATA_DIR", "PERK_SERVER_ADDR", "PERK_DATABASE_URL", "PERK_DATABASE_SQLITE_BUSY_TIMEOUT",
		"PERK_BUS_EMBEDDED_MAX_STORE_BYTES", "PERK_REDIS_CLUSTER_ADDRS", "PERK_IDEMPOTENCY_DEFAULT_POLICY",
		"PERK_AUTH_KEY_TOUCH_INTERVAL", "PERK_DEMO_ENABLED",
	} {
		require.Contains(t, names, want)
	}
	require.Len(t, names, schemaLeaves(t), "one env name per leaf key of the schema")
	seen := map[string]bool{}
	for _, n := range names {
		require.False(t, seen[n], "duplicate %s", n)
		seen[n] = true
	}
	for _, n := range names {
		require.False(t, seen[n+config.FileSuffix], "%s%s clashes with a field", n, config.FileSuffix)
	}
}

// TestEveryEnvNameApplies sets each variable in turn and checks that Load
// either applies it or reports a problem at the field it names, so no field
// is missed by the reflection.
func TestEveryEnvNameApplies(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, name := range config.EnvNames() {
		b.env = map[string]string{name: "7"}
		c, err := config.Load("", b.lookup)
		if err == nil {
			require.NotEqual(t, config.Default(), c, name)
			continue
		}
		var cerr *config.Error
		require.ErrorAs(t, err, &cerr, name)
		for _, p := range cerr.Problems {
			path := strings.TrimSuffix(p.Path, ".0") // a list item
			require.Equal(t, name, "PERK_"+strings.ToUpper(strings.ReplaceAll(path, ".", "_")))
		}
	}
}

// schemaLeaves counts the leaf keys of the config JSON schema.
func schemaLeaves(t *testing.T) int {
	t.Helper()
	var doc map[string]any
	require.NoError(t, json.Unmarshal(config.Schema(), &doc))
	var count func(node map[string]any) int
	count = func(node map[string]any) int {
		props, ok := node["properties"].(map[string]any)
		if !ok {
			return 1
		}
		n := 0
		for _, p := range props {
			n += count(p.(map[string]any))
		}
		return n
	}
	return count(doc)
}
