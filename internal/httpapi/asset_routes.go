package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/tenant"
)

type defineAssetIn struct {
	Body struct {
		Asset string `json:"asset" doc:"Slug: a lower-case letter, then up to 31 of a-z 0-9 _" example:"stars"`
		Name  string `json:"name,omitempty" maxLength:"100" doc:"Display name"`
	}
}

type assetOut struct {
	Status int
	Body   ledger.Asset
}

type assetsOut struct {
	Body struct {
		Assets []ledger.Asset `json:"assets"`
	}
}

// registerAssetRoutes lets a merchant define ledger assets beyond points and growth.
func (s *Server) registerAssetRoutes(svc *ledger.Service) {
	tags := []string{"Ledger"}
	register(s, Op{Operation: huma.Operation{OperationID: "define-ledger-asset", Method: http.MethodPost,
		Path: "/v1/ledger/assets", Summary: "Define an asset besides points and growth (defining it again is a no-op)",
		DefaultStatus: http.StatusCreated, Tags: tags}, Access: AccessWrite},
		func(ctx context.Context, p tenant.Principal, in *defineAssetIn) (*assetOut, error) {
			a, err := svc.DefineAsset(ctx, ledger.DefineAssetParams{TenantID: p.TenantID, Asset: in.Body.Asset,
				Name: in.Body.Name})
			return &assetOut{Status: http.StatusCreated, Body: a}, locate(err, "asset", "name")
		})
	register(s, Op{Operation: huma.Operation{OperationID: "list-ledger-assets", Method: http.MethodGet,
		Path: "/v1/ledger/assets", Summary: "List the merchant's assets, built-in ones included", Tags: tags},
		Access: AccessRead},
		func(ctx context.Context, p tenant.Principal, _ *struct{}) (*assetsOut, error) {
			assets, err := svc.Assets(ctx, p.TenantID)
			out := &assetsOut{}
			out.Body.Assets = assets
			return out, err
		})
}
