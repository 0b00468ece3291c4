package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// waitFor is the liveness timeout of the snapshot tests: generous, the box is noisy.
const waitFor = 15 * time.Second

func TestSnapshotNotice(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b := setup(t, db)
		nodeA := b.snapshot(t, catalog.SnapshotOptions{})
		nodeB := b.snapshot(t, catalog.SnapshotOptions{})

		// The in-memory "bus": every notice reaches both nodes, asynchronously.
		bus := make(chan catalog.Change, 64)
		b.notes.setForward(func(c catalog.Change) { bus <- c })
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case c := <-bus:
					for _, node := range []*catalog.Snapshot{nodeA, nodeB} {
						if err := node.OnNotice(ctx, c); err != nil && ctx.Err() == nil {
							t.Errorf("OnNotice: %v", err)
						}
					}
				}
			}
		})
		applied := make(chan time.Time, 8)
		nodeB.Subscribe(func(catalog.Change) { applied <- time.Now() })

		r := b.create(t, tenantA, "flow", "welcome", `{"steps": [{"amount": 1}]}`)
		_, ok := nodeB.Get(tenantA, "flow", "welcome")
		require.False(t, ok, "a draft is not served")
		start := time.Now()
		v := b.publish(t, r)
		require.Eventually(t, func() bool {
			p, ok := nodeB.Get(tenantA, "flow", "welcome")
			return ok && p.Version == 1
		}, waitFor, time.Millisecond)
		t.Logf("notice propagation, publish commit to node B applied: %s", (<-applied).Sub(start))
		p, _ := nodeB.Get(tenantA, "flow", "welcome")
		require.Equal(t, catalog.Published{ResourceID: r.ID, TenantID: tenantA, Kind: "flow", Key: "welcome",
			Version: 1, Spec: v.Spec, PublishedAt: v.PublishedAt}, p)
		require.Equal(t, b.notes.all()[0].Seq, nodeB.Version())
		require.Eventually(t, func() bool { return nodeA.Version() == nodeB.Version() }, waitFor, time.Millisecond)

		// An archive removes it everywhere.
		_, err := b.svc.Archive(ctx, catalog.ArchiveParams{TenantID: tenantA, ID: r.ID, Actor: alice})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			_, okA := nodeA.Get(tenantA, "flow", "welcome")
			_, okB := nodeB.Get(tenantA, "flow", "welcome")
			return !okA && !okB
		}, waitFor, time.Millisecond)
		require.Empty(t, nodeB.List(tenantA, "flow"))
	})
}

func TestSnapshotLostNotice(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		b := setup(t, db)
		reg := prometheus.NewRegistry()
		node := b.snapshot(t, catalog.SnapshotOptions{RefreshInterval: 50 * time.Millisecond, Registerer: reg})
		var (
			mu       sync.Mutex
			repaired []catalog.Change
		)
		node.Subscribe(func(c catalog.Change) {
			mu.Lock()
			defer mu.Unlock()
			repaired = append(repaired, c)
		})
		var wg sync.WaitGroup
		wg.Go(func() { _ = node.Run(ctx) })
		defer wg.Wait()
		defer cancel()

		// Nobody forwards the notices: they are lost.
		r := b.create(t, tenantA, "flow", "welcome", `{"steps": [{"amount": 1}]}`)
		start := time.Now()
		b.publish(t, r)
		require.Eventually(t, func() bool {
			_, ok := node.Get(tenantA, "flow", "welcome")
			return ok
		}, waitFor, time.Millisecond)
		t.Logf("lost notice repaired by the periodic refresh after %s", time.Since(start))

		// The refresh tells subscribers what it repaired, with the seq of the refresh (which may
		// precede the change's own: the data can be newer than the seq read before it).
		mu.Lock()
		require.Len(t, repaired, 1)
		require.LessOrEqual(t, repaired[0].Seq, b.notes.all()[0].Seq)
		repaired[0].Seq = 0
		require.Equal(t, catalog.Change{TenantID: tenantA, Kind: "flow", ResourceID: r.ID, Key: "welcome",
			Version: 1, Action: catalog.ActionPublish, At: b.clock.Now()}, repaired[0])
		mu.Unlock()
		require.Equal(t, 1.0, gaugeValue(t, reg, "perk_catalog_snapshot_resources"))
		require.Equal(t, float64(node.Version()), gaugeValue(t, reg, "perk_catalog_snapshot_seq"))
	})
}

// gaugeValue reads a registered gauge.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s is not registered", name)
	return 0
}

func TestSnapshotConcurrentReaders(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		b := setup(t, db)
		const keys, rounds = 8, 5
		var resources []catalog.Resource
		for i := range keys {
			r := b.create(t, tenantA, "tag", fmt.Sprintf("k%d", i), `{"v": 1}`)
			b.publish(t, r)
			resources = append(resources, r)
		}
		snap := b.snapshot(t, catalog.SnapshotOptions{})

		var (
			stop  atomic.Bool
			reads atomic.Int64
			bad   atomic.Value
			wg    sync.WaitGroup
		)
		check := func(p catalog.Published) {
			var spec struct{ V int }
			if err := json.Unmarshal(p.Spec, &spec); err != nil || spec.V != p.Version {
				bad.Store(fmt.Sprintf("%s: version %d serves spec %s", p.Key, p.Version, p.Spec))
			}
		}
		for range 4 {
			wg.Go(func() {
				for !stop.Load() {
					for i := range keys {
						if p, ok := snap.Get(tenantA, "tag", fmt.Sprintf("k%d", i)); ok {
							check(p)
						} else {
							bad.Store(fmt.Sprintf("k%d vanished", i))
						}
					}
					list := snap.List(tenantA, "tag")
					for i, p := range list {
						check(p)
						if i > 0 && list[i-1].Key >= p.Key {
							bad.Store("list is not sorted")
						}
					}
					if idx, _ := snap.Index(tenantA, "tag").([]string); len(idx) != keys {
						bad.Store(fmt.Sprintf("index has %d keys", len(idx)))
					}
					snap.Killed(tenantA, "module:tag")
					reads.Add(1)
				}
			})
		}
		for round := 2; round <= rounds+1; round++ {
			for i, r := range resources {
				r = b.edit(t, b.get(t, tenantA, r.ID), fmt.Sprintf(`{"v": %d}`, round))
				b.publish(t, r)
				if i%3 == 0 {
					require.NoError(t, snap.Apply(ctx))
				}
			}
			require.NoError(t, snap.Load(ctx))
		}
		stop.Store(true)
		wg.Wait()
		require.Nil(t, bad.Load())
		require.Positive(t, reads.Load())
		t.Logf("%d read rounds during %d publishes", reads.Load(), keys*rounds)
		for _, p := range snap.List(tenantA, "tag") {
			require.Equal(t, rounds+1, p.Version)
		}
	})
}

func TestSnapshotIndex(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		b := setup(t, db)
		snap := b.snapshot(t, catalog.SnapshotOptions{})
		publish := func(tenant, kind, key string) catalog.Resource {
			r := b.create(t, tenant, kind, key, `{}`)
			b.publish(t, r)
			require.NoError(t, snap.Apply(ctx))
			return r
		}
		t1 := publish(tenantA, "tag", "t1")
		publish(tenantB, "tag", "t2")
		require.Equal(t, 1, b.builds.get(tenantA))
		require.Equal(t, 1, b.builds.get(tenantB))
		require.Equal(t, []string{"t1"}, snap.Index(tenantA, "tag"))

		t3 := publish(tenantA, "tag", "t3")
		require.Equal(t, []string{"t1", "t3"}, snap.Index(tenantA, "tag"))
		require.Equal(t, 2, b.builds.get(tenantA))
		require.Equal(t, 1, b.builds.get(tenantB), "tenant B's index is not rebuilt")

		publish(tenantB, "note", "n1")
		require.Nil(t, snap.Index(tenantB, "note"), "a kind without Index has no index")
		require.Equal(t, 1, b.builds.get(tenantB), "another kind's change does not rebuild the index")
		require.NoError(t, snap.Load(ctx))
		require.Equal(t, 2, b.builds.get(tenantA), "a full refresh keeps unchanged indexes")
		require.Equal(t, 1, b.builds.get(tenantB))

		for _, r := range []catalog.Resource{t1, t3} {
			_, err := b.svc.Archive(ctx, catalog.ArchiveParams{TenantID: tenantA, ID: r.ID, Actor: alice})
			require.NoError(t, err)
		}
		require.NoError(t, snap.Apply(ctx))
		require.Nil(t, snap.Index(tenantA, "tag"))
		require.Nil(t, snap.List(tenantA, "tag"))
		require.Equal(t, []string{"t2"}, snap.Index(tenantB, "tag"))
	})
}

func TestSnapshotSubscribers(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		b := setup(t, db)
		snap, err := catalog.NewSnapshot(db, catalog.SnapshotOptions{Registry: b.reg})
		require.NoError(t, err)
		require.False(t, snap.Loaded())
		r := b.create(t, tenantA, "flow", "f", `{"steps": [{"amount": 1}]}`)
		b.publish(t, r)
		require.NoError(t, snap.Apply(ctx), "Apply before Load does a full load")
		require.True(t, snap.Loaded())
		require.Equal(t, b.notes.all()[0].Seq, snap.Version())

		var got []catalog.Change
		cancel := snap.Subscribe(func(c catalog.Change) { got = append(got, c) })
		b.publish(t, b.edit(t, b.get(t, tenantA, r.ID), `{"steps": [{"amount": 2}]}`))
		_, err = b.svc.Rollback(ctx, catalog.RollbackParams{TenantID: tenantA, ID: r.ID, To: 1, Actor: bob})
		require.NoError(t, err)
		_, err = b.svc.Archive(ctx, catalog.ArchiveParams{TenantID: tenantA, ID: r.ID, Actor: bob})
		require.NoError(t, err)
		require.NoError(t, snap.Apply(ctx))
		require.Equal(t, b.notes.all()[1:], got, "every change, in seq order")
		require.Equal(t, got[2].Seq, snap.Version())

		cancel()
		b.publish(t, b.get(t, tenantA, r.ID))
		require.NoError(t, snap.Apply(ctx))
		require.Len(t, got, 3, "a cancelled subscriber hears nothing")
		p, ok := snap.Get(tenantA, "flow", "f")
		require.True(t, ok)
		require.Equal(t, 4, p.Version)

		// A notice the snapshot has already applied is a no-op.
		require.NoError(t, snap.OnNotice(ctx, b.notes.all()[0]))
		require.Equal(t, b.notes.all()[4].Seq, snap.Version())
	})
}

// TestSnapshotConcurrentPublishers checks that incremental application never skips a change: with
// publishers racing and a node applying all along, one last Apply (no full load) must land every
// resource on its final version. A seq that became visible after a larger one would be skipped.
func TestSnapshotConcurrentPublishers(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		b := setup(t, db)
		const writers, rounds = 4, 5
		var resources []catalog.Resource
		for i := range writers {
			resources = append(resources, b.create(t, tenantA, "note", fmt.Sprintf("n%d", i), `{"v": 0}`))
		}
		snap := b.snapshot(t, catalog.SnapshotOptions{})
		var (
			done    atomic.Bool
			applier sync.WaitGroup
			writing sync.WaitGroup
		)
		applier.Go(func() {
			for !done.Load() {
				if err := snap.Apply(ctx); err != nil {
					t.Errorf("Apply: %v", err)
					return
				}
			}
		})
		for _, r := range resources {
			writing.Go(func() {
				for round := 1; round <= rounds; round++ {
					_, err := b.svc.UpdateDraft(ctx, catalog.UpdateDraftParams{TenantID: tenantA, ID: r.ID,
						Revision: round, Spec: json.RawMessage(fmt.Sprintf(`{"v": %d}`, round)), Actor: alice})
					if err == nil {
						_, err = b.svc.Publish(ctx, catalog.PublishParams{TenantID: tenantA, ID: r.ID, Actor: alice})
					}
					if err != nil {
						t.Errorf("publish %s round %d: %v", r.Key, round, err)
						return
					}
				}
			})
		}
		writing.Wait()
		done.Store(true)
		applier.Wait()
		require.NoError(t, snap.Apply(ctx))
		for _, r := range resources {
			p, ok := snap.Get(tenantA, "note", r.Key)
			require.True(t, ok, r.Key)
			require.Equal(t, rounds, p.Version, r.Key)
		}
		require.Equal(t, int64(writers*rounds), snap.Version())
	})
}
