package catalog_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
)

func TestKillSwitch(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, sets, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		b := setup(t, db)
		snap := b.snapshot(t, catalog.SnapshotOptions{})

		for spec, paths := range map[string][]string{
			`{"target": "campaign", "off": true}`:                   {"spec.target"},
			`{"target": "bogus:x", "off": true}`:                    {"spec.target"},
			`{"target": "switch:x", "off": true}`:                   {"spec.target"},
			`{"target": "task:Not A Slug", "off": true}`:            {"spec.target"},
			`{"target": "module:coupon", "off": "yes"}`:             {"spec.off"},
			`{"target": 7, "off": true, "extra": 1}`:                {"spec.extra", "spec.target"},
			`{"target": "module:coupon", "off": true, "reason": 1}`: {"spec.reason"},
		} {
			_, err := b.svc.Create(ctx, catalog.CreateParams{TenantID: tenantA, Kind: catalog.KindSwitch,
				Key: "s", Spec: json.RawMessage(spec), Actor: alice})
			require.ElementsMatch(t, paths, fieldPaths(requireProblem(t, err, problem.KindInvalid)), "spec %s", spec)
		}

		// A draft may leave "off" out; publishing needs it.
		r := b.create(t, tenantA, catalog.KindSwitch, "kill-coupons", `{"target": "module:coupon"}`)
		_, err := b.svc.Publish(ctx, catalog.PublishParams{TenantID: tenantA, ID: r.ID, Actor: alice})
		require.Equal(t, []string{"spec.off"}, fieldPaths(requireProblem(t, err, problem.KindInvalid)))
		r = b.edit(t, r, `{"target": "module:coupon", "off": true, "reason": "incident 42"}`)
		b.publish(t, r)
		require.NoError(t, snap.Apply(ctx))
		require.True(t, snap.Killed(tenantA, "module:coupon"))
		require.False(t, snap.Killed(tenantB, "module:coupon"), "a tenant's switch stays in its tenant")
		require.False(t, snap.Killed(tenantA, "module:task"))

		// A platform switch applies to every tenant.
		p := b.create(t, catalog.Platform, catalog.KindSwitch, "stop-signup", `{"target": "task:signup", "off": true}`)
		b.publish(t, p)
		require.NoError(t, snap.Apply(ctx))
		for _, tenant := range []string{tenantA, tenantB, catalog.Platform} {
			require.True(t, snap.Killed(tenant, "task:signup"), tenant)
		}

		// Switched back on, then archived: nothing is killed any more.
		b.publish(t, b.edit(t, p, `{"target": "task:signup", "off": false}`))
		_, err = b.svc.Archive(ctx, catalog.ArchiveParams{TenantID: tenantA, ID: r.ID, Actor: alice})
		require.NoError(t, err)
		require.True(t, snap.Killed(tenantA, "module:coupon"), "not applied yet")
		require.NoError(t, snap.Apply(ctx))
		require.False(t, snap.Killed(tenantB, "task:signup"))
		require.False(t, snap.Killed(tenantA, "module:coupon"))
	})
}
