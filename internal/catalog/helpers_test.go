package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

var sets = []sqldb.Migrations{catalog.Migrations}

// Tenants and actors used by the tests.
const (
	tenantA = "mch_a"
	tenantB = "mch_b"
	alice   = "usr_alice"
	bob     = "usr_bob"
)

type testBundle struct {
	db     *sqldb.DB
	reg    *catalog.Registry
	svc    *catalog.Service
	clock  *clock.Fake
	notes  *recorder
	builds *buildCounter
}

func setup(t *testing.T, db *sqldb.DB) *testBundle {
	t.Helper()
	b := &testBundle{db: db, reg: testRegistry(t), clock: clock.NewFake(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)),
		notes: &recorder{}, builds: &buildCounter{n: map[string]int{}}}
	require.NoError(t, b.reg.Register(catalog.Kind{Name: "tag", Validate: acceptAll, Index: b.builds.index}))
	b.svc = catalog.New(db, catalog.Options{Registry: b.reg, Clock: b.clock, Notifier: b.notes})
	return b
}

// snapshot returns a loaded snapshot on the bundle's database.
func (b *testBundle) snapshot(t *testing.T, opts catalog.SnapshotOptions) *catalog.Snapshot {
	t.Helper()
	opts.Registry = b.reg
	s, err := catalog.NewSnapshot(b.db, opts)
	require.NoError(t, err)
	require.NoError(t, s.Load(context.Background()))
	return s
}

// create makes a draft and fails the test on error.
func (b *testBundle) create(t *testing.T, tenant, kind, key, spec string) catalog.Resource {
	t.Helper()
	r, err := b.svc.Create(context.Background(), catalog.CreateParams{TenantID: tenant, Kind: kind, Key: key,
		Spec: json.RawMessage(spec), Actor: alice})
	require.NoError(t, err)
	return r
}

// publish publishes r's current draft.
func (b *testBundle) publish(t *testing.T, r catalog.Resource) catalog.Version {
	t.Helper()
	v, err := b.svc.Publish(context.Background(), catalog.PublishParams{TenantID: r.TenantID, ID: r.ID, Actor: alice})
	require.NoError(t, err)
	return v
}

// edit replaces r's draft and returns the updated resource.
func (b *testBundle) edit(t *testing.T, r catalog.Resource, spec string) catalog.Resource {
	t.Helper()
	r, err := b.svc.UpdateDraft(context.Background(), catalog.UpdateDraftParams{TenantID: r.TenantID, ID: r.ID,
		Revision: r.DraftRevision, Spec: json.RawMessage(spec), Actor: alice})
	require.NoError(t, err)
	return r
}

func (b *testBundle) get(t *testing.T, tenant, id string) catalog.Resource {
	t.Helper()
	r, err := b.svc.Get(context.Background(), catalog.GetParams{TenantID: tenant, ID: id})
	require.NoError(t, err)
	return r
}

// count returns the number of rows of a catalog table.
func (b *testBundle) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Reader().QueryRow(context.Background(), "SELECT COUNT(*) FROM "+table).Scan(&n))
	return n
}

func testRegistry(t *testing.T) *catalog.Registry {
	t.Helper()
	reg := catalog.NewRegistry()
	require.NoError(t, reg.Register(catalog.Kind{Name: "flow", Validate: validateFlow}))
	require.NoError(t, reg.Register(catalog.Kind{Name: "task", Validate: validateTask}))
	require.NoError(t, reg.Register(catalog.Kind{Name: "note", Validate: acceptAll}))
	return reg
}

func acceptAll(context.Context, catalog.ValidateInput) (json.RawMessage, error) { return nil, nil }

// validateFlow wants {"steps": [{"amount": n>0}, …]}: steps may be missing in a draft.
func validateFlow(_ context.Context, in catalog.ValidateInput) (json.RawMessage, error) {
	var spec struct {
		Steps []struct {
			Amount *int64 `json:"amount"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(in.Spec, &spec); err != nil {
		return nil, problem.Invalid("invalid flow").WithField("spec.steps", "must be a list of steps")
	}
	var fs problem.Fields
	if !in.Draft() && len(spec.Steps) == 0 {
		fs.Add("spec.steps", "at least one step is required")
	}
	for i, st := range spec.Steps {
		if st.Amount == nil || *st.Amount <= 0 {
			fs.Add(fmt.Sprintf("spec.steps[%d].amount", i), "must be a positive integer")
		}
	}
	return nil, fs.Err("invalid flow")
}

// validateTask wants {"title": "…", "flow": "<published flow key>"}; the reference is checked at
// publish only.
func validateTask(ctx context.Context, in catalog.ValidateInput) (json.RawMessage, error) {
	var spec struct {
		Title string `json:"title"`
		Flow  string `json:"flow"`
	}
	if err := json.Unmarshal(in.Spec, &spec); err != nil {
		return nil, problem.Invalid("invalid task").WithField("spec", "title and flow must be strings")
	}
	var fs problem.Fields
	if in.Draft() {
		return nil, nil
	}
	if spec.Title == "" {
		fs.Add("spec.title", "is required")
	}
	if spec.Flow == "" {
		fs.Add("spec.flow", "is required")
	} else if _, ok, err := in.Lookup.Published(ctx, "flow", spec.Flow); err != nil {
		return nil, err
	} else if !ok {
		fs.Add("spec.flow", "flow %q is not published", spec.Flow)
	}
	return nil, fs.Err("invalid task")
}

// recorder is a Notifier that keeps every change and optionally forwards it.
type recorder struct {
	mu      sync.Mutex
	changes []catalog.Change
	forward func(catalog.Change)
}

func (r *recorder) Notify(_ context.Context, c catalog.Change) error {
	r.mu.Lock()
	r.changes = append(r.changes, c)
	fwd := r.forward
	r.mu.Unlock()
	if fwd != nil {
		fwd(c)
	}
	return nil
}

func (r *recorder) all() []catalog.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]catalog.Change(nil), r.changes...)
}

func (r *recorder) setForward(fn func(catalog.Change)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forward = fn
}

// buildCounter is the "tag" kind's index: the list of keys, counting builds per tenant.
type buildCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *buildCounter) index(items []catalog.Published) any {
	c.mu.Lock()
	c.n[items[0].TenantID]++
	c.mu.Unlock()
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = it.Key
	}
	return keys
}

func (c *buildCounter) get(tenant string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[tenant]
}

// requireProblem asserts err is a problem of the given kind and returns it.
func requireProblem(t *testing.T, err error, kind problem.Kind) *problem.Error {
	t.Helper()
	require.Error(t, err)
	pe, ok := problem.As(err)
	require.True(t, ok, "want a problem error, got %v", err)
	require.Equal(t, kind, pe.Kind, "error: %v", err)
	return pe
}

// fieldPaths lists the paths of a problem's field errors.
func fieldPaths(pe *problem.Error) []string {
	paths := make([]string, len(pe.Fields))
	for i, f := range pe.Fields {
		paths[i] = f.Path
	}
	return paths
}
