package tenant

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"errors"
	"regexp"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// userIDPattern is what a merchant's user id may look like.
var userIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$`)

// ValidUserID reports whether id is an acceptable user id (1–128 characters of A–Z a–z 0–9 _ . : @ -).
func ValidUserID(id string) bool { return userIDPattern.MatchString(id) }

// tokenClaims are the claims perk reads from a user token. aud must be the merchant id.
type tokenClaims struct {
	jwt.RegisteredClaims
}

// IssueUserTokenParams asks for a user token signed with the merchant's HS256 secret.
type IssueUserTokenParams struct {
	TenantID string
	UserID   string
	TTL      time.Duration // default 1h, at most MaxTokenTTL
}

// UserToken is an issued token.
type UserToken struct {
	Token     string    `json:"token"`
	UserID    string    `json:"user_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// IssueUserToken signs a token for one of the merchant's users, for merchants that prefer not to
// sign their own.
func (s *Service) IssueUserToken(ctx context.Context, p IssueUserTokenParams) (UserToken, error) {
	var fs problem.Fields
	if !ValidUserID(p.UserID) {
		fs.Add("path.user_id", "must be 1 to 128 characters of A-Z a-z 0-9 _ . : @ -")
	}
	if p.TTL == 0 {
		p.TTL = time.Hour
	}
	if p.TTL < time.Minute || p.TTL > s.opts.MaxTokenTTL {
		fs.Add("body.ttl_seconds", "must be between 60 and %d", int(s.opts.MaxTokenTTL.Seconds()))
	}
	if err := fs.Err("the token request is invalid"); err != nil {
		return UserToken{}, err
	}
	secret, _, err := s.tokenKeys(ctx, p.TenantID)
	if err != nil {
		return UserToken{}, err
	}
	now := s.opts.Clock.Now()
	exp := now.Add(p.TTL).Truncate(time.Second)
	claims := tokenClaims{jwt.RegisteredClaims{Subject: p.UserID, Audience: jwt.ClaimStrings{p.TenantID},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp), ID: ids.New("tok", now)}}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	return UserToken{Token: signed, UserID: p.UserID, ExpiresAt: exp}, err
}

// tokenKeys returns the merchant's HS256 secret and its EdDSA public key (nil if none).
func (s *Service) tokenKeys(ctx context.Context, tenantID string) (string, ed25519.PublicKey, error) {
	var secret, pub string
	err := s.db.Reader().QueryRow(ctx, `SELECT token_secret, token_public_key FROM tenant_merchants WHERE id = $1`,
		tenantID).Scan(&secret, &pub)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, problem.NotFound("merchant %q not found", tenantID)
	}
	if err != nil || pub == "" {
		return secret, nil, err
	}
	key, err := parsePublicKey(pub)
	return secret, key, err
}

func parsePublicKey(pemText string) (ed25519.PublicKey, error) {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return nil, problem.Invalid("the public key is not PEM").WithField("body.public_key", "not a PEM block")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, problem.Invalid("the public key cannot be parsed").WithField("body.public_key", err.Error())
	}
	ed, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, problem.Invalid("the public key is not Ed25519").WithField("body.public_key", "must be an Ed25519 key")
	}
	return ed, nil
}

// SetTokenPublicKey sets (or, with an empty string, removes) the Ed25519 public key, PEM-encoded
// (PKIX), whose EdDSA-signed user tokens the merchant's users may present.
func (s *Service) SetTokenPublicKey(ctx context.Context, tenantID, pemText string) (Merchant, error) {
	if pemText != "" {
		if _, err := parsePublicKey(pemText); err != nil {
			return Merchant{}, err
		}
	}
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		if _, err := s.merchant(ctx, tx, tenantID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE tenant_merchants SET token_public_key = $2, updated_at = $3 WHERE id = $1`,
			tenantID, pemText, sqldb.Micros(s.opts.Clock.Now()))
		return err
	})
	if err != nil {
		return Merchant{}, err
	}
	return s.GetMerchant(ctx, tenantID)
}

// RotateTokenSecret replaces the merchant's HS256 secret; tokens signed with the old one stop working.
func (s *Service) RotateTokenSecret(ctx context.Context, tenantID string) (string, error) {
	secret := ids.Secret(32)
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		if _, err := s.merchant(ctx, tx, tenantID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE tenant_merchants SET token_secret = $2, updated_at = $3 WHERE id = $1`,
			tenantID, secret, sqldb.Micros(s.opts.Clock.Now()))
		return err
	})
	return secret, err
}

// authenticateToken verifies a user token: HS256 with the merchant's secret or EdDSA with its
// public key; aud names the merchant, sub the user, exp is required.
func (s *Service) authenticateToken(ctx context.Context, bearer string) (Principal, error) {
	var claims tokenClaims
	var tenantID string
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg(), jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithExpirationRequired(), jwt.WithLeeway(s.opts.TokenLeeway), jwt.WithTimeFunc(s.opts.Clock.Now))
	_, err := parser.ParseWithClaims(bearer, &claims, func(t *jwt.Token) (any, error) {
		aud, _ := t.Claims.GetAudience()
		if len(aud) != 1 {
			return nil, errors.New("aud must name exactly one merchant")
		}
		tenantID = aud[0]
		secret, pub, err := s.tokenKeys(ctx, tenantID)
		if err != nil {
			return nil, err
		}
		if t.Method.Alg() == jwt.SigningMethodEdDSA.Alg() {
			if pub == nil {
				return nil, errors.New("the merchant has no EdDSA key")
			}
			return pub, nil
		}
		return []byte(secret), nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Principal{}, problem.Unauthenticated("the user token has expired").WithCode("token-expired")
	case err != nil:
		return Principal{}, errBadCredentials()
	case !ValidUserID(claims.Subject):
		return Principal{}, problem.Unauthenticated("the user token's sub is not a valid user id").WithCode("bad-credentials")
	case claims.ExpiresAt.Sub(s.opts.Clock.Now()) > s.opts.MaxTokenTTL:
		return Principal{}, problem.Unauthenticated("the user token lives longer than allowed").WithCode("bad-credentials")
	}
	if err := s.checkActive(ctx, tenantID); err != nil {
		return Principal{}, err
	}
	return Principal{Kind: PrincipalUser, TenantID: tenantID, UserID: claims.Subject}, nil
}
