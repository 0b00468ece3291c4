package coupon

import (
	"context"
	"fmt"
	"sync"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/problem"
)

// maxCachedTemplates bounds the compiled-version cache; it is emptied when full.
const maxCachedTemplates = 4096

// templates resolves template versions: the live one from the snapshot (its index holds them
// compiled), pinned older ones from the catalog, each compiled once into a bounded cache keyed
// (tenant, key, version). Published versions never change, so entries never go stale.
type templates struct {
	catalog  *catalog.Service
	snapshot *catalog.Snapshot

	mu       sync.Mutex
	compiled map[versionKey]*qualify.Template
	missing  map[versionKey]bool  // versions that do not exist (or no longer compile)
	ids      map[[2]string]string // (tenant, key) → resource id; keys are fixed at creation
}

type versionKey struct {
	tenant, key string
	version     int
}

func newTemplates(c *catalog.Service, s *catalog.Snapshot) *templates {
	return &templates{catalog: c, snapshot: s, compiled: map[versionKey]*qualify.Template{},
		missing: map[versionKey]bool{}, ids: map[[2]string]string{}}
}

// templateNotFound is the error for a key with no published template.
func templateNotFound(key string) *problem.Error {
	return problem.NotFound("no published coupon template has the key %q", key).WithCode(CodeTemplateNotFound)
}

// live returns the live version of a template, or a NotFound problem.
func (ts *templates) live(ctx context.Context, tenant, key string) (*qualify.Template, error) {
	if ts.snapshot != nil {
		p, ok := ts.snapshot.Get(tenant, KindTemplate, key)
		if !ok {
			return nil, templateNotFound(key)
		}
		if idx, _ := ts.snapshot.Index(tenant, KindTemplate).(*qualify.Index); idx != nil {
			if t, ok := idx.Get(key); ok && t.Version == p.Version {
				return t, nil
			}
		}
		return ts.fromSpec(tenant, key, p.Version, p)
	}
	r, err := ts.catalog.Get(ctx, catalog.GetParams{TenantID: tenant, Kind: KindTemplate, Key: key})
	if problem.Is(err, problem.KindNotFound) || (err == nil && (r.State != catalog.StatePublished || r.PublishedVersion == 0)) {
		return nil, templateNotFound(key)
	}
	if err != nil {
		return nil, fmt.Errorf("coupon: look up template %s: %w", key, err)
	}
	ts.rememberID(tenant, key, r.ID)
	t, ok, err := ts.version(ctx, tenant, key, r.PublishedVersion)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, templateNotFound(key)
	}
	return t, nil
}

// fromSpec compiles the snapshot's copy of a version, through the cache.
func (ts *templates) fromSpec(tenant, key string, version int, p catalog.Published) (*qualify.Template, error) {
	vk := versionKey{tenant, key, version}
	if t, ok := ts.cached(vk); ok {
		return t, nil
	}
	t, err := qualify.DecodeTemplate(key, version, p.Spec)
	if err != nil {
		return nil, templateNotFound(key).Wrap(err)
	}
	ts.remember(vk, t)
	return t, nil
}

// version returns one version of a template; ok is false when it does not exist or no longer
// compiles (the engine then reports the coupon's template as missing).
func (ts *templates) version(ctx context.Context, tenant, key string, version int) (*qualify.Template, bool, error) {
	vk := versionKey{tenant, key, version}
	if t, ok := ts.cached(vk); ok {
		return t, true, nil
	}
	ts.mu.Lock()
	gone := ts.missing[vk]
	ts.mu.Unlock()
	if gone {
		return nil, false, nil
	}
	if ts.snapshot != nil {
		if p, ok := ts.snapshot.Get(tenant, KindTemplate, key); ok && p.Version == version {
			t, err := ts.fromSpec(tenant, key, version, p)
			return t, err == nil, nil
		}
	}
	if ts.catalog == nil {
		return nil, false, nil // a snapshot-only node sees live versions only
	}
	id, err := ts.resourceID(ctx, tenant, key)
	if err != nil || id == "" {
		return nil, false, err
	}
	v, err := ts.catalog.Version(ctx, catalog.VersionParams{TenantID: tenant, ID: id, Version: version})
	if problem.Is(err, problem.KindNotFound) {
		ts.forget(vk)
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("coupon: read template %s version %d: %w", key, version, err)
	}
	t, err := qualify.DecodeTemplate(key, version, v.Spec)
	if err != nil {
		ts.forget(vk)
		return nil, false, nil
	}
	ts.remember(vk, t)
	return t, true, nil
}

// resourceID finds the config resource of a template key ("" when there is none).
func (ts *templates) resourceID(ctx context.Context, tenant, key string) (string, error) {
	ts.mu.Lock()
	id, ok := ts.ids[[2]string{tenant, key}]
	ts.mu.Unlock()
	if ok {
		return id, nil
	}
	r, err := ts.catalog.Get(ctx, catalog.GetParams{TenantID: tenant, Kind: KindTemplate, Key: key})
	if problem.Is(err, problem.KindNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("coupon: look up template %s: %w", key, err)
	}
	ts.rememberID(tenant, key, r.ID)
	return r.ID, nil
}

// lookup resolves every (key, version) the coupons pin and returns the engine's Lookup over them.
// The compiled versions are read under one lock; only the others are resolved one by one.
func (ts *templates) lookup(ctx context.Context, tenant string, cs []qualify.Coupon) (qualify.Lookup, error) {
	found := make(map[pinned]*qualify.Template, min(len(cs), 64))
	var misses []pinned
	ts.mu.Lock()
	for _, c := range cs {
		pk := pinned{c.TemplateKey, c.TemplateVersion}
		if _, done := found[pk]; done {
			continue
		}
		t, ok := ts.compiled[versionKey{tenant, pk.key, pk.version}]
		if !ok {
			misses = append(misses, pk)
		}
		found[pk] = t
	}
	ts.mu.Unlock()
	for _, pk := range misses {
		t, ok, err := ts.version(ctx, tenant, pk.key, pk.version)
		if err != nil {
			return nil, err
		}
		if !ok {
			t = nil
		}
		found[pk] = t
	}
	return func(key string, version int) (*qualify.Template, bool) {
		t := found[pinned{key, version}]
		return t, t != nil
	}, nil
}

// pinned is a template version a coupon pins, within one tenant.
type pinned struct {
	key     string
	version int
}

func (ts *templates) cached(vk versionKey) (*qualify.Template, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.compiled[vk]
	return t, ok
}

func (ts *templates) remember(vk versionKey, t *qualify.Template) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.compiled) >= maxCachedTemplates {
		clear(ts.compiled)
	}
	ts.compiled[vk] = t
}

// forget records a version that does not exist or no longer compiles, so that a wallet pinning
// it does not ask the catalog on every qualification.
func (ts *templates) forget(vk versionKey) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.missing) >= maxCachedTemplates {
		clear(ts.missing)
	}
	ts.missing[vk] = true
}

func (ts *templates) rememberID(tenant, key, id string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.ids) >= maxCachedTemplates {
		clear(ts.ids)
	}
	ts.ids[[2]string{tenant, key}] = id
}
