package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSchemaProblemPaths checks that schema violations are reported at the
// dotted path of the bad value, which Check relies on to de-duplicate.
func TestSchemaProblemPaths(t *testing.T) {
	t.Parallel()
	root, ps := parseYAML([]byte(`
server:
  adr: x
  read_timeout: 30
  base_url: ~
outbox: {batch_size: 0}
redis:
  cluster_addrs: ["ok:1", "bad"]
log: {level: trace}
`))
	require.Empty(t, ps)
	got := map[string]string{}
	for _, p := range schemaProblems(root) {
		got[p.Path] = p.Message
	}
	require.Len(t, got, 5)
	require.Equal(t, "unknown key", got["server.adr"])
	require.Contains(t, got["server.read_timeout"], "got number, want string")
	require.Contains(t, got["outbox.batch_size"], "minimum")
	require.Contains(t, got["redis.cluster_addrs.1"], "does not match pattern")
	require.Contains(t, got["log.level"], "value must be one of")
}
