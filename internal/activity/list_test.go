package activity_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/activity"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

// dataset writes a varied log for two tenants: several users and merchant-level events, types that
// share prefixes (grant.*, grantee.*), sources, and many records sharing one occurred_at (so the id
// breaks ties across page boundaries).
func dataset(t *testing.T, svc *activity.Service) []bus.Event {
	t.Helper()
	types := []string{"grant.succeeded", "grant.failed", "grant.step.done", "grantee.added", "ledger.entry_posted", "task.completed"}
	users := []string{"u1", "u2", "u3", ""}
	var events []bus.Event
	for i := range 240 {
		at := t0.Add(time.Duration(i/6) * time.Minute) // six records per instant
		e := bus.Event{
			ID:         fmt.Sprintf("evt_%03d_%d", (i*37)%240, i%3), // ids not in time order
			TenantID:   []string{"mch_a", "mch_b"}[i%5/4],
			UserID:     users[i%len(users)],
			Type:       types[(i/2)%len(types)],
			SourceKind: []string{"grant", "ledger_entry"}[i%2],
			SourceID:   fmt.Sprintf("src_%d", i%9),
			Time:       at,
		}
		events = append(events, e)
	}
	_, err := svc.Write(context.Background(), events...)
	require.NoError(t, err)
	return events
}

// expect filters and orders the events as the log should.
func expect(events []bus.Event, p activity.ListParams) []string {
	var out []bus.Event
	for _, e := range events {
		switch {
		case e.TenantID != p.TenantID,
			p.UserID != "" && e.UserID != p.UserID,
			strings.HasSuffix(p.Type, ".*") && !strings.HasPrefix(e.Type, strings.TrimSuffix(p.Type, "*")),
			p.Type != "" && !strings.HasSuffix(p.Type, ".*") && e.Type != p.Type,
			p.SourceKind != "" && e.SourceKind != p.SourceKind,
			p.SourceID != "" && e.SourceID != p.SourceID,
			!p.From.IsZero() && e.Time.Before(p.From),
			!p.To.IsZero() && !e.Time.Before(p.To):
			continue
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b bus.Event) int {
		return cmp.Or(b.Time.Compare(a.Time), strings.Compare(b.ID, a.ID))
	})
	ids := make([]string, len(out))
	for i, e := range out {
		ids[i] = e.ID
	}
	return ids
}

func TestSearchWalksEveryPage(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		tb := setup(t, db, activity.Options{}, false)
		events := dataset(t, tb.svc)
		for _, p := range []activity.ListParams{
			{TenantID: "mch_a"},
			{TenantID: "mch_b"},
			{TenantID: "mch_a", UserID: "u2"},
			{TenantID: "mch_a", Type: "grant.succeeded"},
			{TenantID: "mch_a", Type: "grant.*"},
			{TenantID: "mch_a", Type: "grant.step.*"},
			{TenantID: "mch_a", Type: "grantee.*"},
			{TenantID: "mch_a", Type: "nothing.*"},
			{TenantID: "mch_a", SourceKind: "ledger_entry"},
			{TenantID: "mch_a", SourceKind: "grant", SourceID: "src_3"},
			{TenantID: "mch_a", SourceID: "src_4"},
			{TenantID: "mch_a", From: t0.Add(10 * time.Minute)},
			{TenantID: "mch_a", To: t0.Add(10 * time.Minute)},
			{TenantID: "mch_a", From: t0.Add(5 * time.Minute), To: t0.Add(7 * time.Minute)},
			{TenantID: "mch_b", UserID: "u1", Type: "grant.*", From: t0.Add(time.Minute), To: t0.Add(30 * time.Minute)},
		} {
			want := expect(events, p)
			if p.Type != "nothing.*" {
				require.NotEmpty(t, want, "the dataset should exercise %+v", p)
			}
			for _, limit := range []int{1, 4, 7, 200} {
				p.Limit = limit
				require.Equal(t, want, idsOf(tb.all(t, p)), "%+v", p)
			}
		}
	})
}

func TestSearchIsStableUnderInterleavedInserts(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		tb := setup(t, db, activity.Options{}, false)
		ctx := context.Background()
		var before []bus.Event
		for i := range 300 {
			e := event("mch_a", fmt.Sprint("u", i%3), "grant.succeeded", t0.Add(time.Duration(i/3)*time.Second))
			e.ID = fmt.Sprintf("evt_old_%03d", i)
			before = append(before, e)
		}
		_, err := tb.svc.Write(ctx, before...)
		require.NoError(t, err)

		// Between every two pages of every walk, insert records newer than, older than and among the
		// first ones: the walks must neither repeat nor skip what existed before they began.
		rng := rand.New(rand.NewPCG(1, 2))
		inserted := 0
		insert := func() {
			for range 3 {
				at := t0.Add(time.Duration(rng.IntN(200)-50) * time.Second)
				e := event("mch_a", fmt.Sprint("u", inserted%3), "grant.succeeded", at)
				e.ID = fmt.Sprintf("evt_new_%05d", inserted)
				_, err := tb.svc.Write(ctx, e)
				require.NoError(t, err)
				inserted++
			}
		}
		for _, p := range []activity.ListParams{
			{TenantID: "mch_a", Limit: 7},
			{TenantID: "mch_a", UserID: "u1", Limit: 5},
			{TenantID: "mch_a", Type: "grant.*", Limit: 11},
		} {
			var got []activity.Record
			for pages := 0; ; pages++ {
				require.Less(t, pages, 10000, "the walk does not end")
				page, err := tb.svc.List(ctx, p)
				require.NoError(t, err)
				got = append(got, page.Items...)
				if page.Next == "" {
					break
				}
				p.Cursor = page.Next
				insert()
			}
			seen := map[string]bool{}
			for i, r := range got {
				require.False(t, seen[r.ID], "%s appears twice", r.ID)
				seen[r.ID] = true
				if i > 0 {
					prev := got[i-1]
					require.True(t, r.OccurredAt.Before(prev.OccurredAt) ||
						(r.OccurredAt.Equal(prev.OccurredAt) && r.ID < prev.ID), "order broken at %d", i)
				}
			}
			p.Cursor = ""
			for _, id := range expect(before, p) {
				require.True(t, seen[id], "%s existed before the walk and was skipped", id)
			}
		}
		require.Positive(t, inserted, "records were inserted during the walks")
	})
}

func TestSearchRejectsBadInput(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		tb := setup(t, db, activity.Options{}, false)
		ctx := context.Background()
		for _, c := range []struct {
			p     activity.ListParams
			field string
		}{
			{activity.ListParams{Type: "Grant"}, "type"},
			{activity.ListParams{Type: "grant"}, "type"},
			{activity.ListParams{Type: "grant*"}, "type"},
			{activity.ListParams{Type: "*"}, "type"},
			{activity.ListParams{Type: "grant.*.done"}, "type"},
			{activity.ListParams{Cursor: "zzz"}, "cursor"},
			{activity.ListParams{Cursor: sqldb.EncodeCursor("x", "evt_1")}, "cursor"},
			{activity.ListParams{Cursor: sqldb.EncodeCursor("12")}, "cursor"},
			{activity.ListParams{Limit: -1}, "limit"},
			{activity.ListParams{Limit: sqldb.MaxPageLimit + 1}, "limit"},
			{activity.ListParams{From: t0, To: t0}, "to"},
			{activity.ListParams{UserID: strings.Repeat("u", 200)}, "user_id"},
		} {
			c.p.TenantID = "mch_a"
			_, err := tb.svc.List(ctx, c.p)
			e, ok := problem.As(err)
			require.True(t, ok, "%+v: %v", c.p, err)
			require.Equal(t, problem.KindInvalid, e.Kind)
			require.Len(t, e.Fields, 1, "%+v", c.p)
			require.Equal(t, c.field, e.Fields[0].Path)
		}
		_, err := tb.svc.List(ctx, activity.ListParams{})
		require.Error(t, err, "a search needs a tenant")

		_, err = tb.svc.Write(ctx, bus.Event{ID: "evt_1", TenantID: "mch_a", Type: "not valid", Time: t0})
		require.True(t, problem.Is(err, problem.KindInvalid), "%v", err)
		_, err = tb.svc.Write(ctx, bus.Event{ID: "evt_1", TenantID: "mch_a", Type: "a.b", Time: t0, Data: []byte(`{`)})
		require.True(t, problem.Is(err, problem.KindInvalid), "%v", err)
		require.Empty(t, tb.all(t, activity.ListParams{TenantID: "mch_a"}), "nothing written")
	})
}
