package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/tenant"
)

// Access is what an operation requires of its caller.
type Access string

// The access levels. Every registered operation names one.
const (
	AccessPublic    Access = "public"     // anyone
	AccessPlatform  Access = "platform"   // a platform key
	AccessKeys      Access = "keys"       // a merchant admin key
	AccessWrite     Access = "write"      // a merchant key that may change configuration
	AccessRead      Access = "read"       // any merchant key that may read
	AccessIntegrate Access = "integrate"  // a merchant key that may act for users
	AccessUserRead  Access = "user-read"  // a read key, or a user token for its own user
	AccessUserWrite Access = "user-write" // an integrate key, or a user token for its own user
	AccessAnyKey    Access = "any"        // any valid credential

	AccessPlatformOrRead  Access = "platform-or-read"  // a platform key, or a merchant read key (own merchant only)
	AccessPlatformOrKeys  Access = "platform-or-keys"  // a platform key, or a merchant admin key (own merchant only)
	AccessPlatformOrWrite Access = "platform-or-write" // a platform key (platform config), or a merchant write key
)

type principalKey struct{}

// withPrincipal stores the authenticated caller in ctx.
func withPrincipal(ctx context.Context, p tenant.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// principalFrom returns the authenticated caller, if any.
func principalFrom(ctx context.Context) (tenant.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(tenant.Principal)
	return p, ok
}

// authenticate resolves the bearer credential, when one is sent, before routing. A credential that
// does not verify is refused at once; a missing one is left to each operation's access check.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Get("Authorization")
		if header == "" {
			next.ServeHTTP(w, r)
			return
		}
		scheme, bearer, ok := strings.Cut(header, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(bearer) == "" {
			p := newProblem(http.StatusUnauthorized, "bad-credentials", "the Authorization header must be 'Bearer <key or token>'")
			p.headers = http.Header{"WWW-Authenticate": {`Bearer realm="perk"`}}
			writeProblem(w, r, p)
			return
		}
		principal, err := s.deps.Tenants.Authenticate(r.Context(), strings.TrimSpace(bearer))
		if err != nil {
			p := toProblem(r.Context(), s.log, err)
			if p.Status == http.StatusUnauthorized {
				p.headers = http.Header{"WWW-Authenticate": {`Bearer realm="perk", error="invalid_token"`}}
			}
			writeProblem(w, r, p)
			return
		}
		next.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), principal)))
	})
}

// authorize checks the caller against an operation's access level.
func authorize(ctx context.Context, access Access) (tenant.Principal, error) {
	p, ok := principalFrom(ctx)
	if access == AccessPublic {
		return p, nil
	}
	if !ok {
		return p, problem.Unauthenticated("this operation needs 'Authorization: Bearer <key or token>'").
			WithCode("unauthenticated")
	}
	if allowed(p, access) {
		return p, nil
	}
	return p, problem.Forbidden("this credential may not perform this operation (needs %s access)", access)
}

func allowed(p tenant.Principal, access Access) bool {
	switch access {
	case AccessAnyKey:
		return true
	case AccessPlatform:
		return p.Has(tenant.ScopePlatform)
	case AccessKeys:
		return p.Has(tenant.ScopeKeys)
	case AccessWrite:
		return p.Has(tenant.ScopeWrite)
	case AccessRead:
		return p.Has(tenant.ScopeRead)
	case AccessIntegrate:
		return p.Has(tenant.ScopeIntegrate)
	case AccessUserRead:
		return p.Has(tenant.ScopeRead) || p.Has(tenant.ScopeUser)
	case AccessUserWrite:
		return p.Has(tenant.ScopeIntegrate) || p.Has(tenant.ScopeUser)
	case AccessPlatformOrRead:
		return p.Has(tenant.ScopePlatform) || p.Has(tenant.ScopeRead)
	case AccessPlatformOrKeys:
		return p.Has(tenant.ScopePlatform) || p.Has(tenant.ScopeKeys)
	case AccessPlatformOrWrite:
		return p.Has(tenant.ScopePlatform) || p.Has(tenant.ScopeWrite)
	}
	return false
}

// userOf resolves the {user_id} of a /v1/users/{user_id}/… route: "me" is the token's subject; a user
// token may only name its own user; a merchant key may name any of its users.
func userOf(p tenant.Principal, pathUserID string) (string, error) {
	if p.Kind == tenant.PrincipalUser {
		if pathUserID == "me" || pathUserID == p.UserID {
			return p.UserID, nil
		}
		return "", problem.Forbidden("a user token may only act for its own user")
	}
	if pathUserID == "me" {
		return "", problem.Invalid("'me' needs a user token; with an API key name the user").
			WithField("path.user_id", "'me' needs a user token")
	}
	if !tenant.ValidUserID(pathUserID) {
		return "", problem.Invalid("the user id is malformed").
			WithField("path.user_id", "must be 1 to 128 characters of A-Z a-z 0-9 _ . : @ -")
	}
	return pathUserID, nil
}

// merchantOf resolves the {merchant_id} of a /v1/merchants/{merchant_id}/… route: a platform key may
// name any merchant; a merchant key only its own (others are reported as not found).
func merchantOf(p tenant.Principal, merchantID string) (string, error) {
	if p.Has(tenant.ScopePlatform) || p.TenantID == merchantID {
		return merchantID, nil
	}
	return "", problem.NotFound("merchant %q not found", merchantID)
}

// Op describes one API operation: huma's operation plus the access it requires.
type Op struct {
	huma.Operation
	Access Access
}

// register adds an operation to the API with its access check and error translation.
func register[I, O any](s *Server, op Op, handler func(ctx context.Context, p tenant.Principal, in *I) (*O, error)) {
	if op.Access != AccessPublic {
		op.Security = []map[string][]string{{"bearer": {}}}
		op.Errors = append(op.Errors, http.StatusUnauthorized, http.StatusForbidden)
	}
	if op.Metadata == nil {
		op.Metadata = map[string]any{}
	}
	op.Metadata["access"] = op.Access
	if op.Description == "" {
		op.Description = op.Summary
	}
	op.Description += "\n\nAccess: `" + string(op.Access) + "`."
	s.ops = append(s.ops, op)
	s.opByPattern[op.Method+" "+op.Path] = op.OperationID
	if op.MaxBodyBytes > 0 {
		// limitBody holds each request to its route's limit, by the request's method and path:
		// only routes without path parameters can have their own.
		s.bodyLimits[op.Method+" "+op.Path] = op.MaxBodyBytes
	}
	huma.Register(s.api, op.Operation, func(ctx context.Context, in *I) (*O, error) {
		p, err := authorize(ctx, op.Access)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out, err := handler(ctx, p, in)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return out, nil
	})
}
