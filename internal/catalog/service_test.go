package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

func TestLifecycle(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		b := setup(t, db)

		r := b.create(t, tenantA, "flow", "welcome", `{"steps": [{"amount": 1}]}`)
		require.Equal(t, catalog.StateDraft, r.State)
		require.Equal(t, 1, r.DraftRevision)
		require.Equal(t, 0, r.PublishedVersion)
		require.JSONEq(t, `{"steps":[{"amount":1}]}`, string(r.Draft))
		require.Equal(t, r, b.get(t, tenantA, r.ID))

		r = b.edit(t, r, `{"steps": [{"amount": 10}]}`)
		require.Equal(t, 2, r.DraftRevision)

		v1 := b.publish(t, r)
		require.Equal(t, 1, v1.Version)
		require.JSONEq(t, `{"steps":[{"amount":10}]}`, string(v1.Spec))
		require.Equal(t, alice, v1.PublishedBy)
		r = b.get(t, tenantA, r.ID)
		require.Equal(t, catalog.StatePublished, r.State)
		require.Equal(t, 1, r.PublishedVersion)
		require.False(t, r.Pending())

		// Editing a published resource keeps v1 live.
		r = b.edit(t, r, `{"steps": [{"amount": 20}]}`)
		require.Equal(t, catalog.StatePublished, r.State)
		require.True(t, r.Pending())

		v2 := b.publish(t, r)
		require.Equal(t, 2, v2.Version)
		_, err := b.svc.Publish(ctx, catalog.PublishParams{TenantID: tenantA, ID: r.ID, Actor: alice})
		require.Equal(t, "config-nothing-to-publish", requireProblem(t, err, problem.KindConflict).Code)

		b.clock.Advance(time.Minute)
		v3, err := b.svc.Rollback(ctx, catalog.RollbackParams{TenantID: tenantA, ID: r.ID, To: 1, Actor: bob})
		require.NoError(t, err)
		require.Equal(t, 3, v3.Version)
		require.Equal(t, 1, v3.RolledBackFrom)
		require.Equal(t, bob, v3.PublishedBy)
		require.JSONEq(t, string(v1.Spec), string(v3.Spec))
		r = b.get(t, tenantA, r.ID)
		require.Equal(t, 3, r.PublishedVersion)
		require.JSONEq(t, string(v1.Spec), string(r.Draft), "rollback replaces the draft")
		require.False(t, r.Pending())
		_, err = b.svc.Rollback(ctx, catalog.RollbackParams{TenantID: tenantA, ID: r.ID, To: 3, Actor: bob})
		require.Equal(t, []string{"to"}, fieldPaths(requireProblem(t, err, problem.KindInvalid)))
		_, err = b.svc.Rollback(ctx, catalog.RollbackParams{TenantID: tenantA, ID: r.ID, To: 4, Actor: bob})
		require.Equal(t, []string{"to"}, fieldPaths(requireProblem(t, err, problem.KindInvalid)))

		r, err = b.svc.Archive(ctx, catalog.ArchiveParams{TenantID: tenantA, ID: r.ID, Actor: bob})
		require.NoError(t, err)
		require.Equal(t, catalog.StateArchived, r.State)
		require.Equal(t, r, b.get(t, tenantA, r.ID))
		_, err = b.svc.Archive(ctx, catalog.ArchiveParams{TenantID: tenantA, ID: r.ID, Actor: bob})
		require.Equal(t, "config-already-archived", requireProblem(t, err, problem.KindConflict).Code)

		// Re-publishing an archived resource serves its draft again as a new version.
		v4 := b.publish(t, r)
		require.Equal(t, 4, v4.Version)
		require.JSONEq(t, string(v1.Spec), string(v4.Spec))
		require.Equal(t, catalog.StatePublished, b.get(t, tenantA, r.ID).State)

		page, err := b.svc.Versions(ctx, catalog.VersionsParams{TenantID: tenantA, ID: r.ID})
		require.NoError(t, err)
		require.Equal(t, []catalog.Version{v4, v3, v2, v1}, page.Items)
		require.Empty(t, page.Next)
		got, err := b.svc.Version(ctx, catalog.VersionParams{TenantID: tenantA, ID: r.ID, Version: 2})
		require.NoError(t, err)
		require.Equal(t, v2, got)
		_, err = b.svc.Version(ctx, catalog.VersionParams{TenantID: tenantA, ID: r.ID, Version: 9})
		requireProblem(t, err, problem.KindNotFound)

		// One change-log row per publish/rollback/archive, seq increasing, each notified after commit.
		want := []struct {
			action  catalog.Action
			version int
		}{{catalog.ActionPublish, 1}, {catalog.ActionPublish, 2}, {catalog.ActionRollback, 3},
			{catalog.ActionArchive, 3}, {catalog.ActionPublish, 4}}
		notes := b.notes.all()
		require.Len(t, notes, len(want))
		for i, w := range want {
			require.Equal(t, w.action, notes[i].Action, "change %d", i)
			require.Equal(t, w.version, notes[i].Version, "change %d", i)
			require.Equal(t, r.ID, notes[i].ResourceID)
			require.Equal(t, "welcome", notes[i].Key)
			if i > 0 {
				require.Greater(t, notes[i].Seq, notes[i-1].Seq)
			}
		}
		require.Equal(t, len(want), b.count(t, "catalog_changes"))
		var maxSeq int64
		require.NoError(t, db.Reader().QueryRow(ctx, `SELECT MAX(seq) FROM catalog_changes`).Scan(&maxSeq))
		require.Equal(t, notes[len(notes)-1].Seq, maxSeq)

		// The audit trail tells the whole story, newest first.
		audit, err := b.svc.Audit(ctx, catalog.AuditParams{TenantID: tenantA, ResourceID: r.ID})
		require.NoError(t, err)
		var actions []catalog.Action
		for _, e := range audit.Items {
			actions = append(actions, e.Action)
		}
		require.Equal(t, []catalog.Action{catalog.ActionPublish, catalog.ActionArchive, catalog.ActionRollback,
			catalog.ActionPublish, catalog.ActionUpdate, catalog.ActionPublish, catalog.ActionUpdate,
			catalog.ActionCreate}, actions)
	})
}

func TestRevisionConflict(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		b := setup(t, db)
		r := b.create(t, tenantA, "note", "n1", `{"v": 1}`)
		r2 := b.edit(t, r, `{"v": 2}`)

		_, err := b.svc.UpdateDraft(ctx, catalog.UpdateDraftParams{TenantID: tenantA, ID: r.ID, Revision: 1,
			Spec: json.RawMessage(`{"v": 3}`), Actor: bob})
		pe := requireProblem(t, err, problem.KindConflict)
		require.Equal(t, "config-revision-mismatch", pe.Code)
		require.Equal(t, 2, pe.Extensions["current_revision"])
		require.Equal(t, r2, b.get(t, tenantA, r.ID), "a refused update changes nothing")

		_, err = b.svc.Publish(ctx, catalog.PublishParams{TenantID: tenantA, ID: r.ID, Revision: 1, Actor: bob})
		require.Equal(t, "config-revision-mismatch", requireProblem(t, err, problem.KindConflict).Code)
		require.Equal(t, 0, b.count(t, "catalog_versions"))

		// Racing editors of one revision: exactly one wins, the other gets a Conflict.
		var (
			wg   sync.WaitGroup
			errs = make([]error, 4)
		)
		for i := range errs {
			wg.Go(func() {
				_, errs[i] = b.svc.UpdateDraft(ctx, catalog.UpdateDraftParams{TenantID: tenantA, ID: r.ID,
					Revision: 2, Spec: json.RawMessage(fmt.Sprintf(`{"v": %d}`, 10+i)), Actor: bob})
			})
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			if err == nil {
				wins++
				continue
			}
			requireProblem(t, err, problem.KindConflict)
		}
		require.Equal(t, 1, wins)
		require.Equal(t, 3, b.get(t, tenantA, r.ID).DraftRevision)
	})
}

func TestValidation(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		b := setup(t, db)

		_, err := b.svc.Create(ctx, catalog.CreateParams{TenantID: tenantA, Kind: "flow", Key: "f",
			Spec: json.RawMessage(`{"steps": [{"amount": 5}, {"amount": -1}, {}]}`), Actor: alice})
		pe := requireProblem(t, err, problem.KindInvalid)
		require.Equal(t, []string{"spec.steps[1].amount", "spec.steps[2].amount"}, fieldPaths(pe))

		_, err = b.svc.Create(ctx, catalog.CreateParams{TenantID: tenantA, Kind: "nope", Key: "Bad Key",
			Spec: json.RawMessage(`[1]`), Actor: ""})
		pe = requireProblem(t, err, problem.KindInvalid)
		require.ElementsMatch(t, []string{"kind", "key", "spec", "actor"}, fieldPaths(pe))

		for _, spec := range []string{``, `null`, `"x"`, `{"a":`, `{} {}`} {
			_, err = b.svc.Create(ctx, catalog.CreateParams{TenantID: tenantA, Kind: "note", Key: "n",
				Spec: json.RawMessage(spec), Actor: alice})
			require.Equal(t, []string{"spec"}, fieldPaths(requireProblem(t, err, problem.KindInvalid)), "spec %q", spec)
		}

		// A draft may be incomplete; publishing demands the whole spec.
		r := b.create(t, tenantA, "flow", "later", `{"name": "x"}`)
		_, err = b.svc.Publish(ctx, catalog.PublishParams{TenantID: tenantA, ID: r.ID, Actor: alice})
		require.Equal(t, []string{"spec.steps"}, fieldPaths(requireProblem(t, err, problem.KindInvalid)))
		_, err = b.svc.UpdateDraft(ctx, catalog.UpdateDraftParams{TenantID: tenantA, ID: r.ID, Revision: 1,
			Spec: json.RawMessage(`{"steps": [{"amount": 0}]}`), Actor: alice})
		require.Equal(t, []string{"spec.steps[0].amount"}, fieldPaths(requireProblem(t, err, problem.KindInvalid)))

		// Nothing was written by any refused call.
		require.Equal(t, r, b.get(t, tenantA, r.ID))
		require.Equal(t, 1, b.count(t, "catalog_resources"))
		require.Equal(t, 1, b.count(t, "catalog_audit"))
		require.Equal(t, 0, b.count(t, "catalog_versions"))
		require.Equal(t, 0, b.count(t, "catalog_changes"))
		require.Empty(t, b.notes.all())

		b.create(t, tenantA, "note", "dup", `{}`)
		_, err = b.svc.Create(ctx, catalog.CreateParams{TenantID: tenantA, Kind: "note", Key: "dup",
			Spec: json.RawMessage(`{}`), Actor: alice})
		require.Equal(t, "config-duplicate-key", requireProblem(t, err, problem.KindConflict).Code)
		b.create(t, tenantA, "flow", "dup", `{}`) // keys are unique per kind
	})
}

func TestDanglingReference(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		b := setup(t, db)
		task := b.create(t, tenantA, "task", "signup", `{"title": "Sign up", "flow": "welcome"}`)

		_, err := b.svc.Publish(ctx, catalog.PublishParams{TenantID: tenantA, ID: task.ID, Actor: alice})
		pe := requireProblem(t, err, problem.KindInvalid)
		require.Equal(t, []string{"spec.flow"}, fieldPaths(pe))
		require.Contains(t, pe.Fields[0].Message, `"welcome" is not published`)

		// A draft flow does not count; a published one does.
		flow := b.create(t, tenantA, "flow", "welcome", `{"steps": [{"amount": 1}]}`)
		_, err = b.svc.Publish(ctx, catalog.PublishParams{TenantID: tenantA, ID: task.ID, Actor: alice})
		requireProblem(t, err, problem.KindInvalid)
		b.publish(t, flow)
		b.publish(t, task)

		// Another tenant cannot reference tenant A's flow, but can reference the platform's.
		other := b.create(t, tenantB, "task", "signup", `{"title": "Sign up", "flow": "welcome"}`)
		_, err = b.svc.Publish(ctx, catalog.PublishParams{TenantID: tenantB, ID: other.ID, Actor: alice})
		requireProblem(t, err, problem.KindInvalid)
		b.publish(t, b.create(t, catalog.Platform, "flow", "shared", `{"steps": [{"amount": 2}]}`))
		b.publish(t, b.edit(t, other, `{"title": "Sign up", "flow": "shared"}`))

		// A rollback re-validates the old spec against today's references.
		b.publish(t, b.create(t, tenantA, "flow", "welcome-2", `{"steps": [{"amount": 3}]}`))
		b.publish(t, b.edit(t, b.get(t, tenantA, task.ID), `{"title": "Sign up", "flow": "welcome-2"}`))
		_, err = b.svc.Archive(ctx, catalog.ArchiveParams{TenantID: tenantA, ID: flow.ID, Actor: alice})
		require.NoError(t, err)
		before := b.get(t, tenantA, task.ID)
		_, err = b.svc.Rollback(ctx, catalog.RollbackParams{TenantID: tenantA, ID: task.ID, To: 1, Actor: alice})
		pe = requireProblem(t, err, problem.KindInvalid)
		require.Equal(t, "config-rollback-invalid", pe.Code)
		require.Contains(t, pe.Detail, "version 1 no longer validates")
		require.Equal(t, []string{"spec.flow"}, fieldPaths(pe))
		require.Equal(t, before, b.get(t, tenantA, task.ID), "a refused rollback changes nothing")
	})
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		b := setup(t, db)
		r := b.create(t, tenantA, "flow", "welcome", `{"steps": [{"amount": 1}]}`)
		b.publish(t, r)
		r = b.get(t, tenantA, r.ID)

		_, err := b.svc.Get(ctx, catalog.GetParams{TenantID: tenantB, ID: r.ID})
		requireProblem(t, err, problem.KindNotFound)
		_, err = b.svc.Get(ctx, catalog.GetParams{TenantID: tenantB, Kind: "flow", Key: "welcome"})
		requireProblem(t, err, problem.KindNotFound)
		_, err = b.svc.UpdateDraft(ctx, catalog.UpdateDraftParams{TenantID: tenantB, ID: r.ID,
			Revision: r.DraftRevision, Spec: json.RawMessage(`{}`), Actor: bob})
		requireProblem(t, err, problem.KindNotFound)
		_, err = b.svc.Publish(ctx, catalog.PublishParams{TenantID: tenantB, ID: r.ID, Actor: bob})
		requireProblem(t, err, problem.KindNotFound)
		_, err = b.svc.Rollback(ctx, catalog.RollbackParams{TenantID: tenantB, ID: r.ID, To: 1, Actor: bob})
		requireProblem(t, err, problem.KindNotFound)
		_, err = b.svc.Archive(ctx, catalog.ArchiveParams{TenantID: tenantB, ID: r.ID, Actor: bob})
		requireProblem(t, err, problem.KindNotFound)
		_, err = b.svc.Versions(ctx, catalog.VersionsParams{TenantID: tenantB, ID: r.ID})
		requireProblem(t, err, problem.KindNotFound)
		_, err = b.svc.Version(ctx, catalog.VersionParams{TenantID: tenantB, ID: r.ID, Version: 1})
		requireProblem(t, err, problem.KindNotFound)

		list, err := b.svc.List(ctx, catalog.ListParams{TenantID: tenantB})
		require.NoError(t, err)
		require.Empty(t, list.Items)
		audit, err := b.svc.Audit(ctx, catalog.AuditParams{TenantID: tenantB, ResourceID: r.ID})
		require.NoError(t, err)
		require.Empty(t, audit.Items)

		require.Equal(t, r, b.get(t, tenantA, r.ID), "tenant B changed nothing")
		b.create(t, tenantB, "flow", "welcome", `{}`) // the same key is free in another tenant
	})
}

func TestAuditDiff(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		b := setup(t, db)
		start := b.clock.Now()
		r := b.create(t, tenantA, "note", "n", `{"a": 1, "b": {"c": [1, 2], "x/y": "s"}, "d": "gone"}`)
		b.clock.Advance(time.Hour)
		r, err := b.svc.UpdateDraft(ctx, catalog.UpdateDraftParams{TenantID: tenantA, ID: r.ID, Revision: 1,
			Spec: json.RawMessage(`{"a": 2, "b": {"c": [1, 3, 4], "x/y": "s"}, "e": {"f": true}}`), Actor: bob})
		require.NoError(t, err)
		b.clock.Advance(time.Hour)
		b.publish(t, r)
		b.clock.Advance(time.Hour)
		_, err = b.svc.Archive(ctx, catalog.ArchiveParams{TenantID: tenantA, ID: r.ID, Actor: bob})
		require.NoError(t, err)

		page, err := b.svc.Audit(ctx, catalog.AuditParams{TenantID: tenantA, ResourceID: r.ID})
		require.NoError(t, err)
		require.Len(t, page.Items, 4)
		archive, publish, update, create := page.Items[0], page.Items[1], page.Items[2], page.Items[3]

		require.Equal(t, catalog.ActionCreate, create.Action)
		require.Equal(t, start, create.At)
		require.Equal(t, alice, create.Actor)
		require.Equal(t, []catalog.DiffEntry{
			{Op: catalog.DiffAdd, Path: "/a", New: json.RawMessage(`1`)},
			{Op: catalog.DiffAdd, Path: "/b", New: json.RawMessage(`{"c":[1,2],"x/y":"s"}`)},
			{Op: catalog.DiffAdd, Path: "/d", New: json.RawMessage(`"gone"`)},
		}, create.Diff)

		require.Equal(t, catalog.ActionUpdate, update.Action)
		require.Equal(t, bob, update.Actor)
		require.Equal(t, 2, update.Revision)
		require.Equal(t, []catalog.DiffEntry{
			{Op: catalog.DiffChange, Path: "/a", Old: json.RawMessage(`1`), New: json.RawMessage(`2`)},
			{Op: catalog.DiffChange, Path: "/b/c/1", Old: json.RawMessage(`2`), New: json.RawMessage(`3`)},
			{Op: catalog.DiffAdd, Path: "/b/c/2", New: json.RawMessage(`4`)},
			{Op: catalog.DiffRemove, Path: "/d", Old: json.RawMessage(`"gone"`)},
			{Op: catalog.DiffAdd, Path: "/e", New: json.RawMessage(`{"f":true}`)},
		}, update.Diff)

		// A first publish diffs against nothing; archive has no diff.
		require.Equal(t, catalog.ActionPublish, publish.Action)
		require.Equal(t, 1, publish.Version)
		require.Len(t, publish.Diff, 3)
		require.Equal(t, catalog.ActionArchive, archive.Action)
		require.Empty(t, archive.Diff)

		// Filters: actor, kind, time range.
		byBob, err := b.svc.Audit(ctx, catalog.AuditParams{TenantID: tenantA, Actor: bob})
		require.NoError(t, err)
		require.Equal(t, []catalog.AuditEntry{archive, update}, byBob.Items)
		window, err := b.svc.Audit(ctx, catalog.AuditParams{TenantID: tenantA,
			From: start.Add(30 * time.Minute), To: start.Add(150 * time.Minute)})
		require.NoError(t, err)
		require.Equal(t, []catalog.AuditEntry{publish, update}, window.Items)
		none, err := b.svc.Audit(ctx, catalog.AuditParams{TenantID: tenantA, Kind: "flow"})
		require.NoError(t, err)
		require.Empty(t, none.Items)
		_, err = b.svc.Audit(ctx, catalog.AuditParams{TenantID: tenantA, From: start, To: start})
		require.Equal(t, []string{"to"}, fieldPaths(requireProblem(t, err, problem.KindInvalid)))
	})
}

func TestVersionsImmutable(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		b := setup(t, db)
		r := b.create(t, tenantA, "flow", "f", `{"steps": [{"amount": 1}]}`)
		b.publish(t, r)
		b.publish(t, b.edit(t, b.get(t, tenantA, r.ID), `{"steps": [{"amount": 2}]}`))
		before := versionRows(t, db)
		require.Len(t, before, 2)

		_, err := b.svc.Rollback(ctx, catalog.RollbackParams{TenantID: tenantA, ID: r.ID, To: 1, Actor: bob})
		require.NoError(t, err)
		_, err = b.svc.Archive(ctx, catalog.ArchiveParams{TenantID: tenantA, ID: r.ID, Actor: bob})
		require.NoError(t, err)
		after := versionRows(t, db)
		require.Len(t, after, 3)
		require.Equal(t, before, after[:2], "existing versions are untouched")
		require.Contains(t, after[2], `|3|{"steps":[{"amount":1}]}|`)

		// The database itself refuses to change a version.
		err = db.Tx(ctx, func(tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE catalog_versions SET spec = '{}' WHERE resource_id = $1`, r.ID)
			return err
		})
		require.ErrorContains(t, err, "immutable")
		require.Equal(t, after, versionRows(t, db))
	})
}

// versionRows renders every catalog_versions row, in order.
func versionRows(t *testing.T, db *sqldb.DB) []string {
	t.Helper()
	rows, err := db.Reader().Query(context.Background(), `SELECT resource_id, version, tenant_id, spec,
		published_at, published_by, rolled_back_from FROM catalog_versions ORDER BY resource_id, version`)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var (
			id, tenant, spec, by string
			version, at, from    int64
		)
		require.NoError(t, rows.Scan(&id, &version, &tenant, &spec, &at, &by, &from))
		out = append(out, fmt.Sprintf("%s|%d|%s|%s|%d|%s|%d", id, version, spec, tenant, at, by, from))
	}
	require.NoError(t, rows.Err())
	return out
}

func TestPagination(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		b := setup(t, db)
		var notes []string
		for i := range 23 {
			kind := "note"
			if i%3 == 0 {
				kind = "tag"
			}
			r := b.create(t, tenantA, kind, fmt.Sprintf("k%02d", i), `{}`)
			if kind == "note" {
				notes = append(notes, r.ID)
			}
		}
		b.create(t, tenantB, "note", "other", `{}`)

		walk := func(p catalog.ListParams) []string {
			var ids []string
			for pages := 0; ; pages++ {
				require.Less(t, pages, 30, "cursor does not advance")
				page, err := b.svc.List(ctx, p)
				require.NoError(t, err)
				require.LessOrEqual(t, len(page.Items), p.Limit)
				for _, r := range page.Items {
					ids = append(ids, r.ID)
				}
				if page.Next == "" {
					return ids
				}
				p.Cursor = page.Next
			}
		}
		all := walk(catalog.ListParams{TenantID: tenantA, Limit: 5})
		require.Len(t, all, 23)
		require.IsIncreasing(t, all, "sorted, so no duplicates")
		slices.Sort(notes) // ids made in one millisecond by concurrent tests need not follow creation order
		require.Equal(t, notes, walk(catalog.ListParams{TenantID: tenantA, Kind: "note", Limit: 4}))
		require.Equal(t, all, walk(catalog.ListParams{TenantID: tenantA, Limit: 23}))
		drafts := walk(catalog.ListParams{TenantID: tenantA, State: catalog.StateDraft, Limit: 200})
		require.Equal(t, all, drafts)
		published := walk(catalog.ListParams{TenantID: tenantA, State: catalog.StatePublished, Limit: 7})
		require.Empty(t, published)

		// Versions, newest first.
		r := b.create(t, tenantA, "flow", "f", `{"steps": [{"amount": 1}]}`)
		for i := range 7 {
			r = b.edit(t, b.get(t, tenantA, r.ID), fmt.Sprintf(`{"steps": [{"amount": %d}]}`, i+2))
			b.publish(t, r)
		}
		var versions []int
		cursor := ""
		for {
			page, err := b.svc.Versions(ctx, catalog.VersionsParams{TenantID: tenantA, ID: r.ID, Cursor: cursor, Limit: 3})
			require.NoError(t, err)
			for _, v := range page.Items {
				versions = append(versions, v.Version)
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		require.Equal(t, []int{7, 6, 5, 4, 3, 2, 1}, versions)

		// Audit, newest first: 23 creates + (1 create + 7 updates + 7 publishes) in tenant A.
		var audit []int64
		cursor = ""
		for {
			page, err := b.svc.Audit(ctx, catalog.AuditParams{TenantID: tenantA, Cursor: cursor, Limit: 6})
			require.NoError(t, err)
			for _, e := range page.Items {
				audit = append(audit, e.Seq)
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		require.Len(t, audit, 38)
		require.IsDecreasing(t, audit)

		for _, p := range []catalog.ListParams{
			{TenantID: tenantA, Limit: 201}, {TenantID: tenantA, Limit: -1},
			{TenantID: tenantA, Cursor: "not-a-cursor"}, {TenantID: tenantA, State: "gone"},
		} {
			_, err := b.svc.List(ctx, p)
			requireProblem(t, err, problem.KindInvalid)
		}
		page, err := b.svc.List(ctx, catalog.ListParams{TenantID: tenantA})
		require.NoError(t, err)
		require.Len(t, page.Items, 24, "the default limit covers tenant A's 24 resources")
		require.Empty(t, page.Next)
	})
}
