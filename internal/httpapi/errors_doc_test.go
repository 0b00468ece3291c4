package httpapi

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// slugPatterns find the problem slugs the code can answer with.
var slugPatterns = []*regexp.Regexp{
	regexp.MustCompile(`WithCode\("([a-z0-9-]+)"\)`),
	regexp.MustCompile(`Code:\s*"([a-z0-9-]+)"`),
	regexp.MustCompile(`\bCode[A-Za-z]*\s*=\s*"([a-z0-9-]+)"`),
	regexp.MustCompile(`newProblem\([^,]+,\s*"([a-z0-9-]+)"`),
}

func TestEveryProblemCodeIsDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/errors.md")
	require.NoError(t, err)
	slugs := map[string]string{}
	for kind := range kindStatus {
		slugs[string(kind)] = "problem.Kind"
	}
	for _, slug := range statusSlug {
		slugs[slug] = "statusSlug"
	}
	for _, root := range []string{"../../internal", "../../cmd"} {
		require.NoError(t, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, re := range slugPatterns {
				for _, m := range re.FindAllStringSubmatch(string(src), -1) {
					slugs[m[1]] = path
				}
			}
			return nil
		}))
	}
	require.Greater(t, len(slugs), 25, "the scan should find the codes in use")
	for slug, where := range slugs {
		require.Contains(t, string(doc), "`"+slug+"`", "problem slug %q (from %s) is not in docs/errors.md", slug, where)
	}
}
