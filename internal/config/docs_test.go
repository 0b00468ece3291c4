package config_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/config"
)

const (
	referenceDoc = "../../docs/configuration.md"
	exampleFile  = "../../docs/perk.example.yaml"
)

func TestDocsMentionEveryEnvName(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(referenceDoc)
	require.NoError(t, err)
	for _, name := range config.EnvNames() {
		require.Contains(t, string(doc), "`"+name+"`", "docs/configuration.md does not mention %s", name)
	}
}

func TestExampleFileLoads(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c, err := config.Load(exampleFile, b.lookup)
	require.NoError(t, err)
	require.Equal(t, config.Default(), c) // it shows the defaults
	require.Empty(t, config.Check(exampleFile, b.lookup))
}

func TestDocsShowExampleFile(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(referenceDoc)
	require.NoError(t, err)
	example, err := os.ReadFile(exampleFile)
	require.NoError(t, err)
	require.True(t, strings.Contains(string(doc), "```yaml\n"+string(example)+"```"),
		"docs/configuration.md must show docs/perk.example.yaml verbatim")
}
