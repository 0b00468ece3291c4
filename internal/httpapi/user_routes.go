package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/perkhq/perk/internal/tenant"
)

// UserPath is the {user_id} of user routes.
type UserPath struct {
	UserID string `path:"user_id" doc:"The merchant's user id, or 'me' with a user token"`
}

// UserBody identifies a user.
type UserBody struct {
	UserID     string `json:"user_id"`
	MerchantID string `json:"merchant_id"`
}

type userOut struct{ Body UserBody }

type issueTokenIn struct {
	UserPath
	Body struct {
		TTLSeconds int `json:"ttl_seconds,omitempty" minimum:"0" doc:"Lifetime; default 3600"`
	}
}

type tokenOut struct {
	Status int
	Body   tenant.UserToken
}

type setProfileIn struct {
	UserPath
	Body struct {
		Attributes map[string]any `json:"attributes,omitempty" doc:"Free attributes (a JSON object of at most 16 KiB), seen by rules as user.attributes"`
		Tags       []string       `json:"tags,omitempty" doc:"At most 100 lower-case slugs, seen by rules as user.tags"`
	}
}

type profileOut struct{ Body tenant.Profile }

// registerProfileRoutes adds a user's profile: attributes and tags that task audiences and
// filters and coupon conditions read.
func (s *Server) registerProfileRoutes(tags []string) {
	register(s, Op{Operation: huma.Operation{OperationID: "set-user-profile", Method: http.MethodPut,
		Path: "/v1/users/{user_id}/profile", Summary: "Replace a user's attributes and tags", Tags: tags},
		Access: AccessIntegrate},
		func(ctx context.Context, p tenant.Principal, in *setProfileIn) (*profileOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			prof, err := s.deps.Tenants.SetProfile(ctx, tenant.SetProfileParams{TenantID: p.TenantID, UserID: userID,
				Attributes: in.Body.Attributes, Tags: in.Body.Tags})
			return &profileOut{Body: prof}, locate(err, "attributes", "tags")
		})
	register(s, Op{Operation: huma.Operation{OperationID: "get-user-profile", Method: http.MethodGet,
		Path: "/v1/users/{user_id}/profile", Summary: "A user's attributes and tags", Tags: tags},
		Access: AccessUserRead},
		func(ctx context.Context, p tenant.Principal, in *UserPath) (*profileOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			prof, err := s.deps.Tenants.Profile(ctx, p.TenantID, userID)
			return &profileOut{Body: prof}, err
		})
}

func (s *Server) registerUserRoutes() {
	tags := []string{"Users"}
	s.registerProfileRoutes(tags)
	register(s, Op{Operation: huma.Operation{OperationID: "get-user", Method: http.MethodGet,
		Path: "/v1/users/{user_id}", Summary: "Resolve a user ('me' with a user token)", Tags: tags},
		Access: AccessUserRead},
		func(ctx context.Context, p tenant.Principal, in *UserPath) (*userOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			return &userOut{Body: UserBody{UserID: userID, MerchantID: p.TenantID}}, nil
		})
	register(s, Op{Operation: huma.Operation{OperationID: "issue-user-token", Method: http.MethodPost,
		Path: "/v1/users/{user_id}/tokens", Summary: "Issue a user token signed with the merchant's secret",
		DefaultStatus: http.StatusCreated, Tags: tags}, Access: AccessIntegrate},
		func(ctx context.Context, p tenant.Principal, in *issueTokenIn) (*tokenOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			tok, err := s.deps.Tenants.IssueUserToken(ctx, tenant.IssueUserTokenParams{TenantID: p.TenantID,
				UserID: userID, TTL: time.Duration(in.Body.TTLSeconds) * time.Second})
			return &tokenOut{Status: http.StatusCreated, Body: tok}, err
		})
}
