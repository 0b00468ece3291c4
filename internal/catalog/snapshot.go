package catalog

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// DefaultRefreshInterval is how often Run reloads the snapshot when no interval is given.
const DefaultRefreshInterval = 30 * time.Second

// applyBatch is how many change-log rows Apply reads at a time.
const applyBatch = 500

// SnapshotOptions configures a Snapshot. Every field is optional.
type SnapshotOptions struct {
	// Registry provides the kinds' indexes; nil means only the built-in kinds.
	Registry *Registry
	// RefreshInterval is the period of Run's full refresh (default DefaultRefreshInterval).
	RefreshInterval time.Duration
	// Clock is used to measure propagation delays; nil means the wall clock.
	Clock clock.Clock
	// Logger logs refresh failures; nil means slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives the snapshot's Prometheus collectors.
	Registerer prometheus.Registerer
}

// Snapshot is one node's in-memory copy of every published, non-archived resource's live version,
// with the kinds' indexes. Reads never block: loads build a new immutable view and swap it in.
type Snapshot struct {
	db       *sqldb.DB
	reg      *Registry
	interval time.Duration
	clock    clock.Clock
	log      *slog.Logger
	metrics  *snapshotMetrics

	view atomic.Pointer[view]
	mu   sync.Mutex // serialises Load and Apply, the only writers of view

	subMu   sync.Mutex
	subs    map[int]func(Change)
	nextSub int
}

// NewSnapshot returns an empty snapshot of db's published config; call Load (or Run) to fill it.
// Register every kind on the Registry before the first Load. It fails only when the metrics cannot
// be registered.
func NewSnapshot(db *sqldb.DB, opts SnapshotOptions) (*Snapshot, error) {
	m, err := newSnapshotMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{db: db, reg: opts.Registry, interval: opts.RefreshInterval, clock: opts.Clock,
		log: opts.Logger, metrics: m, subs: map[int]func(Change){}}
	if s.reg == nil {
		s.reg = NewRegistry()
	}
	if s.interval <= 0 {
		s.interval = DefaultRefreshInterval
	}
	if s.clock == nil {
		s.clock = clock.Real{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.view.Store(&view{})
	return s, nil
}

// Get returns the live version of tenant's resource kind/key. Platform resources are not a
// fallback: ask for Platform explicitly. The spec is shared: do not modify it.
func (s *Snapshot) Get(tenant, kind, key string) (Published, bool) {
	b := s.view.Load().bucket(tenant, kind)
	if b == nil {
		return Published{}, false
	}
	p, ok := b.byKey[key]
	if !ok {
		return Published{}, false
	}
	return *p, true
}

// List returns the tenant's live resources of a kind, sorted by key. The specs are shared: do not
// modify them.
func (s *Snapshot) List(tenant, kind string) []Published {
	b := s.view.Load().bucket(tenant, kind)
	if b == nil {
		return nil
	}
	return b.values()
}

// Index returns the index the kind built over the tenant's live resources, or nil when the kind
// has no index or the tenant has nothing of that kind live.
func (s *Snapshot) Index(tenant, kind string) any {
	b := s.view.Load().bucket(tenant, kind)
	if b == nil {
		return nil
	}
	return b.index
}

// Killed reports whether a live kill switch of the tenant, or of the platform, turns target off.
// Targets are matched exactly ("module:campaign", "campaign:summer-sale").
func (s *Snapshot) Killed(tenant, target string) bool {
	v := s.view.Load()
	return v.killed(tenant, target) || (tenant != Platform && v.killed(Platform, target))
}

// Version returns the last change-log seq the snapshot has applied (0 before the first change).
func (s *Snapshot) Version() int64 { return s.view.Load().seq }

// Loaded reports whether the snapshot has been loaded at least once.
func (s *Snapshot) Loaded() bool { return s.view.Load().loaded }

// Subscribe registers fn to be called with each change after it is applied, in seq order, from the
// goroutine that applied it. fn must not call Load, Apply or OnNotice. The returned func removes fn.
func (s *Snapshot) Subscribe(fn func(Change)) (cancel func()) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	id := s.nextSub
	s.nextSub++
	s.subs[id] = fn
	return func() {
		s.subMu.Lock()
		defer s.subMu.Unlock()
		delete(s.subs, id)
	}
}

// Load replaces the snapshot with a full read of the published set. When it repairs differences
// from the previous view (changes it missed), subscribers hear about each one, with the load's
// seq. Indexes of unchanged (tenant, kind) pairs are kept.
func (s *Snapshot) Load(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.measure("full", func() error { return s.load(ctx) })
}

// Apply reads the change log after the last seq applied and reloads just the resources it names.
// Before the first Load it does a full load.
func (s *Snapshot) Apply(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.view.Load().loaded {
		return s.measure("full", func() error { return s.load(ctx) })
	}
	return s.measure("incremental", func() error { return s.apply(ctx) })
}

// OnNotice is what the wiring calls when a change notice arrives from another node: it applies the
// change log unless the snapshot has already seen c.
func (s *Snapshot) OnNotice(ctx context.Context, c Change) error {
	if c.Seq != 0 && c.Seq <= s.Version() {
		return nil
	}
	return s.Apply(ctx)
}

// Run keeps the snapshot fresh until ctx is done: a full Load now (unless already loaded) and
// every RefreshInterval, which repairs any notice that was lost. Failures are logged.
func (s *Snapshot) Run(ctx context.Context) error {
	if !s.Loaded() {
		s.refresh(ctx)
	}
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.refresh(ctx)
		}
	}
}

func (s *Snapshot) refresh(ctx context.Context) {
	if err := s.Load(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("catalog: snapshot refresh failed", "err", err)
	}
}

func (s *Snapshot) measure(mode string, fn func() error) error {
	start := time.Now()
	err := fn()
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.metrics.refreshes.WithLabelValues(mode, result).Inc()
	s.metrics.duration.WithLabelValues(mode).Observe(time.Since(start).Seconds())
	return err
}

// load does a full load; s.mu is held. The seq is read before the data: a change committed in
// between is in the data and will be applied again, harmlessly.
func (s *Snapshot) load(ctx context.Context) error {
	var seq int64
	q := s.db.Reader()
	if err := q.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM catalog_changes`).Scan(&seq); err != nil {
		return fmt.Errorf("catalog: snapshot seq: %w", err)
	}
	rows, err := q.Query(ctx, `SELECT `+publishedColumns+` `+publishedJoin+` WHERE r.state = 'published'`)
	if err != nil {
		return fmt.Errorf("catalog: snapshot load: %w", err)
	}
	all, err := collect(rows, scanPublished)
	if err != nil {
		return fmt.Errorf("catalog: snapshot load: %w", err)
	}
	old := s.view.Load()
	next := &view{seq: max(seq, old.seq), loaded: true, tenants: map[string]map[string]*bucket{}, size: len(all)}
	for bk, items := range groupByBucket(all) {
		slices.SortFunc(items, byKey)
		b := old.bucket(bk.tenant, bk.kind)
		if b == nil || !sameItems(b.items, items) {
			b = s.newBucket(bk.kind, items)
		}
		next.set(bk, b)
	}
	var repaired []Change
	if old.loaded {
		repaired = diffViews(old, next)
	}
	s.store(next)
	s.emit(repaired)
	return nil
}

// apply applies the change log after the view's seq; s.mu is held.
func (s *Snapshot) apply(ctx context.Context) error {
	for {
		cur := s.view.Load()
		changes, err := s.readChanges(ctx, cur.seq)
		if err != nil || len(changes) == 0 {
			return err
		}
		live, err := s.readLive(ctx, changes)
		if err != nil {
			return err
		}
		s.store(s.patch(cur, changes, live))
		now := s.clock.Now()
		for _, c := range changes {
			s.metrics.propagation.Observe(max(0, now.Sub(c.At).Seconds()))
		}
		s.emit(changes)
		if len(changes) < applyBatch {
			return nil
		}
	}
}

func (s *Snapshot) readChanges(ctx context.Context, after int64) ([]Change, error) {
	rows, err := s.db.Reader().Query(ctx, `SELECT seq, tenant_id, kind, resource_id, res_key, version, action, at
		FROM catalog_changes WHERE seq > $1 ORDER BY seq LIMIT $2`, after, applyBatch)
	if err != nil {
		return nil, fmt.Errorf("catalog: read change log: %w", err)
	}
	changes, err := collect(rows, func(row scanner) (Change, error) {
		var (
			c  Change
			at int64
		)
		err := row.Scan(&c.Seq, &c.TenantID, &c.Kind, &c.ResourceID, &c.Key, &c.Version, &c.Action, &at)
		c.At = sqldb.FromMicros(at)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: read change log: %w", err)
	}
	return changes, nil
}

// readLive returns the live version of each resource the changes name that is still live.
func (s *Snapshot) readLive(ctx context.Context, changes []Change) (map[string]Published, error) {
	idList := make([]any, 0, len(changes))
	seen := map[string]bool{}
	for _, c := range changes {
		if !seen[c.ResourceID] {
			seen[c.ResourceID] = true
			idList = append(idList, c.ResourceID)
		}
	}
	rows, err := s.db.Reader().Query(ctx, `SELECT `+publishedColumns+` `+publishedJoin+`
		WHERE r.state = 'published' AND r.id IN (`+sqldb.Placeholders(1, len(idList))+`)`, idList...)
	if err != nil {
		return nil, fmt.Errorf("catalog: read changed resources: %w", err)
	}
	items, err := collect(rows, scanPublished)
	if err != nil {
		return nil, fmt.Errorf("catalog: read changed resources: %w", err)
	}
	live := make(map[string]Published, len(items))
	for _, p := range items {
		live[p.ResourceID] = p
	}
	return live, nil
}

// patch returns a copy of cur with the changed resources replaced (or removed when not live).
// Only the touched (tenant, kind) buckets are copied and re-indexed.
func (s *Snapshot) patch(cur *view, changes []Change, live map[string]Published) *view {
	edits := map[bucketKey]*bucketEdit{}
	for _, c := range changes {
		bk := bucketKey{c.TenantID, c.Kind}
		e := edits[bk]
		if e == nil {
			e = &bucketEdit{keys: map[string]bool{}}
			edits[bk] = e
		}
		if e.keys[c.Key] {
			continue
		}
		e.keys[c.Key] = true
		if p, ok := live[c.ResourceID]; ok {
			e.upserts = append(e.upserts, p)
		} else {
			e.deletes = append(e.deletes, c.Key)
		}
	}
	next := &view{seq: changes[len(changes)-1].Seq, loaded: true, tenants: maps.Clone(cur.tenants), size: cur.size}
	if next.tenants == nil {
		next.tenants = map[string]map[string]*bucket{}
	}
	cloned := map[string]bool{}
	for bk, e := range edits {
		old := cur.bucket(bk.tenant, bk.kind)
		b := s.editBucket(bk.kind, old, e)
		if b == old {
			continue
		}
		if !cloned[bk.tenant] {
			cloned[bk.tenant] = true
			next.tenants[bk.tenant] = maps.Clone(cur.tenants[bk.tenant])
		}
		next.size += b.len() - old.len()
		next.set(bk, b)
	}
	return next
}

type bucketEdit struct {
	keys    map[string]bool
	upserts []Published
	deletes []string
}

// editBucket returns old with the edit applied, old itself when nothing changes, or nil when the
// bucket ends up empty.
func (s *Snapshot) editBucket(kind string, old *bucket, e *bucketEdit) *bucket {
	var (
		byKey = map[string]*Published{}
		items []*Published
	)
	if old != nil {
		byKey, items = maps.Clone(old.byKey), slices.Clone(old.items)
	}
	changed := false
	for i := range e.upserts {
		p := &e.upserts[i]
		if was, ok := byKey[p.Key]; ok && was.ResourceID == p.ResourceID && was.Version == p.Version {
			continue
		}
		byKey[p.Key], items, changed = p, upsertSorted(items, p), true
	}
	for _, key := range e.deletes {
		if _, ok := byKey[key]; ok {
			delete(byKey, key)
			items, changed = deleteSorted(items, key), true
		}
	}
	switch {
	case !changed:
		return old
	case len(items) == 0:
		return nil
	}
	b := &bucket{byKey: byKey, items: items}
	b.index = s.buildIndex(kind, b)
	return b
}

func (s *Snapshot) newBucket(kind string, items []*Published) *bucket {
	b := &bucket{byKey: make(map[string]*Published, len(items)), items: items}
	for _, p := range items {
		b.byKey[p.Key] = p
	}
	b.index = s.buildIndex(kind, b)
	return b
}

// buildIndex runs the kind's Index over a copy of b's items; a panicking index is logged and left
// nil.
func (s *Snapshot) buildIndex(kind string, b *bucket) (idx any) {
	k, ok := s.reg.Kind(kind)
	if !ok || k.Index == nil {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("catalog: index panicked", "kind", kind, "tenant", b.items[0].TenantID, "panic", r)
			idx = nil
		}
	}()
	return k.Index(b.values())
}

func (s *Snapshot) store(v *view) {
	s.view.Store(v)
	s.metrics.seq.Set(float64(v.seq))
	s.metrics.resources.Set(float64(v.size))
}

// emit calls the subscribers with each change; a panicking subscriber is logged.
func (s *Snapshot) emit(changes []Change) {
	if len(changes) == 0 {
		return
	}
	s.subMu.Lock()
	subs := slices.Collect(maps.Values(s.subs))
	s.subMu.Unlock()
	for _, c := range changes {
		for _, fn := range subs {
			s.call(fn, c)
		}
	}
}

func (s *Snapshot) call(fn func(Change), c Change) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("catalog: snapshot subscriber panicked", "seq", c.Seq, "panic", r)
		}
	}()
	fn(c)
}

// view is one immutable state of the snapshot.
type view struct {
	seq     int64
	loaded  bool
	tenants map[string]map[string]*bucket // tenant → kind → bucket
	size    int
}

type bucketKey struct{ tenant, kind string }

// bucket is one tenant's live resources of one kind. It holds pointers so that copying a bucket
// for an edit copies 8 bytes per resource; the Published values themselves are never modified.
type bucket struct {
	byKey map[string]*Published
	items []*Published // sorted by key
	index any
}

// values copies the items out.
func (b *bucket) values() []Published {
	out := make([]Published, len(b.items))
	for i, p := range b.items {
		out[i] = *p
	}
	return out
}

func (b *bucket) len() int {
	if b == nil {
		return 0
	}
	return len(b.items)
}

func (v *view) bucket(tenant, kind string) *bucket { return v.tenants[tenant][kind] }

// set stores b (nil removes the bucket); the tenant's map must already be v's own.
func (v *view) set(bk bucketKey, b *bucket) {
	kinds := v.tenants[bk.tenant]
	if b == nil {
		delete(kinds, bk.kind)
		if len(kinds) == 0 {
			delete(v.tenants, bk.tenant)
		}
		return
	}
	if kinds == nil {
		kinds = map[string]*bucket{}
		v.tenants[bk.tenant] = kinds
	}
	kinds[bk.kind] = b
}

func (v *view) killed(tenant, target string) bool {
	b := v.bucket(tenant, KindSwitch)
	if b == nil {
		return false
	}
	idx, _ := b.index.(switchIndex)
	return idx[target]
}

func groupByBucket(all []Published) map[bucketKey][]*Published {
	groups := map[bucketKey][]*Published{}
	for i := range all {
		p := &all[i]
		bk := bucketKey{p.TenantID, p.Kind}
		groups[bk] = append(groups[bk], p)
	}
	return groups
}

// diffViews lists what a full load changed: a publish for each resource that appeared or moved to
// another version, an archive for each that disappeared. Changes carry next's seq.
func diffViews(old, next *view) []Change {
	var out []Change
	mk := func(p *Published, a Action) Change {
		return Change{Seq: next.seq, TenantID: p.TenantID, Kind: p.Kind, ResourceID: p.ResourceID, Key: p.Key,
			Version: p.Version, Action: a, At: p.PublishedAt}
	}
	for tenant, kinds := range next.tenants {
		for kind, b := range kinds {
			ob := old.bucket(tenant, kind)
			if ob == b {
				continue
			}
			for _, p := range b.items {
				if was, ok := ob.get(p.Key); !ok || was.ResourceID != p.ResourceID || was.Version != p.Version {
					out = append(out, mk(p, ActionPublish))
				}
			}
		}
	}
	for tenant, kinds := range old.tenants {
		for kind, ob := range kinds {
			b := next.bucket(tenant, kind)
			for _, p := range ob.items {
				if now, ok := b.get(p.Key); !ok || now.ResourceID != p.ResourceID {
					out = append(out, mk(p, ActionArchive))
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Change) int {
		return cmp.Or(strings.Compare(a.TenantID, b.TenantID), strings.Compare(a.Kind, b.Kind),
			strings.Compare(a.Key, b.Key), strings.Compare(string(b.Action), string(a.Action)))
	})
	return out
}

func (b *bucket) get(key string) (*Published, bool) {
	if b == nil {
		return nil, false
	}
	p, ok := b.byKey[key]
	return p, ok
}

func byKey(a, b *Published) int { return strings.Compare(a.Key, b.Key) }

func sameItems(a, b []*Published) bool {
	return slices.EqualFunc(a, b, func(x, y *Published) bool {
		return x.ResourceID == y.ResourceID && x.Version == y.Version && x.Key == y.Key
	})
}

func upsertSorted(items []*Published, p *Published) []*Published {
	i, found := slices.BinarySearchFunc(items, p.Key, func(e *Published, key string) int {
		return strings.Compare(e.Key, key)
	})
	if found {
		items[i] = p
		return items
	}
	return slices.Insert(items, i, p)
}

func deleteSorted(items []*Published, key string) []*Published {
	i, found := slices.BinarySearchFunc(items, key, func(e *Published, key string) int {
		return strings.Compare(e.Key, key)
	})
	if !found {
		return items
	}
	return slices.Delete(items, i, i+1)
}
