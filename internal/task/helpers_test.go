package task_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/reward"
	"github.com/perkhq/perk/internal/task"
)

var sets = []sqldb.Migrations{bus.Migrations, ledger.Migrations, catalog.Migrations, reward.Migrations, task.Migrations}

const (
	shop  = "mch_shop" // in Asia/Shanghai
	other = "mch_other"
	actor = "usr_ops"
	alice = "u-alice"
	bob   = "u-bob"
)

// start is the fake clock's start: Monday 2026-11-16 10:00 in Shanghai (02:00 UTC), ISO week 47.
var start = time.Date(2026, 11, 16, 2, 0, 0, 0, time.UTC)

var shanghai = mustZone("Asia/Shanghai")

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

type testBundle struct {
	db      *sqldb.DB
	clock   *clock.Fake
	ledger  *ledger.Service
	catalog *catalog.Service
	snap    *catalog.Snapshot
	rewards *reward.Service
	svc     *task.Service
	flaky   *flaky
	opts    task.Options

	mu    sync.Mutex
	users map[string]map[string]any
	// drained is the last outbox row whose grant event drain handed to the task center.
	drained string
}

// setup builds the task center on db with a real ledger, config center (and snapshot) and reward
// engine; shop's time zone is Asia/Shanghai. tweak adjusts the task options.
func setup(t testing.TB, db *sqldb.DB, tweak ...func(*task.Options)) *testBundle {
	t.Helper()
	b := &testBundle{db: db, clock: clock.NewFake(start), flaky: &flaky{}, users: map[string]map[string]any{}}
	var err error
	b.ledger, err = ledger.New(db, ledger.Options{Clock: b.clock})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.ledger.Close() })
	reg := catalog.NewRegistry()
	b.catalog = catalog.New(db, catalog.Options{Registry: reg, Clock: b.clock})
	b.snap, err = catalog.NewSnapshot(db, catalog.SnapshotOptions{Registry: reg, Clock: b.clock})
	require.NoError(t, err)
	components := reward.NewRegistry()
	require.NoError(t, components.Register(b.flaky))
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.rewards, err = reward.New(db, reward.Options{Clock: b.clock, Ledger: b.ledger, Events: outboxEvents,
		Flows: reward.CatalogFlows{Catalog: b.catalog, Snapshot: b.snap}, Components: components, Node: "test",
		Lease: time.Minute, RetryBase: 10 * time.Second, MaxBackoff: time.Minute, TimeZone: zones, Logger: logger})
	require.NoError(t, err)
	t.Cleanup(b.rewards.Close)
	require.NoError(t, reward.RegisterKinds(reg, b.rewards.Components()))
	require.NoError(t, task.RegisterKinds(reg, b.rewards.Components()))
	require.NoError(t, b.snap.Load(context.Background()))
	b.opts = task.Options{Snapshot: b.snap, Catalog: b.catalog, Rewards: b.rewards, Events: outboxEvents,
		TimeZone: zones, Users: b.attrs, Clock: b.clock, Logger: logger}
	for _, fn := range tweak {
		fn(&b.opts)
	}
	b.svc, err = task.New(db, b.opts)
	require.NoError(t, err)
	return b
}

func zones(tenant string) *time.Location {
	if tenant == shop {
		return shanghai
	}
	return nil
}

// attrs is the Users option: the attributes set with setUser.
func (b *testBundle) attrs(_ context.Context, _, user string) (map[string]any, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.users[user], nil
}

func (b *testBundle) setUser(user string, attrs map[string]any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.users[user] = attrs
}

// publish creates (or edits) and publishes a task or flow of shop, loads it into the snapshot and
// returns its version.
func (b *testBundle) publish(t testing.TB, kind, key, spec string) int {
	t.Helper()
	v, err := b.tryPublish(shop, kind, key, spec)
	require.NoError(t, err)
	return v
}

func (b *testBundle) tryPublish(tenant, kind, key, spec string) (int, error) {
	ctx := context.Background()
	r, err := b.catalog.Get(ctx, catalog.GetParams{TenantID: tenant, Kind: kind, Key: key})
	switch {
	case problem.Is(err, problem.KindNotFound):
		r, err = b.catalog.Create(ctx, catalog.CreateParams{TenantID: tenant, Kind: kind, Key: key,
			Spec: json.RawMessage(spec), Actor: actor})
	case err == nil:
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
	return v.Version, b.snap.Apply(ctx)
}

var eventSeq atomic.Int64

// event is a behaviour event of shop at the given time, with a fresh id.
func event(user, typ, data string, at time.Time) bus.Behaviour {
	e := bus.Behaviour{TenantID: shop, ID: fmt.Sprintf("e-%d", eventSeq.Add(1)), Source: "test", Type: typ,
		UserID: user, Time: at, ReceivedAt: at}
	if data != "" {
		e.Data = json.RawMessage(data)
	}
	return e
}

// apply runs ApplyBatch in its own transaction (the grants it creates run after the commit).
func (b *testBundle) apply(t *testing.T, events ...bus.Behaviour) {
	t.Helper()
	require.NoError(t, b.db.Tx(context.Background(), func(tx *sqldb.Tx) error {
		return b.svc.ApplyBatch(context.Background(), tx, events)
	}))
}

// drain hands the grant events written to the outbox since the last drain to the task center, as
// the task-grants consumer would, each in its own transaction.
func (b *testBundle) drain(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	rows, err := b.db.Reader().Query(ctx, `SELECT id, payload FROM bus_outbox WHERE subject LIKE 'test.grant.%'
		AND id > $1 ORDER BY id`, b.drained)
	require.NoError(t, err)
	var events []bus.Event
	for rows.Next() {
		var (
			id      string
			payload []byte
			e       bus.Event
		)
		require.NoError(t, rows.Scan(&id, &payload))
		require.NoError(t, json.Unmarshal(payload, &e))
		events = append(events, e)
		b.drained = id
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	for _, e := range events {
		require.NoError(t, b.db.Tx(ctx, func(tx *sqldb.Tx) error { return b.svc.HandleGrantEvent(ctx, tx, e) }))
	}
}

// outboxEvents writes events to the outbox under "test.<type>", so tests can read them back.
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

// events returns the outbox events of a type about a user task ("" for any).
func (b *testBundle) events(t *testing.T, typ, userTaskID string) []bus.Event {
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
		if userTaskID == "" || e.SourceID == userTaskID {
			out = append(out, e)
		}
	}
	require.NoError(t, rows.Err())
	return out
}

// balance is the user's balance of an asset in shop.
func (b *testBundle) balance(t *testing.T, user, asset string) int64 {
	t.Helper()
	accounts, err := b.ledger.Accounts(context.Background(), shop, user)
	require.NoError(t, err)
	for _, a := range accounts {
		if a.Asset == asset {
			return a.Balance
		}
	}
	return 0
}

// rows returns all of a user's tasks in shop, newest first.
func (b *testBundle) rows(t *testing.T, user string) []task.UserTask {
	t.Helper()
	page, err := b.svc.UserTasks(context.Background(), shop, user, "", 200)
	require.NoError(t, err)
	return page.Items
}

// row returns the user's task of a task in a period key; it fails when there is none.
func (b *testBundle) row(t *testing.T, user, key, periodKey string) task.UserTask {
	t.Helper()
	for _, ut := range b.rows(t, user) {
		if ut.Task == key && ut.PeriodKey == periodKey {
			full, err := b.svc.UserTaskByID(context.Background(), shop, ut.ID)
			require.NoError(t, err)
			return full
		}
	}
	require.Failf(t, "no user task", "%s has no %s in %s", user, key, periodKey)
	return task.UserTask{}
}

func (b *testBundle) verifyLedger(t *testing.T) {
	t.Helper()
	r, err := b.ledger.Verify(context.Background())
	require.NoError(t, err)
	require.True(t, r.OK(), "ledger verify: %v", r.Mismatches)
}

// requireProblem checks an error's kind, and its code or one of its field paths when given.
func requireProblem(t *testing.T, err error, kind problem.Kind, codeOrField ...string) *problem.Error {
	t.Helper()
	require.Error(t, err)
	p, ok := problem.As(err)
	require.True(t, ok, "want a problem error, got %v", err)
	require.Equal(t, kind, p.Kind, "%v", err)
	for _, want := range codeOrField {
		if p.Code == want {
			continue
		}
		paths := make([]string, len(p.Fields))
		for i, f := range p.Fields {
			paths[i] = f.Path
		}
		require.Contains(t, paths, want, "%v", err)
	}
	return p
}

// flaky is a database component that fails while failing is set.
type flaky struct {
	mu      sync.Mutex
	failing bool
}

func (f *flaky) Name() string                   { return "flaky" }
func (f *flaky) Validate(json.RawMessage) error { return nil }

func (f *flaky) RunTx(context.Context, reward.StepContext) (json.RawMessage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing {
		return nil, errors.New("flaky is down")
	}
	return json.RawMessage(`{"ok":true}`), nil
}

func (f *flaky) set(failing bool) {
	f.mu.Lock()
	f.failing = failing
	f.mu.Unlock()
}

// spec builds a task spec from a JSON object literal with single quotes for readability.
func spec(s string) string { return strings.ReplaceAll(s, "'", `"`) }

// The specs most tests use.
var (
	checkinSpec = spec(`{'kind':'daily','trigger':{'event_types':['checkin']},'metric':{'type':'count'},
		'stages':[{'target':1,'rewards':[{'type':'points','amount':10}]}],'title':{'en':'Check in'}}`)
	ordersSpec = spec(`{'kind':'weekly','trigger':{'event_types':['order.paid'],'filter':'event.data.amount >= 5000'},
		'metric':{'type':'count'},'stages':[{'target':3,'rewards':[{'type':'growth','amount':100}]}],
		'title':{'en':'Three orders a week'}}`)
)
