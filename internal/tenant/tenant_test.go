package tenant_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/platform/sqldb/sqldbtest"
	"github.com/perkhq/perk/internal/tenant"
)

type testBundle struct {
	svc   *tenant.Service
	clock *clock.Fake
	db    *sqldb.DB
}

func setup(t *testing.T, db *sqldb.DB) *testBundle {
	t.Helper()
	c := clock.NewFake(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
	return &testBundle{svc: tenant.New(db, tenant.Options{Clock: c}), clock: c, db: db}
}

func requireKind(t *testing.T, err error, kind problem.Kind, code string) {
	t.Helper()
	e, ok := problem.As(err)
	require.True(t, ok, "want a problem, got %v", err)
	require.Equal(t, kind, e.Kind, e.Error())
	if code != "" {
		require.Equal(t, code, e.Slug())
	}
}

func TestTenantConformance(t *testing.T) {
	t.Parallel()
	sqldbtest.Run(t, []sqldb.Migrations{tenant.Migrations}, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()

		t.Run("MerchantAndAdminKey", func(t *testing.T) {
			b := setup(t, db)
			nm, err := b.svc.CreateMerchant(ctx, tenant.CreateMerchantParams{Name: "Acme", TimeZone: "Asia/Shanghai", Actor: "t"})
			require.NoError(t, err)
			require.Equal(t, "Asia/Shanghai", nm.Merchant.Location().String())
			p, err := b.svc.Authenticate(ctx, nm.AdminKey.Secret)
			require.NoError(t, err)
			require.Equal(t, tenant.Principal{Kind: tenant.PrincipalKey, TenantID: nm.Merchant.ID,
				KeyID: nm.AdminKey.Key.ID, Role: tenant.RoleAdmin}, p)
			require.True(t, p.Has(tenant.ScopeKeys))
			require.False(t, p.Has(tenant.ScopePlatform))
			got, err := b.svc.GetMerchant(ctx, nm.Merchant.ID)
			require.NoError(t, err)
			require.Equal(t, "Acme", got.Name)
		})

		t.Run("BadMerchantInputWritesNothing", func(t *testing.T) {
			b := setup(t, db)
			before := countRows(t, db, "tenant_merchants")
			_, err := b.svc.CreateMerchant(ctx, tenant.CreateMerchantParams{Name: " ", TimeZone: "Mars/Olympus"})
			requireKind(t, err, problem.KindInvalid, "")
			e, _ := problem.As(err)
			require.Len(t, e.Fields, 2)
			require.Equal(t, before, countRows(t, db, "tenant_merchants"))
		})

		t.Run("KeysRolesRevocation", func(t *testing.T) {
			b := setup(t, db)
			nm := mustMerchant(t, b)
			k, err := b.svc.CreateKey(ctx, tenant.CreateKeyParams{TenantID: nm.Merchant.ID, Name: "backend", Role: tenant.RoleViewer})
			require.NoError(t, err)
			p, err := b.svc.Authenticate(ctx, k.Secret)
			require.NoError(t, err)
			require.True(t, p.Has(tenant.ScopeRead))
			require.False(t, p.Has(tenant.ScopeWrite))

			_, err = b.svc.CreateKey(ctx, tenant.CreateKeyParams{TenantID: nm.Merchant.ID, Name: "x", Role: tenant.RolePlatform})
			requireKind(t, err, problem.KindInvalid, "")

			_, err = b.svc.Authenticate(ctx, k.Secret[:len(k.Secret)-1]+"x")
			requireKind(t, err, problem.KindUnauthenticated, "bad-credentials")

			other := mustMerchant(t, b)
			_, err = b.svc.RevokeKey(ctx, other.Merchant.ID, k.Key.ID)
			requireKind(t, err, problem.KindNotFound, "")
			_, err = b.svc.Authenticate(ctx, k.Secret)
			require.NoError(t, err, "revoking through another tenant must not touch the key")

			revoked, err := b.svc.RevokeKey(ctx, nm.Merchant.ID, k.Key.ID)
			require.NoError(t, err)
			require.NotNil(t, revoked.RevokedAt)
			_, err = b.svc.Authenticate(ctx, k.Secret)
			requireKind(t, err, problem.KindUnauthenticated, "key-revoked")
		})

		t.Run("ListKeysPaginates", func(t *testing.T) {
			b := setup(t, db)
			nm := mustMerchant(t, b)
			for range 4 {
				_, err := b.svc.CreateKey(ctx, tenant.CreateKeyParams{TenantID: nm.Merchant.ID, Name: "k", Role: tenant.RoleOperator})
				require.NoError(t, err)
			}
			seen := map[string]bool{}
			cursor := ""
			pages := 0
			for {
				page, err := b.svc.ListKeys(ctx, nm.Merchant.ID, tenant.ListParams{Cursor: cursor, Limit: 2})
				require.NoError(t, err)
				pages++
				for _, k := range page.Items {
					require.False(t, seen[k.ID], "duplicate %s", k.ID)
					require.Equal(t, nm.Merchant.ID, k.TenantID)
					seen[k.ID] = true
				}
				if page.Next == "" {
					break
				}
				cursor = page.Next
			}
			require.Len(t, seen, 5) // the admin key and four more
			require.Equal(t, 3, pages)
			_, err := b.svc.ListKeys(ctx, nm.Merchant.ID, tenant.ListParams{Cursor: "garbage"})
			requireKind(t, err, problem.KindInvalid, "")
		})

		t.Run("LastUsedIsThrottled", func(t *testing.T) {
			b := setup(t, db)
			nm := mustMerchant(t, b)
			_, err := b.svc.Authenticate(ctx, nm.AdminKey.Secret)
			require.NoError(t, err)
			first := lastUsed(t, b, nm)
			require.NotNil(t, first)
			b.clock.Advance(10 * time.Second)
			_, err = b.svc.Authenticate(ctx, nm.AdminKey.Secret)
			require.NoError(t, err)
			require.Equal(t, *first, *lastUsed(t, b, nm))
			b.clock.Advance(time.Minute)
			_, err = b.svc.Authenticate(ctx, nm.AdminKey.Secret)
			require.NoError(t, err)
			require.True(t, lastUsed(t, b, nm).After(*first))
		})

		t.Run("SuspendedMerchantIsRefused", func(t *testing.T) {
			b := setup(t, db)
			nm := mustMerchant(t, b)
			suspended := tenant.StatusSuspended
			_, err := b.svc.UpdateMerchant(ctx, tenant.UpdateMerchantParams{ID: nm.Merchant.ID, Status: &suspended})
			require.NoError(t, err)
			_, err = b.svc.Authenticate(ctx, nm.AdminKey.Secret)
			requireKind(t, err, problem.KindForbidden, "merchant-suspended")
		})

		t.Run("PlatformKeyWrittenOnce", func(t *testing.T) {
			b := setup(t, db)
			path := filepath.Join(t.TempDir(), "platform-key")
			created, err := b.svc.EnsurePlatformKey(ctx, path)
			require.NoError(t, err)
			require.True(t, created)
			info, err := os.Stat(path)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
			raw, err := os.ReadFile(path)
			require.NoError(t, err)
			p, err := b.svc.Authenticate(ctx, string(raw[:len(raw)-1]))
			require.NoError(t, err)
			require.Equal(t, tenant.RolePlatform, p.Role)
			require.Equal(t, tenant.Platform, p.TenantID)

			other := filepath.Join(t.TempDir(), "platform-key")
			created, err = b.svc.EnsurePlatformKey(ctx, other)
			require.NoError(t, err)
			require.False(t, created)
			require.NoFileExists(t, other)
		})

		t.Run("UserTokensHS256", func(t *testing.T) {
			b := setup(t, db)
			nm := mustMerchant(t, b)
			tok, err := b.svc.IssueUserToken(ctx, tenant.IssueUserTokenParams{TenantID: nm.Merchant.ID, UserID: "u-1"})
			require.NoError(t, err)
			p, err := b.svc.Authenticate(ctx, tok.Token)
			require.NoError(t, err)
			require.Equal(t, tenant.Principal{Kind: tenant.PrincipalUser, TenantID: nm.Merchant.ID, UserID: "u-1"}, p)
			require.True(t, p.Has(tenant.ScopeUser))
			require.False(t, p.Has(tenant.ScopeRead))

			// a token the merchant signs itself with the secret it was given
			own := sign(t, jwt.SigningMethodHS256, []byte(nm.TokenSecret), nm.Merchant.ID, "u-2", b.clock.Now().Add(time.Hour))
			p, err = b.svc.Authenticate(ctx, own)
			require.NoError(t, err)
			require.Equal(t, "u-2", p.UserID)

			other := mustMerchant(t, b)
			forged := sign(t, jwt.SigningMethodHS256, []byte(nm.TokenSecret), other.Merchant.ID, "u-2", b.clock.Now().Add(time.Hour))
			_, err = b.svc.Authenticate(ctx, forged)
			requireKind(t, err, problem.KindUnauthenticated, "bad-credentials")

			none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nm.Merchant.ID, "u-2", b.clock.Now().Add(time.Hour))
			_, err = b.svc.Authenticate(ctx, none)
			requireKind(t, err, problem.KindUnauthenticated, "bad-credentials")

			b.clock.Advance(2 * time.Hour)
			_, err = b.svc.Authenticate(ctx, tok.Token)
			requireKind(t, err, problem.KindUnauthenticated, "token-expired")

			_, err = b.svc.RotateTokenSecret(ctx, nm.Merchant.ID)
			require.NoError(t, err)
			_, err = b.svc.Authenticate(ctx, sign(t, jwt.SigningMethodHS256, []byte(nm.TokenSecret), nm.Merchant.ID, "u-2", b.clock.Now().Add(time.Hour)))
			requireKind(t, err, problem.KindUnauthenticated, "bad-credentials")

			_, err = b.svc.IssueUserToken(ctx, tenant.IssueUserTokenParams{TenantID: nm.Merchant.ID, UserID: "bad id!"})
			requireKind(t, err, problem.KindInvalid, "")
		})

		t.Run("UserTokensEdDSA", func(t *testing.T) {
			b := setup(t, db)
			nm := mustMerchant(t, b)
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			require.NoError(t, err)
			der, err := x509.MarshalPKIXPublicKey(pub)
			require.NoError(t, err)
			token := sign(t, jwt.SigningMethodEdDSA, priv, nm.Merchant.ID, "u-9", b.clock.Now().Add(time.Hour))
			_, err = b.svc.Authenticate(ctx, token)
			requireKind(t, err, problem.KindUnauthenticated, "bad-credentials")

			_, err = b.svc.SetTokenPublicKey(ctx, nm.Merchant.ID, "not pem")
			requireKind(t, err, problem.KindInvalid, "")
			m, err := b.svc.SetTokenPublicKey(ctx, nm.Merchant.ID, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
			require.NoError(t, err)
			require.True(t, m.HasTokenPublicKey)
			p, err := b.svc.Authenticate(ctx, token)
			require.NoError(t, err)
			require.Equal(t, "u-9", p.UserID)
		})
	})
}

func mustMerchant(t *testing.T, b *testBundle) tenant.NewMerchant {
	t.Helper()
	nm, err := b.svc.CreateMerchant(context.Background(), tenant.CreateMerchantParams{Name: "M", Actor: "test"})
	require.NoError(t, err)
	return nm
}

func lastUsed(t *testing.T, b *testBundle, nm tenant.NewMerchant) *time.Time {
	t.Helper()
	page, err := b.svc.ListKeys(context.Background(), nm.Merchant.ID, tenant.ListParams{})
	require.NoError(t, err)
	for _, k := range page.Items {
		if k.ID == nm.AdminKey.Key.ID {
			return k.LastUsedAt
		}
	}
	t.Fatal("admin key not listed")
	return nil
}

func countRows(t *testing.T, db *sqldb.DB, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.Reader().QueryRow(context.Background(), "SELECT COUNT(*) FROM "+table).Scan(&n))
	return n
}

func sign(t *testing.T, m jwt.SigningMethod, key any, aud, sub string, exp time.Time) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, jwt.RegisteredClaims{Audience: jwt.ClaimStrings{aud}, Subject: sub,
		ExpiresAt: jwt.NewNumericDate(exp)}).SignedString(key)
	require.NoError(t, err)
	return s
}
