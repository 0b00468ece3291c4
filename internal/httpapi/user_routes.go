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

func (s *Server) registerUserRoutes() {
	tags := []string{"Users"}
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
