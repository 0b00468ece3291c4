package tenant_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/tenant"
)

func TestProfiles(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, []sqldb.Migrations{tenant.Migrations}, func(t *testing.T, db *sqldb.DB) {
		tb := setup(t, db)
		ctx := t.Context()

		empty, err := tb.svc.Profile(ctx, "mch_a", "u1")
		require.NoError(t, err)
		require.Empty(t, empty.Attributes)
		require.Empty(t, empty.Tags)
		require.Nil(t, empty.UpdatedAt)

		p, err := tb.svc.SetProfile(ctx, tenant.SetProfileParams{TenantID: "mch_a", UserID: "u1",
			Attributes: map[string]any{"city": "Hangzhou", "vip": true}, Tags: []string{"new", "beta", "new"}})
		require.NoError(t, err)
		require.Equal(t, []string{"beta", "new"}, p.Tags)
		got, err := tb.svc.Profile(ctx, "mch_a", "u1")
		require.NoError(t, err)
		require.Equal(t, "Hangzhou", got.Attributes["city"])

		// Integral numbers come back as the rules' integers, so `user.attributes.level + 1` works.
		_, err = tb.svc.SetProfile(ctx, tenant.SetProfileParams{TenantID: "mch_a", UserID: "u2",
			Attributes: map[string]any{"level": 3, "score": 2.5}})
		require.NoError(t, err)
		numbers, err := tb.svc.Profile(ctx, "mch_a", "u2")
		require.NoError(t, err)
		require.Equal(t, int64(3), numbers.Attributes["level"])
		require.Equal(t, 2.5, numbers.Attributes["score"])
		require.Equal(t, []string{"beta", "new"}, got.Tags)
		require.Equal(t, map[string]any{"id": "u1", "attributes": got.Attributes, "tags": []any{"beta", "new"}}, got.UserVars())

		other, err := tb.svc.Profile(ctx, "mch_b", "u1")
		require.NoError(t, err)
		require.Empty(t, other.Attributes, "profiles are per merchant")

		// Replacing drops what is not sent.
		_, err = tb.svc.SetProfile(ctx, tenant.SetProfileParams{TenantID: "mch_a", UserID: "u1", Tags: []string{"vip"}})
		require.NoError(t, err)
		got, err = tb.svc.Profile(ctx, "mch_a", "u1")
		require.NoError(t, err)
		require.Empty(t, got.Attributes)
		require.Equal(t, []string{"vip"}, got.Tags)

		// Bad input names each field and changes nothing.
		_, err = tb.svc.SetProfile(ctx, tenant.SetProfileParams{TenantID: "mch_a", UserID: "u1",
			Attributes: map[string]any{"blob": string(make([]byte, tenant.MaxProfileBytes))}, Tags: []string{"Not A Slug"}})
		e, ok := problem.As(err)
		require.True(t, ok)
		require.Equal(t, problem.KindInvalid, e.Kind)
		require.Len(t, e.Fields, 2)
		require.Equal(t, "attributes", e.Fields[0].Path)
		require.Equal(t, "tags[0]", e.Fields[1].Path)
		got, err = tb.svc.Profile(ctx, "mch_a", "u1")
		require.NoError(t, err)
		require.Equal(t, []string{"vip"}, got.Tags)
		_, err = tb.svc.SetProfile(ctx, tenant.SetProfileParams{TenantID: "mch_a", UserID: "bad user"})
		require.Error(t, err)
	})
}

// TestUserVarsCache: the rules' user variables are cached for a couple of seconds; a change made
// on this node is seen at once, one made on another node once the entry expires.
func TestUserVarsCache(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, []sqldb.Migrations{tenant.Migrations}, func(t *testing.T, db *sqldb.DB) {
		tb := setup(t, db)
		ctx := t.Context()
		other := tenant.New(db, tenant.Options{Clock: tb.clock}) // another node
		set := func(svc *tenant.Service, level int) {
			_, err := svc.SetProfile(ctx, tenant.SetProfileParams{TenantID: "mch_a", UserID: "u1",
				Attributes: map[string]any{"level": level}})
			require.NoError(t, err)
		}
		level := func() any {
			vars, err := tb.svc.UserVars(ctx, "mch_a", "u1")
			require.NoError(t, err)
			return vars["attributes"].(map[string]any)["level"]
		}
		set(tb.svc, 1)
		require.Equal(t, int64(1), level())
		set(tb.svc, 2)
		require.Equal(t, int64(2), level(), "this node's change is seen at once")
		set(other, 3)
		require.Equal(t, int64(2), level(), "another node's change waits for the entry to expire")
		tb.clock.Advance(3 * time.Second)
		require.Equal(t, int64(3), level())
	})
}
