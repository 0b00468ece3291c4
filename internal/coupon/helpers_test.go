package coupon_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/kv"
	"github.com/perkhq/perk/internal/platform/kv/kvtest"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

var sets = []sqldb.Migrations{bus.Migrations, kv.Migrations, catalog.Migrations, coupon.Migrations}

const (
	tenantA = "mch_a"
	tenantB = "mch_b"
	actor   = "usr_ops"
)

var epoch = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// counters names where a test keeps the issuance counters: "sql" (the kv SQL store is given, so
// the module keeps them in its own table) or "redis" (a real Redis with a per-test prefix).
type counters string

const (
	sqlCounters   counters = "sql"
	redisCounters counters = "redis"
)

var allCounters = []counters{sqlCounters, redisCounters}

// runCounters runs fn on both engines with each kind of counters: four parallel subtests.
func runCounters(t *testing.T, fn func(t *testing.T, db *sqldb.DB, mode counters)) {
	t.Helper()
	for _, m := range allCounters {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) { fn(t, db, m) })
		})
	}
}

type testBundle struct {
	db      *sqldb.DB
	clock   *clock.Fake
	reg     *catalog.Registry
	catalog *catalog.Service
	snap    *catalog.Snapshot
	kv      kv.Store
	svc     *coupon.Service
	opts    coupon.Options
}

// setup builds a coupon service on db with a real config center (service and snapshot) and the
// given counters; tweak adjusts the options before the service is built.
func setup(t testing.TB, db *sqldb.DB, mode counters, tweak ...func(*coupon.Options)) *testBundle {
	t.Helper()
	b := &testBundle{db: db, clock: clock.NewFake(epoch)}
	b.reg = catalog.NewRegistry()
	require.NoError(t, coupon.RegisterKinds(b.reg))
	b.catalog = catalog.New(db, catalog.Options{Registry: b.reg, Clock: b.clock})
	var err error
	b.snap, err = catalog.NewSnapshot(db, catalog.SnapshotOptions{Registry: b.reg, Clock: b.clock,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	require.NoError(t, b.snap.Load(context.Background()))
	switch mode {
	case redisCounters:
		b.kv = kvtest.Store(t)
	default:
		b.kv, err = kv.NewSQL(db, kv.SQLOptions{Clock: b.clock})
		require.NoError(t, err)
	}
	b.opts = coupon.Options{Clock: b.clock, Catalog: b.catalog, Snapshot: b.snap, KV: b.kv, Events: outboxEvents,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, fn := range tweak {
		fn(&b.opts)
	}
	b.svc, err = coupon.New(db, b.opts)
	require.NoError(t, err)
	return b
}

// publish creates (or updates) and publishes a resource, then refreshes the snapshot; it returns
// the version.
func (b *testBundle) publish(t testing.TB, tenant, kind, key, spec string) int {
	t.Helper()
	v, err := b.publishErr(tenant, kind, key, spec)
	require.NoError(t, err)
	return v
}

func (b *testBundle) publishErr(tenant, kind, key, spec string) (int, error) {
	ctx := context.Background()
	r, err := b.catalog.Get(ctx, catalog.GetParams{TenantID: tenant, Kind: kind, Key: key})
	if problem.Is(err, problem.KindNotFound) {
		r, err = b.catalog.Create(ctx, catalog.CreateParams{TenantID: tenant, Kind: kind, Key: key,
			Spec: json.RawMessage(spec), Actor: actor})
	} else if err == nil {
		r, err = b.catalog.UpdateDraft(ctx, catalog.UpdateDraftParams{TenantID: tenant, ID: r.ID,
			Revision: r.DraftRevision, Spec: json.RawMessage(spec), Actor: actor})
	}
	if err != nil {
		return 0, err
	}
	v, err := b.catalog.Publish(ctx, catalog.PublishParams{TenantID: tenant, ID: r.ID, Actor: actor})
	if err != nil {
		return 0, err
	}
	return v.Version, b.snap.Load(ctx)
}

// template publishes a coupon template in tenantA.
func (b *testBundle) template(t testing.TB, key, spec string) int {
	t.Helper()
	return b.publish(t, tenantA, coupon.KindTemplate, key, spec)
}

// Template specs used by the tests: 30 off 100 (minor units 3000 / 10000), valid 30 days.
const (
	save30 = `{"type":"amount_off","amount":3000,"threshold":{"amount":10000},"validity":{"days":30},
		"title":{"en":"30 off 100"}}`
	tenOff = `{"type":"amount_off","amount":1000,"validity":{"days":7},"stacking":{"mode":"group","group":"shop"},
		"title":{"en":"10 off"}}`
)

// limited is save30 with a quantity and a per-user limit (0 = unlimited).
func limited(quantity, perUser int) string {
	return `{"type":"amount_off","amount":3000,"threshold":{"amount":10000},"validity":{"days":30},
		"quantity":` + itoa(quantity) + `,"per_user":` + itoa(perUser) + `,"title":{"en":"limited"}}`
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// issue issues one coupon of template to user with a fresh business key and returns its id.
func (b *testBundle) issue(t testing.TB, template, user string) string {
	t.Helper()
	out, err := b.svc.Issue(context.Background(), coupon.IssueParams{TenantID: tenantA, Template: template,
		UserIDs: []string{user}})
	require.NoError(t, err)
	require.Len(t, out.Results, 1)
	require.Nil(t, out.Results[0].Error, "%+v", out.Results[0].Error)
	return out.Results[0].CouponID
}

// get reads a coupon and fails the test on error.
func (b *testBundle) get(t testing.TB, id string) coupon.Coupon {
	t.Helper()
	c, err := b.svc.Get(context.Background(), tenantA, id)
	require.NoError(t, err)
	return c
}

// cart is a cart of one item of the given amount.
func cart(amount int64) qualify.Cart {
	return qualify.Cart{Items: []qualify.Item{{SKU: "sku-1", Category: "phones", UnitPrice: amount, Quantity: 1}}}
}

// count counts rows of a table matching a condition over tenant_id = $1.
func (b *testBundle) count(t testing.TB, table, cond string, args ...any) int {
	t.Helper()
	var n int
	q := `SELECT COUNT(*) FROM ` + table + ` WHERE tenant_id = $1`
	if cond != "" {
		q += ` AND ` + cond
	}
	require.NoError(t, b.db.Reader().QueryRow(context.Background(), q, append([]any{tenantA}, args...)...).Scan(&n))
	return n
}

// outboxEvents writes events to the outbox under "test.<type>", so tests can count them.
func outboxEvents(ctx context.Context, tx *sqldb.Tx, events ...bus.Event) error {
	msgs := make([]bus.Message, len(events))
	for i, e := range events {
		data, err := json.Marshal(e)
		if err != nil {
			return err
		}
		msgs[i] = bus.Message{Subject: "test." + e.Type, ID: e.ID, Data: data}
	}
	return bus.Enqueue(ctx, tx, msgs...)
}

// events returns the outbox events of a type, oldest first.
func (b *testBundle) events(t testing.TB, typ string) []bus.Event {
	t.Helper()
	rows, err := b.db.Reader().Query(context.Background(), `SELECT payload FROM bus_outbox WHERE subject = $1 ORDER BY id`,
		"test."+typ)
	require.NoError(t, err)
	defer rows.Close()
	var out []bus.Event
	for rows.Next() {
		var payload []byte
		require.NoError(t, rows.Scan(&payload))
		var e bus.Event
		require.NoError(t, json.Unmarshal(payload, &e))
		out = append(out, e)
	}
	require.NoError(t, rows.Err())
	return out
}

// requireProblem checks err is a problem of kind (and code, when not "") naming the fields.
func requireProblem(t testing.TB, err error, kind problem.Kind, code string, fields ...string) *problem.Error {
	t.Helper()
	require.Error(t, err)
	p, ok := problem.As(err)
	require.True(t, ok, "want a problem error, got %v", err)
	require.Equal(t, kind, p.Kind, "%v", err)
	if code != "" {
		require.Equal(t, code, p.Code, "%v", err)
	}
	paths := make([]string, len(p.Fields))
	for i, f := range p.Fields {
		paths[i] = f.Path
	}
	for _, f := range fields {
		require.Contains(t, paths, f, "%v", err)
	}
	return p
}
