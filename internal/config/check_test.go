package config_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/config"
)

func TestCheckReportsEveryProblem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.env["PERK_METRICS_ENABLED"] = "maybe"
	path := b.file(t, "perk.yaml", `
server:
  adr: 127.0.0.1:80
  max_body_bytes: 10
database:
  read_url: postgres://replica/perk
redis:
  cluster_addrs: ["a:1", "b"]
outbox:
  batch_size: lots
log:
  level: trace
`[1:])
	require.Equal(t, []config.Problem{
		{Path: "database.read_url", Message: "needs database.url: the embedded SQLite store has no read replica"},
		{Path: "log.level", Message: `must be one of debug, info, warn, error, got "trace"`},
		{Path: "metrics.enabled", Message: `PERK_METRICS_ENABLED: want true or false, got "maybe"`},
		{Path: "outbox.batch_size", Message: `want an integer, got string "lots"`},
		{Path: "redis.cluster_addrs.1", Message: `want host:port, e.g. 10.0.0.1:6379, got "b"`},
		{Path: "server.adr", Message: "unknown key"},
		{Path: "server.max_body_bytes", Message: "must be at least 1024, got 10"},
	}, config.Check(path, b.lookup))
}

func TestCheckWithoutProblems(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Empty(t, config.Check("", b.lookup))
	require.Empty(t, config.Check(b.file(t, "ok.yaml", "server:\n  addr: \":9000\"\n"), b.lookup))
}

func TestCheckFileErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ps := config.Check(filepath.Join(b.dir, "missing.yaml"), b.lookup)
	require.Len(t, ps, 1)
	require.Empty(t, ps[0].Path)
	require.Contains(t, ps[0].Message, "no such file")

	ps = config.Check(b.file(t, "bad.yaml", "server: [\n"), b.lookup)
	require.Len(t, ps, 1)
	require.Contains(t, ps[0].Message, "yaml: line")
}

// TestCheckIncludesSchemaViolations uses a value only the schema refuses:
// time.ParseDuration accepts a leading "+", the schema's pattern does not.
func TestCheckIncludesSchemaViolations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	path := b.file(t, "perk.yaml", "server:\n  read_timeout: +5s\n")
	_, err := config.Load(path, b.lookup)
	require.NoError(t, err)
	ps := config.Check(path, b.lookup)
	require.Len(t, ps, 1)
	require.Equal(t, "server.read_timeout", ps[0].Path)
	require.Contains(t, ps[0].Message, "does not match pattern")
}
