package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/perkhq/perk/internal/activity"
	"github.com/perkhq/perk/internal/tenant"
)

// ActivityQuery filters and pages activity records.
type ActivityQuery struct {
	ListQuery
	Type       string    `query:"type" doc:"An event type (grant.succeeded), or a prefix ending in .* (grant.*)"`
	SourceKind string    `query:"source_kind" doc:"Only records about this kind of object, e.g. grant"`
	SourceID   string    `query:"source_id" doc:"Only records about this object, e.g. grt_…"`
	From       time.Time `query:"from" doc:"RFC 3339; event time, inclusive"`
	To         time.Time `query:"to" doc:"RFC 3339; event time, exclusive"`
}

func (q ActivityQuery) params(tenantID, userID string) activity.ListParams {
	return activity.ListParams{TenantID: tenantID, UserID: userID, Type: q.Type, SourceKind: q.SourceKind,
		SourceID: q.SourceID, From: q.From, To: q.To, Cursor: q.Cursor, Limit: q.Limit}
}

type listActivityIn struct {
	ActivityQuery
	UserID string `query:"user_id" doc:"Only this user's records"`
}

type userActivityIn struct {
	UserPath
	ActivityQuery
}

type activityPageOut struct{ Body activity.Page }

// registerActivityRoutes serves the activity log: the merchant's whole log, and one user's.
func (s *Server) registerActivityRoutes(svc *activity.Service) {
	tags := []string{"Activity"}
	register(s, Op{Operation: huma.Operation{OperationID: "list-activity", Method: http.MethodGet,
		Path: "/v1/activity", Summary: "Search the activity log, newest first", Tags: tags,
		Description: "Every grant, ledger entry and state change, recorded asynchronously from the domain " +
			"events (a record appears shortly after its event). Filter by user, type, source and time range."},
		Access: AccessRead},
		func(ctx context.Context, p tenant.Principal, in *listActivityIn) (*activityPageOut, error) {
			page, err := svc.List(ctx, in.params(p.TenantID, in.UserID))
			return &activityPageOut{Body: page}, locate(err)
		})
	register(s, Op{Operation: huma.Operation{OperationID: "list-user-activity", Method: http.MethodGet,
		Path: "/v1/users/{user_id}/activity", Summary: "A user's activity, newest first", Tags: tags,
		Description: "The user's records of the activity log ('me' with a user token, which sees only its own)."},
		Access: AccessUserRead},
		func(ctx context.Context, p tenant.Principal, in *userActivityIn) (*activityPageOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			page, err := svc.List(ctx, in.params(p.TenantID, userID))
			return &activityPageOut{Body: page}, locate(err)
		})
}
