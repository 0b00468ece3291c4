package tenant

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// keyPrefix starts every API key, so keys are easy to spot in logs and secret scanners.
const keyPrefix = "perk_"

// formatKey makes the bearer string of a key: perk_<ulid of the key id>_<secret>.
func formatKey(keyID, secret string) string {
	return keyPrefix + strings.TrimPrefix(keyID, "key_") + "_" + secret
}

// parseKey splits a bearer string into key id and secret.
func parseKey(bearer string) (keyID, secret string, ok bool) {
	rest, ok := strings.CutPrefix(bearer, keyPrefix)
	if !ok {
		return "", "", false
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || secret == "" || !ids.Valid("key", "key_"+id) {
		return "", "", false
	}
	return "key_" + id, secret, true
}

// CreateKeyParams describes a new API key.
type CreateKeyParams struct {
	TenantID string
	Name     string
	Role     Role
	Actor    string
}

// CreateKey makes an API key for a merchant. The secret is in the result and nowhere else.
func (s *Service) CreateKey(ctx context.Context, p CreateKeyParams) (NewKey, error) {
	var fs problem.Fields
	validateName(&fs, "body.name", p.Name)
	if p.Role == RolePlatform || !p.Role.Valid() {
		fs.Add("body.role", "must be one of admin, operator, viewer, integration")
	}
	if err := fs.Err("the key is invalid"); err != nil {
		return NewKey{}, err
	}
	var out NewKey
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		if _, err := s.merchant(ctx, tx, p.TenantID); err != nil {
			return err
		}
		var err error
		out, err = s.insertKey(ctx, tx, p.TenantID, p.Name, p.Role, p.Actor)
		return err
	})
	return out, err
}

func (s *Service) insertKey(ctx context.Context, tx *sqldb.Tx, tenantID, name string, role Role, actor string) (NewKey, error) {
	now := s.opts.Clock.Now()
	k := Key{ID: ids.New("key", now), TenantID: tenantID, Name: name, Role: role, CreatedAt: now, CreatedBy: actor}
	secret := ids.Secret(32)
	_, err := tx.Exec(ctx, `INSERT INTO tenant_keys (id, tenant_id, name, role, secret_hash, created_at, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, k.ID, tenantID, name, role, hashSecret(secret), sqldb.Micros(now), actor)
	return NewKey{Key: k, Secret: formatKey(k.ID, secret)}, err
}

const keyColumns = `id, tenant_id, name, role, created_at, created_by, revoked_at, last_used_at`

func scanKey(row interface{ Scan(...any) error }) (Key, error) {
	var k Key
	var created int64
	var revoked, used sql.NullInt64
	err := row.Scan(&k.ID, &k.TenantID, &k.Name, &k.Role, &created, &k.CreatedBy, &revoked, &used)
	k.CreatedAt = sqldb.FromMicros(created)
	k.RevokedAt, k.LastUsedAt = optTime(revoked), optTime(used)
	return k, err
}

func optTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := sqldb.FromMicros(v.Int64)
	return &t
}

// ListKeys pages through a tenant's keys, revoked ones included.
func (s *Service) ListKeys(ctx context.Context, tenantID string, p ListParams) (Page[Key], error) {
	after, limit, err := pageArgs(p)
	if err != nil {
		return Page[Key]{}, err
	}
	rows, err := s.db.Reader().Query(ctx, `SELECT `+keyColumns+` FROM tenant_keys
		WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`, tenantID, after, limit+1)
	if err != nil {
		return Page[Key]{}, err
	}
	defer rows.Close()
	var items []Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return Page[Key]{}, err
		}
		items = append(items, k)
	}
	if err := rows.Err(); err != nil {
		return Page[Key]{}, err
	}
	return paginate(items, limit, func(k Key) string { return k.ID }), nil
}

// RevokeKey revokes a tenant's key at once. Revoking a revoked key is a no-op.
func (s *Service) RevokeKey(ctx context.Context, tenantID, keyID string) (Key, error) {
	var k Key
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		k, err = scanKey(tx.QueryRow(ctx, `SELECT `+keyColumns+` FROM tenant_keys WHERE tenant_id = $1 AND id = $2`,
			tenantID, keyID))
		if errors.Is(err, sql.ErrNoRows) {
			return problem.NotFound("key %q not found", keyID)
		}
		if err != nil || k.RevokedAt != nil {
			return err
		}
		now := s.opts.Clock.Now()
		k.RevokedAt = &now
		_, err = tx.Exec(ctx, `UPDATE tenant_keys SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2`,
			tenantID, keyID, sqldb.Micros(now))
		return err
	})
	if err == nil {
		s.keys.drop(keyID)
	}
	return k, err
}

// EnsurePlatformKey creates the platform key on first start and writes it, once, to path (mode 0600).
// It returns true when it created one. If a platform key already exists nothing is written.
func (s *Service) EnsurePlatformKey(ctx context.Context, path string) (bool, error) {
	created := false
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM tenant_keys WHERE tenant_id = $1 AND revoked_at IS NULL`,
			Platform).Scan(&n); err != nil || n > 0 {
			return err
		}
		key, err := s.insertKey(ctx, tx, Platform, "platform", RolePlatform, "perk")
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return fmt.Errorf("tenant: write platform key: %w", err)
		}
		// Written before commit: if the commit fails the file holds a dead key and the next start
		// replaces it. Written whole then renamed, so a reader never sees a partial file.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(key.Secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("tenant: write platform key: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("tenant: write platform key: %w", err)
		}
		created = true
		return nil
	})
	return created, err
}

// authenticateKey checks an API key and returns its principal.
func (s *Service) authenticateKey(ctx context.Context, bearer string) (Principal, error) {
	keyID, secret, ok := parseKey(bearer)
	if !ok {
		return Principal{}, errBadCredentials()
	}
	hash := hashSecret(secret)
	now := s.opts.Clock.Now()
	if p, ok := s.keys.get(keyID, hash, now); ok {
		s.touch(ctx, keyID)
		return p, nil
	}
	epoch := s.keys.now()
	p, err := s.verifyKey(ctx, keyID, hash)
	if err != nil {
		return Principal{}, err
	}
	if s.opts.KeyCacheTTL > 0 {
		s.keys.put(keyID, hash, p, now.Add(s.opts.KeyCacheTTL), epoch)
	}
	s.touch(ctx, keyID)
	return p, nil
}

// verifyKey reads a key and its merchant and checks them.
func (s *Service) verifyKey(ctx context.Context, keyID, secretHash string) (Principal, error) {
	var (
		tenantID, stored string
		role             Role
		revoked          sql.NullInt64
	)
	err := s.db.Reader().QueryRow(ctx, `SELECT tenant_id, role, secret_hash, revoked_at FROM tenant_keys WHERE id = $1`,
		keyID).Scan(&tenantID, &role, &stored, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, errBadCredentials()
	}
	if err != nil {
		return Principal{}, err
	}
	if !equalHash(stored, secretHash) {
		return Principal{}, errBadCredentials()
	}
	if revoked.Valid {
		return Principal{}, problem.Unauthenticated("this API key was revoked").WithCode("key-revoked")
	}
	if tenantID != Platform {
		if err := s.checkActive(ctx, tenantID); err != nil {
			return Principal{}, err
		}
	}
	return Principal{Kind: PrincipalKey, TenantID: tenantID, KeyID: keyID, Role: role}, nil
}

func (s *Service) checkActive(ctx context.Context, tenantID string) error {
	m, err := s.GetMerchant(ctx, tenantID)
	if problem.Is(err, problem.KindNotFound) {
		return errBadCredentials()
	}
	if err != nil {
		return err
	}
	if m.Status != StatusActive {
		return problem.Forbidden("merchant %s is suspended", m.ID).WithCode("merchant-suspended")
	}
	return nil
}

// touch records that a key was used, at most once per TouchInterval per key and node.
func (s *Service) touch(ctx context.Context, keyID string) {
	now := s.opts.Clock.Now()
	s.touchMu.Lock()
	last, seen := s.touched[keyID]
	due := !seen || now.Sub(last) >= s.opts.TouchInterval
	if due {
		s.touched[keyID] = now
	}
	s.touchMu.Unlock()
	if !due {
		return
	}
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE tenant_keys SET last_used_at = $2 WHERE id = $1`, keyID, sqldb.Micros(now))
		return err
	})
	if err != nil {
		s.opts.Logger.Warn("tenant: record key use", "key_id", keyID, "err", err)
	}
}

// errBadCredentials is the one answer for every unknown or wrong credential, so callers learn nothing.
func errBadCredentials() error {
	return problem.Unauthenticated("the credentials are not valid").WithCode("bad-credentials")
}

// Authenticate resolves a bearer credential: an API key (perk_…) or a user token (a JWT).
func (s *Service) Authenticate(ctx context.Context, bearer string) (Principal, error) {
	if strings.HasPrefix(bearer, keyPrefix) {
		return s.authenticateKey(ctx, bearer)
	}
	return s.authenticateToken(ctx, bearer)
}
