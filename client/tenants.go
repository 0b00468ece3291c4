package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Merchant is a tenant.
type Merchant struct {
	ID                string    `json:"id"`
	Name              string    `json:"name"`
	TimeZone          string    `json:"time_zone"`
	Status            string    `json:"status"`
	HasTokenPublicKey bool      `json:"has_token_public_key"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
}

// Key is an API key without its secret.
type Key struct {
	ID         string     `json:"id"`
	TenantID   string     `json:"tenant_id"`
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// NewKey is a created key and its secret, shown once.
type NewKey struct {
	Key    Key    `json:"key"`
	Secret string `json:"secret"`
}

// NewMerchant is a created merchant with its first admin key and user-token secret.
type NewMerchant struct {
	Merchant        Merchant `json:"merchant"`
	AdminKey        NewKey   `json:"admin_key"`
	UserTokenSecret string   `json:"user_token_secret"`
}

// CreateMerchant creates a merchant (platform key).
func (c *Client) CreateMerchant(ctx context.Context, name, timeZone string, opts ...Option) (NewMerchant, error) {
	var out NewMerchant
	_, err := c.Do(ctx, http.MethodPost, "/v1/merchants", map[string]string{"name": name, "time_zone": timeZone}, &out, opts...)
	return out, err
}

// GetMerchant reads one merchant.
func (c *Client) GetMerchant(ctx context.Context, id string) (Merchant, error) {
	var out Merchant
	_, err := c.Do(ctx, http.MethodGet, "/v1/merchants/"+url.PathEscape(id), nil, &out)
	return out, err
}

// ListMerchants pages through merchants (platform key).
func (c *Client) ListMerchants(ctx context.Context, o ListOptions) (Page[Merchant], error) {
	var out Page[Merchant]
	_, err := c.Do(ctx, http.MethodGet, "/v1/merchants"+o.query(nil), nil, &out)
	return out, err
}

// UpdateMerchant changes a merchant (platform key); only the fields set in change are sent.
func (c *Client) UpdateMerchant(ctx context.Context, id string, change map[string]any) (Merchant, error) {
	var out Merchant
	_, err := c.Do(ctx, http.MethodPatch, "/v1/merchants/"+url.PathEscape(id), change, &out)
	return out, err
}

// CreateKey creates an API key for a merchant.
func (c *Client) CreateKey(ctx context.Context, merchantID, name, role string, opts ...Option) (NewKey, error) {
	var out NewKey
	_, err := c.Do(ctx, http.MethodPost, "/v1/merchants/"+url.PathEscape(merchantID)+"/keys",
		map[string]string{"name": name, "role": role}, &out, opts...)
	return out, err
}

// ListKeys pages through a merchant's keys.
func (c *Client) ListKeys(ctx context.Context, merchantID string, o ListOptions) (Page[Key], error) {
	var out Page[Key]
	_, err := c.Do(ctx, http.MethodGet, "/v1/merchants/"+url.PathEscape(merchantID)+"/keys"+o.query(nil), nil, &out)
	return out, err
}

// RevokeKey revokes a key at once.
func (c *Client) RevokeKey(ctx context.Context, merchantID, keyID string) (Key, error) {
	var out Key
	_, err := c.Do(ctx, http.MethodDelete, "/v1/merchants/"+url.PathEscape(merchantID)+"/keys/"+url.PathEscape(keyID), nil, &out)
	return out, err
}

// UserToken is a signed C-end token.
type UserToken struct {
	Token     string    `json:"token"`
	UserID    string    `json:"user_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// IssueUserToken asks perk to sign a user token (integration key).
func (c *Client) IssueUserToken(ctx context.Context, userID string, ttl time.Duration) (UserToken, error) {
	var out UserToken
	_, err := c.Do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(userID)+"/tokens",
		map[string]int{"ttl_seconds": int(ttl.Seconds())}, &out)
	return out, err
}

// Principal describes a credential.
type Principal struct {
	Kind     string `json:"kind"`
	TenantID string `json:"tenant_id"`
	KeyID    string `json:"key_id"`
	Role     string `json:"role"`
	UserID   string `json:"user_id"`
}

// Me describes the calling credential.
func (c *Client) Me(ctx context.Context) (Principal, error) {
	var out struct {
		Principal Principal `json:"principal"`
	}
	_, err := c.Do(ctx, http.MethodGet, "/v1/me", nil, &out)
	return out.Principal, err
}

// Health is the answer of /healthz.
type Health struct {
	Status  string         `json:"status"`
	Version string         `json:"version"`
	Info    map[string]any `json:"info"`
}

// Health reads /healthz.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var out Health
	_, err := c.Do(ctx, http.MethodGet, "/healthz", nil, &out)
	return out, err
}
