package app

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/client"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

func TestMerchantDefinedAsset(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOptions{dialect: sqldb.SQLite})
	ctx := context.Background()
	nm, err := n.platform.CreateMerchant(ctx, "Shop", "")
	require.NoError(t, err)
	api := client.New(n.url, nm.AdminKey.Secret)

	// an undefined asset is refused, and nothing is granted
	_, err = api.Do(ctx, "POST", "/v1/users/u1/adjustments", map[string]any{"asset": "stars", "amount": 5,
		"reason": "welcome", "business_key": "adj-1"}, nil)
	var p *client.Problem
	require.True(t, errors.As(err, &p), "%v", err)
	require.Equal(t, 422, p.Status)

	_, err = api.Do(ctx, "POST", "/v1/ledger/assets", map[string]any{"asset": "stars", "name": "Stars"}, nil)
	require.NoError(t, err)
	_, err = api.Do(ctx, "POST", "/v1/ledger/assets", map[string]any{"asset": "Bad-Asset"}, nil)
	require.True(t, errors.As(err, &p))
	require.Equal(t, "body.asset", p.Errors[0].Location)

	_, err = api.Do(ctx, "POST", "/v1/users/u1/adjustments", map[string]any{"asset": "stars", "amount": 5,
		"reason": "welcome", "business_key": "adj-1"}, nil)
	require.NoError(t, err)
	var accounts struct {
		Accounts []struct {
			Asset   string `json:"asset"`
			Balance int64  `json:"balance"`
		} `json:"accounts"`
	}
	_, err = api.Do(ctx, "GET", "/v1/users/u1/accounts", nil, &accounts)
	require.NoError(t, err)
	found := false
	for _, a := range accounts.Accounts {
		if a.Asset == "stars" {
			found = true
			require.EqualValues(t, 5, a.Balance)
		}
	}
	require.True(t, found, "%+v", accounts)
	var assets struct {
		Assets []struct {
			Asset   string `json:"asset"`
			BuiltIn bool   `json:"built_in"`
		} `json:"assets"`
	}
	_, err = api.Do(ctx, "GET", "/v1/ledger/assets", nil, &assets)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(assets.Assets), 3)
}
