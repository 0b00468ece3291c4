// Package tenant holds the platform's merchants (the tenants), their API keys with roles, and the
// verification of C-end user tokens. Every other module scopes its data by the tenant id it returns.
package tenant

import (
	"embed"
	"time"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations are this module's tables.
var Migrations = sqldb.Migrations{Module: "tenant", FS: migrations, Dir: "migrations"}

// Platform is the tenant id of the platform operator itself.
const Platform = "platform"

// Role is what an API key may do.
type Role string

// The roles. Platform keys manage merchants; the others act inside one merchant.
const (
	RolePlatform    Role = "platform"
	RoleAdmin       Role = "admin"
	RoleOperator    Role = "operator"
	RoleViewer      Role = "viewer"
	RoleIntegration Role = "integration"
)

// MerchantRoles are the roles a merchant key may have.
var MerchantRoles = []Role{RoleAdmin, RoleOperator, RoleViewer, RoleIntegration}

// Scope is a permission an operation requires.
type Scope string

// The scopes.
const (
	ScopePlatform  Scope = "platform"  // manage merchants
	ScopeKeys      Scope = "keys"      // manage the merchant's keys
	ScopeWrite     Scope = "write"     // change the merchant's configuration
	ScopeIntegrate Scope = "integrate" // send events, act for users
	ScopeRead      Scope = "read"      // read the merchant's data
	ScopeUser      Scope = "user"      // a C-end user acting for themself
)

var roleScopes = map[Role][]Scope{
	RolePlatform:    {ScopePlatform},
	RoleAdmin:       {ScopeKeys, ScopeWrite, ScopeIntegrate, ScopeRead},
	RoleOperator:    {ScopeWrite, ScopeIntegrate, ScopeRead},
	RoleViewer:      {ScopeRead},
	RoleIntegration: {ScopeIntegrate, ScopeRead},
}

// Scopes lists what a role may do.
func (r Role) Scopes() []Scope { return roleScopes[r] }

// Valid reports whether r is a known role.
func (r Role) Valid() bool { _, ok := roleScopes[r]; return ok }

// MerchantStatus is whether a merchant may use perk.
type MerchantStatus string

// Merchant statuses.
const (
	StatusActive    MerchantStatus = "active"
	StatusSuspended MerchantStatus = "suspended"
)

// Merchant is a tenant.
type Merchant struct {
	ID       string         `json:"id"`
	Name     string         `json:"name"`
	TimeZone string         `json:"time_zone"`
	Status   MerchantStatus `json:"status"`
	// HasTokenPublicKey tells whether EdDSA user tokens are accepted.
	HasTokenPublicKey bool      `json:"has_token_public_key"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
}

// Location returns the merchant's time zone (UTC when unset or unknown).
func (m Merchant) Location() *time.Location {
	loc, err := time.LoadLocation(m.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// Key is an API key as stored: never its secret.
type Key struct {
	ID         string     `json:"id"`
	TenantID   string     `json:"tenant_id"`
	Name       string     `json:"name"`
	Role       Role       `json:"role"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// PrincipalKind says what kind of credential authenticated a request.
type PrincipalKind string

// Principal kinds.
const (
	PrincipalKey  PrincipalKind = "key"
	PrincipalUser PrincipalKind = "user"
)

// Principal is who is calling: an API key of a tenant, or a C-end user of a merchant.
type Principal struct {
	Kind     PrincipalKind `json:"kind"`
	TenantID string        `json:"tenant_id"`
	KeyID    string        `json:"key_id,omitempty"`
	Role     Role          `json:"role,omitempty"`
	UserID   string        `json:"user_id,omitempty"`
}

// Has reports whether the principal holds the scope.
func (p Principal) Has(s Scope) bool {
	if p.Kind == PrincipalUser {
		return s == ScopeUser
	}
	for _, have := range p.Role.Scopes() {
		if have == s {
			return true
		}
	}
	return false
}

// CredentialID identifies the credential for scoping (idempotency keys, rate limits).
func (p Principal) CredentialID() string {
	if p.Kind == PrincipalUser {
		return "user:" + p.UserID
	}
	return p.KeyID
}
