package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const modulePath = "github.com/perkhq/perk"

type listedPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// moduleOf finds the table entry covering a package path (relative to the repo root).
func moduleOf(rel string) (module string, rank int, ok bool) {
	best := ""
	for _, l := range Layers {
		for _, m := range l.Modules {
			if (rel == m || strings.HasPrefix(rel, m+"/")) && len(m) > len(best) {
				best, rank = m, l.Rank
			}
		}
	}
	return best, rank, best != ""
}

func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err)
		}
		pkgs = append(pkgs, p)
	}
	require.NotEmpty(t, pkgs)
	return pkgs
}

// checkImports returns a violation for each import of this repository that is not strictly below
// the importer's layer (imports inside the importer's own module are fine).
func checkImports(rel string, imports []string) []string {
	from, rank, ok := moduleOf(rel)
	if !ok {
		return []string{rel + " is in no layer: add it to Layers in internal/app/layers.go"}
	}
	var bad []string
	for _, imp := range imports {
		irel, mine := strings.CutPrefix(imp, modulePath+"/")
		if !mine {
			continue
		}
		to, irank, ok := moduleOf(irel)
		switch {
		case !ok:
			bad = append(bad, rel+" imports "+irel+", which is in no layer")
		case to != from && irank >= rank:
			bad = append(bad, rel+" imports "+irel+" on its own layer or above")
		}
	}
	return bad
}

func TestImportsGoDownTheDAG(t *testing.T) {
	t.Parallel()
	var violations []string
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(p.ImportPath, modulePath+"/")
		all := append(append(append([]string{}, p.Imports...), p.TestImports...), p.XTestImports...)
		violations = append(violations, checkImports(rel, all)...)
	}
	require.Empty(t, violations)
}

func TestCheckImportsCatchesViolations(t *testing.T) {
	t.Parallel()
	require.Empty(t, checkImports("internal/tenant", []string{modulePath + "/internal/platform/sqldb", "fmt"}))
	require.Empty(t, checkImports("internal/platform/sqldb/sqldbtest", []string{modulePath + "/internal/platform/sqldb"}))
	require.Len(t, checkImports("internal/tenant", []string{modulePath + "/internal/catalog"}), 1, "same layer")
	require.Len(t, checkImports("internal/platform/sqldb", []string{modulePath + "/internal/tenant"}), 1, "upward")
	require.Len(t, checkImports("internal/nowhere", nil), 1, "unlisted package")
}
