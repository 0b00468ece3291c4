package httpapi

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/perkhq/perk/internal/reward"
	"github.com/perkhq/perk/internal/tenant"
)

// GrantPath is the {grant_id} of grant routes.
type GrantPath struct {
	GrantID string `path:"grant_id" doc:"The grant's id (grt_…)"`
}

type createGrantIn struct {
	Body struct {
		UserID string `json:"user_id" doc:"The user who earns the reward"`
		// SourceID is the caller's business id: a repeat with the same id returns the first grant.
		SourceID string          `json:"source_id" doc:"Your business id for this reward (an order, a task completion …); a repeat returns the first grant"`
		Seq      int             `json:"seq,omitempty" minimum:"0" doc:"Tells apart several grants of one source_id (default 0)"`
		Rewards  []reward.Reward `json:"rewards,omitempty" doc:"Inline rewards: points, growth or coupon; or name a flow"`
		Flow     string          `json:"flow,omitempty" doc:"Key of a published flow; or list rewards"`
		Params   json.RawMessage `json:"params,omitempty" doc:"A JSON object the flow's conditions (params.x) and external calls see"`
	}
}

type grantOut struct {
	Status int
	Body   reward.Grant
}

type listGrantsIn struct {
	ListQuery
	State  string `query:"state" enum:"pending,running,succeeded,failed,dead," doc:"Only grants in this state"`
	UserID string `query:"user_id" doc:"Only this user's grants"`
}

type grantPageOut struct{ Body reward.Page }

type owedOut struct {
	Body struct {
		Items []reward.Grant `json:"items" doc:"Grants not delivered yet: pending, running, failed (retrying) and dead, newest first"`
	}
}

type callbackIn struct {
	GrantPath
	Step      string `path:"step" doc:"The step that waits for this confirmation"`
	Signature string `header:"Perk-Signature" doc:"v1=<hex HMAC-SHA256 of '<grant_id>.<step>.<body>' with the step's secret>"`
	// Body documents the shape; the signature covers RawBody, the bytes as sent.
	Body    json.RawMessage `doc:"{\"status\":\"done\",\"output\":{…}} or {\"status\":\"failed\",\"error\":\"…\"}"`
	RawBody []byte
}

// grantBodyFields are the create body's members, for locating problems.
var grantBodyFields = []string{"user_id", "source_id", "seq", "rewards", "flow", "params", "source_kind"}

// registerRewardRoutes serves grants: create (run inline), list, get, retry, a user's owed rewards,
// and the confirmation callback of call_external steps.
func (s *Server) registerRewardRoutes(svc *reward.Service) {
	tags := []string{"Rewards"}
	register(s, Op{Operation: huma.Operation{OperationID: "create-grant", Method: http.MethodPost, Path: "/v1/grants",
		Summary: "Grant a reward, delivered exactly once", DefaultStatus: http.StatusCreated, Tags: tags,
		Description: "Creates a grant (source kind `api`) from inline rewards or a published flow and runs it at once. " +
			"201 with the grant and its steps: `succeeded` when the flow finished within the request, else `pending` " +
			"or `failed` — the sweeper delivers it later. A repeated `source_id` (and `seq`) answers 200 with the first grant."},
		Access: AccessIntegrate},
		func(ctx context.Context, p tenant.Principal, in *createGrantIn) (*grantOut, error) {
			g, created, err := svc.Create(ctx, reward.CreateParams{TenantID: p.TenantID, UserID: in.Body.UserID,
				SourceKind: reward.SourceAPI, SourceID: in.Body.SourceID, Seq: in.Body.Seq, Flow: in.Body.Flow,
				Rewards: in.Body.Rewards, Params: in.Body.Params})
			if err != nil {
				return nil, locate(err, grantBodyFields...)
			}
			status := http.StatusOK
			if created {
				status = http.StatusCreated
			}
			return &grantOut{Status: status, Body: g}, nil
		})
	register(s, Op{Operation: huma.Operation{OperationID: "list-grants", Method: http.MethodGet, Path: "/v1/grants",
		Summary: "List grants, newest first", Tags: tags}, Access: AccessRead},
		func(ctx context.Context, p tenant.Principal, in *listGrantsIn) (*grantPageOut, error) {
			page, err := svc.List(ctx, reward.ListParams{TenantID: p.TenantID, State: reward.State(in.State),
				UserID: in.UserID, Cursor: in.Cursor, Limit: in.Limit})
			return &grantPageOut{Body: page}, locate(err)
		})
	register(s, Op{Operation: huma.Operation{OperationID: "get-grant", Method: http.MethodGet,
		Path: "/v1/grants/{grant_id}", Summary: "Get a grant with its steps", Tags: tags}, Access: AccessRead},
		func(ctx context.Context, p tenant.Principal, in *GrantPath) (*grantOut, error) {
			g, err := svc.Get(ctx, p.TenantID, in.GrantID)
			return &grantOut{Status: http.StatusOK, Body: g}, err
		})
	s.registerRewardActions(svc, tags)
}

func (s *Server) registerRewardActions(svc *reward.Service, tags []string) {
	register(s, Op{Operation: huma.Operation{OperationID: "retry-grant", Method: http.MethodPost,
		Path: "/v1/grants/{grant_id}/retry", Summary: "Replay a failed or dead grant now", Tags: tags,
		Description: "Puts the grant back to pending with a fresh budget of attempts and runs it at once; steps " +
			"already done are not applied again."}, Access: AccessWrite},
		func(ctx context.Context, p tenant.Principal, in *GrantPath) (*grantOut, error) {
			g, err := svc.Retry(ctx, p.TenantID, in.GrantID)
			return &grantOut{Status: http.StatusOK, Body: g}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "list-owed-rewards", Method: http.MethodGet,
		Path: "/v1/users/{user_id}/owed-rewards", Summary: "What a user is still owed ('where is my reward')",
		Tags: tags}, Access: AccessUserRead},
		func(ctx context.Context, p tenant.Principal, in *UserPath) (*owedOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			items, err := svc.Owed(ctx, p.TenantID, userID)
			out := &owedOut{}
			out.Body.Items = items
			return out, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "confirm-grant-step", Method: http.MethodPost,
		Path: "/v1/grants/{grant_id}/steps/{step}/callback", Summary: "Confirm a call_external step (signed by the merchant)",
		Tags: tags, Errors: []int{http.StatusUnauthorized},
		Description: "The merchant's confirmation of a waiting call_external step: body " +
			"`{\"status\":\"done\",\"output\":{…}}` or `{\"status\":\"failed\",\"error\":\"…\"}`, authenticated by the " +
			"`Perk-Signature` header (no bearer). A repeated confirmation changes nothing."}, Access: AccessPublic},
		func(ctx context.Context, _ tenant.Principal, in *callbackIn) (*grantOut, error) {
			g, err := svc.Callback(ctx, reward.CallbackParams{GrantID: in.GrantID, Step: in.Step,
				Signature: in.Signature, Body: in.RawBody})
			return &grantOut{Status: http.StatusOK, Body: g}, err
		})
}
