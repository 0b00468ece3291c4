package tenant_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/tenant"
)

// TestKeyCache: a verified key is remembered for KeyCacheTTL. A revocation or a suspension made on
// this node takes effect at once; made on another node (another Service on the same database), it
// takes effect on this one when the entry expires, and never later.
func TestKeyCache(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, []sqldb.Migrations{tenant.Migrations}, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		b := setup(t, db)
		other := tenant.New(db, tenant.Options{Clock: b.clock}) // another node
		nm := mustMerchant(t, b)
		newKey := func() string {
			k, err := b.svc.CreateKey(ctx, tenant.CreateKeyParams{TenantID: nm.Merchant.ID, Name: "k", Role: tenant.RoleOperator})
			require.NoError(t, err)
			return k.Secret
		}
		keyID := func(secret string) string {
			p, err := b.svc.Authenticate(ctx, secret)
			require.NoError(t, err)
			return p.KeyID
		}

		// Revoked on another node: still accepted here until the entry expires, refused after.
		k1 := newKey()
		id1 := keyID(k1) // cached now
		_, err := other.RevokeKey(ctx, nm.Merchant.ID, id1)
		require.NoError(t, err)
		_, err = other.Authenticate(ctx, k1)
		requireKind(t, err, problem.KindUnauthenticated, "key-revoked")
		_, err = b.svc.Authenticate(ctx, k1)
		require.NoError(t, err, "within the TTL the cached key still works on this node")
		b.clock.Advance(2 * time.Second)
		_, err = b.svc.Authenticate(ctx, k1)
		requireKind(t, err, problem.KindUnauthenticated, "key-revoked")

		// Revoked on this node: refused at once.
		k2 := newKey()
		id2 := keyID(k2)
		_, err = b.svc.RevokeKey(ctx, nm.Merchant.ID, id2)
		require.NoError(t, err)
		_, err = b.svc.Authenticate(ctx, k2)
		requireKind(t, err, problem.KindUnauthenticated, "key-revoked")

		// A wrong secret for a cached key id is never accepted.
		k3 := newKey()
		keyID(k3)
		_, err = b.svc.Authenticate(ctx, k3[:len(k3)-1]+"x")
		requireKind(t, err, problem.KindUnauthenticated, "bad-credentials")

		// Suspended on this node: refused at once.
		suspended := tenant.StatusSuspended
		_, err = b.svc.UpdateMerchant(ctx, tenant.UpdateMerchantParams{ID: nm.Merchant.ID, Status: &suspended})
		require.NoError(t, err)
		_, err = b.svc.Authenticate(ctx, k3)
		requireKind(t, err, problem.KindForbidden, "merchant-suspended")

		// Reactivated on another node: accepted here once the refusal (never cached) is re-read.
		active := tenant.StatusActive
		_, err = other.UpdateMerchant(ctx, tenant.UpdateMerchantParams{ID: nm.Merchant.ID, Status: &active})
		require.NoError(t, err)
		keyID(k3)

		// With the cache off, another node's revocation takes effect at once.
		fresh := tenant.New(db, tenant.Options{Clock: b.clock, KeyCacheTTL: -1})
		_, err = fresh.Authenticate(ctx, k3)
		require.NoError(t, err)
		p, _ := fresh.Authenticate(ctx, k3)
		_, err = other.RevokeKey(ctx, nm.Merchant.ID, p.KeyID)
		require.NoError(t, err)
		_, err = fresh.Authenticate(ctx, k3)
		requireKind(t, err, problem.KindUnauthenticated, "key-revoked")
	})
}
