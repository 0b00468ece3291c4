package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/perkhq/perk/internal/tenant"
)

// ListQuery is the cursor pagination every list accepts.
type ListQuery struct {
	Cursor string `query:"cursor" doc:"Opaque cursor from a previous page's next_cursor"`
	Limit  int    `query:"limit" minimum:"0" maximum:"200" doc:"Page size, default 50, at most 200"`
}

func (q ListQuery) params() tenant.ListParams {
	return tenant.ListParams{Cursor: q.Cursor, Limit: q.Limit}
}

// MerchantPath is the {merchant_id} of merchant routes.
type MerchantPath struct {
	MerchantID string `path:"merchant_id" doc:"Merchant id (mch_…)"`
}

type createMerchantIn struct {
	Body struct {
		Name     string `json:"name" minLength:"1" maxLength:"100" doc:"Display name"`
		TimeZone string `json:"time_zone,omitempty" doc:"IANA time zone for daily/weekly periods; default UTC" example:"Asia/Shanghai"`
	}
}

type newMerchantOut struct {
	Status int
	Body   tenant.NewMerchant
}

type merchantOut struct{ Body tenant.Merchant }

type merchantPageOut struct{ Body tenant.Page[tenant.Merchant] }

type updateMerchantIn struct {
	MerchantPath
	Body struct {
		Name     *string                `json:"name,omitempty" maxLength:"100"`
		TimeZone *string                `json:"time_zone,omitempty"`
		Status   *tenant.MerchantStatus `json:"status,omitempty" enum:"active,suspended"`
	}
}

type createKeyIn struct {
	MerchantPath
	Body struct {
		Name string      `json:"name" minLength:"1" maxLength:"100"`
		Role tenant.Role `json:"role" enum:"admin,operator,viewer,integration"`
	}
}

type newKeyOut struct {
	Status int
	Body   tenant.NewKey
}

type keyPageOut struct{ Body tenant.Page[tenant.Key] }

type keyOut struct{ Body tenant.Key }

type revokeKeyIn struct {
	MerchantPath
	KeyID string `path:"key_id" doc:"Key id (key_…)"`
}

type listMerchantKeysIn struct {
	MerchantPath
	ListQuery
}

type setPublicKeyIn struct {
	MerchantPath
	Body struct {
		PublicKey string `json:"public_key" doc:"Ed25519 public key, PEM (PKIX); empty removes it"`
	}
}

type secretOut struct {
	Body struct {
		UserTokenSecret string `json:"user_token_secret" doc:"The new HS256 secret, shown once"`
	}
}

func actor(p tenant.Principal) string { return p.CredentialID() }

func (s *Server) registerTenantRoutes() {
	tags := []string{"Merchants"}
	register(s, Op{Operation: huma.Operation{OperationID: "create-merchant", Method: http.MethodPost,
		Path: "/v1/merchants", Summary: "Create a merchant with its first admin key and user-token secret",
		DefaultStatus: http.StatusCreated, Tags: tags}, Access: AccessPlatform},
		func(ctx context.Context, p tenant.Principal, in *createMerchantIn) (*newMerchantOut, error) {
			nm, err := s.deps.Tenants.CreateMerchant(ctx, tenant.CreateMerchantParams{
				Name: in.Body.Name, TimeZone: in.Body.TimeZone, Actor: actor(p)})
			return &newMerchantOut{Status: http.StatusCreated, Body: nm}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "list-merchants", Method: http.MethodGet,
		Path: "/v1/merchants", Summary: "List merchants", Tags: tags}, Access: AccessPlatform},
		func(ctx context.Context, _ tenant.Principal, in *ListQuery) (*merchantPageOut, error) {
			page, err := s.deps.Tenants.ListMerchants(ctx, in.params())
			return &merchantPageOut{Body: page}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "get-merchant", Method: http.MethodGet,
		Path: "/v1/merchants/{merchant_id}", Summary: "Get a merchant", Tags: tags}, Access: AccessPlatformOrRead},
		func(ctx context.Context, p tenant.Principal, in *MerchantPath) (*merchantOut, error) {
			id, err := merchantOf(p, in.MerchantID)
			if err != nil {
				return nil, err
			}
			m, err := s.deps.Tenants.GetMerchant(ctx, id)
			return &merchantOut{Body: m}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "update-merchant", Method: http.MethodPatch,
		Path: "/v1/merchants/{merchant_id}", Summary: "Rename, move time zone, suspend or reactivate a merchant",
		Tags: tags}, Access: AccessPlatform},
		func(ctx context.Context, _ tenant.Principal, in *updateMerchantIn) (*merchantOut, error) {
			m, err := s.deps.Tenants.UpdateMerchant(ctx, tenant.UpdateMerchantParams{ID: in.MerchantID,
				Name: in.Body.Name, TimeZone: in.Body.TimeZone, Status: in.Body.Status})
			return &merchantOut{Body: m}, err
		})
	s.registerKeyRoutes()
}

func (s *Server) registerKeyRoutes() {
	tags := []string{"API keys"}
	register(s, Op{Operation: huma.Operation{OperationID: "create-key", Method: http.MethodPost,
		Path: "/v1/merchants/{merchant_id}/keys", Summary: "Create an API key; its secret is shown once",
		DefaultStatus: http.StatusCreated, Tags: tags}, Access: AccessPlatformOrKeys},
		func(ctx context.Context, p tenant.Principal, in *createKeyIn) (*newKeyOut, error) {
			id, err := merchantOf(p, in.MerchantID)
			if err != nil {
				return nil, err
			}
			k, err := s.deps.Tenants.CreateKey(ctx, tenant.CreateKeyParams{TenantID: id, Name: in.Body.Name,
				Role: in.Body.Role, Actor: actor(p)})
			return &newKeyOut{Status: http.StatusCreated, Body: k}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "list-keys", Method: http.MethodGet,
		Path: "/v1/merchants/{merchant_id}/keys", Summary: "List API keys (never their secrets)", Tags: tags},
		Access: AccessPlatformOrKeys},
		func(ctx context.Context, p tenant.Principal, in *listMerchantKeysIn) (*keyPageOut, error) {
			id, err := merchantOf(p, in.MerchantID)
			if err != nil {
				return nil, err
			}
			page, err := s.deps.Tenants.ListKeys(ctx, id, in.params())
			return &keyPageOut{Body: page}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "revoke-key", Method: http.MethodDelete,
		Path: "/v1/merchants/{merchant_id}/keys/{key_id}", Summary: "Revoke an API key at once", Tags: tags},
		Access: AccessPlatformOrKeys},
		func(ctx context.Context, p tenant.Principal, in *revokeKeyIn) (*keyOut, error) {
			id, err := merchantOf(p, in.MerchantID)
			if err != nil {
				return nil, err
			}
			k, err := s.deps.Tenants.RevokeKey(ctx, id, in.KeyID)
			return &keyOut{Body: k}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "rotate-token-secret", Method: http.MethodPost,
		Path:    "/v1/merchants/{merchant_id}/token-secret/rotate",
		Summary: "Replace the HS256 user-token secret; old tokens stop working", Tags: tags},
		Access: AccessPlatformOrKeys},
		func(ctx context.Context, p tenant.Principal, in *MerchantPath) (*secretOut, error) {
			id, err := merchantOf(p, in.MerchantID)
			if err != nil {
				return nil, err
			}
			secret, err := s.deps.Tenants.RotateTokenSecret(ctx, id)
			out := &secretOut{}
			out.Body.UserTokenSecret = secret
			return out, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "set-token-public-key", Method: http.MethodPut,
		Path:    "/v1/merchants/{merchant_id}/token-public-key",
		Summary: "Accept EdDSA user tokens signed by this Ed25519 key", Tags: tags}, Access: AccessPlatformOrKeys},
		func(ctx context.Context, p tenant.Principal, in *setPublicKeyIn) (*merchantOut, error) {
			id, err := merchantOf(p, in.MerchantID)
			if err != nil {
				return nil, err
			}
			m, err := s.deps.Tenants.SetTokenPublicKey(ctx, id, in.Body.PublicKey)
			return &merchantOut{Body: m}, err
		})
}
