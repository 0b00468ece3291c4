package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// benchResources is how many live resources each benchmarked kind holds.
const benchResources = 10_000

// BenchmarkSnapshot measures reads and one-change Apply with 10,000 live resources of a kind
// without an index ("note") and of one with a map index ("tag"), on both engines.
func BenchmarkSnapshot(b *testing.B) {
	for _, d := range sqldbtest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			ctx := context.Background()
			db := sqldbtest.Open(b, d, sets)
			reg := catalog.NewRegistry()
			require.NoError(b, reg.Register(catalog.Kind{Name: "note", Validate: acceptAll}))
			require.NoError(b, reg.Register(catalog.Kind{Name: "tag", Validate: acceptAll, Index: mapIndex}))
			ids := map[string][]string{"note": seed(b, db, "note"), "tag": seed(b, db, "tag")}
			svc := catalog.New(db, catalog.Options{Registry: reg})
			snap, err := catalog.NewSnapshot(db, catalog.SnapshotOptions{Registry: reg})
			require.NoError(b, err)
			start := time.Now()
			require.NoError(b, snap.Load(ctx))
			b.Logf("full load of %d resources: %s", 2*benchResources, time.Since(start))

			keys := make([]string, benchResources)
			for i := range keys {
				keys[i] = benchKey(i)
			}
			b.Run("Get", func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, ok := snap.Get(tenantA, "note", keys[i%benchResources]); !ok {
						b.Fatal("missing")
					}
					i++
				}
			})
			b.Run("GetParallel", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						if _, ok := snap.Get(tenantA, "note", keys[i%benchResources]); !ok {
							b.Error("missing")
							return
						}
						i++
					}
				})
			})
			revisions, round := map[string]int{}, 0 // survive the benchmark's repeated runs
			for _, kind := range []string{"note", "tag"} {
				b.Run("Apply/"+kind, func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						b.StopTimer()
						id := ids[kind][i%benchResources]
						rev := max(revisions[id], 1)
						_, err := svc.UpdateDraft(ctx, catalog.UpdateDraftParams{TenantID: tenantA, ID: id, Revision: rev,
							Spec: json.RawMessage(fmt.Sprintf(`{"n": %d, "round": %d}`, i%benchResources, round)), Actor: alice})
						round++
						require.NoError(b, err)
						revisions[id] = rev + 1
						_, err = svc.Publish(ctx, catalog.PublishParams{TenantID: tenantA, ID: id, Actor: alice})
						require.NoError(b, err)
						b.StartTimer()
						require.NoError(b, snap.Apply(ctx))
					}
				})
			}
		})
	}
}

func mapIndex(items []catalog.Published) any {
	idx := make(map[string]int, len(items))
	for _, it := range items {
		idx[it.Key] = it.Version
	}
	return idx
}

func benchKey(i int) string { return fmt.Sprintf("r%05d", i) }

// seed writes benchResources live resources of a kind straight into the tables (the service would
// take minutes) and returns their ids.
func seed(b *testing.B, db *sqldb.DB, kind string) []string {
	b.Helper()
	ctx := context.Background()
	now := sqldb.Micros(time.Now())
	var out []string
	const batch = 500
	for start := 0; start < benchResources; start += batch {
		var res, ver []any
		for i := start; i < start+batch; i++ {
			id := ids.New("cfg", time.Now())
			out = append(out, id)
			spec := fmt.Sprintf(`{"n":%d,"title":"resource %d","tags":["a","b"]}`, i, i)
			res = append(res, id, tenantA, kind, benchKey(i), "published", spec, 1, 1, 1, now, now, alice, alice)
			ver = append(ver, id, 1, tenantA, spec, now, alice, 0)
		}
		require.NoError(b, db.Tx(ctx, func(tx *sqldb.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO catalog_resources (id, tenant_id, kind, res_key, state, draft,
				draft_revision, published_version, published_revision, created_at, updated_at, created_by, updated_by)
				VALUES `+rowsOf(batch, 13), res...); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO catalog_versions (resource_id, version, tenant_id, spec, published_at,
				published_by, rolled_back_from) VALUES `+rowsOf(batch, 7), ver...)
			return err
		}))
	}
	return out
}

// rowsOf returns "($1, …, $cols), ($cols+1, …)" for n rows.
func rowsOf(n, cols int) string {
	s := ""
	for r := range n {
		if r > 0 {
			s += ", "
		}
		s += "(" + sqldb.Placeholders(r*cols+1, cols) + ")"
	}
	return s
}
