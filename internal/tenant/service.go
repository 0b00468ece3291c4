package tenant

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// Options configures the service.
type Options struct {
	Clock clock.Clock
	// TouchInterval is how often a key's last-used time is written at most (default 1m).
	TouchInterval time.Duration
	// TokenLeeway is the clock skew tolerated on user tokens (default 30s).
	TokenLeeway time.Duration
	// MaxTokenTTL is the longest lifetime a user token may have (default 30 days).
	MaxTokenTTL time.Duration
	// KeyCacheTTL is how long a verified API key is remembered in memory, so that a stream of
	// requests does not read the key and its merchant on every one (default 2s; negative turns the
	// cache off). It bounds how long a key revoked, or a merchant suspended, on another node keeps
	// working on this one; on the node that made the change it takes effect at once.
	KeyCacheTTL time.Duration
	Logger      *slog.Logger
}

// Service manages merchants, keys and tokens.
type Service struct {
	db   *sqldb.DB
	opts Options

	touchMu sync.Mutex
	touched map[string]time.Time // key id → last time we wrote last_used_at

	keys     keyCache
	userVars userVarsCache
}

// New returns a tenant service over db.
func New(db *sqldb.DB, opts Options) *Service {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.TouchInterval <= 0 {
		opts.TouchInterval = time.Minute
	}
	if opts.KeyCacheTTL == 0 {
		opts.KeyCacheTTL = 2 * time.Second
	}
	if opts.TokenLeeway <= 0 {
		opts.TokenLeeway = 30 * time.Second
	}
	if opts.MaxTokenTTL <= 0 {
		opts.MaxTokenTTL = 30 * 24 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Service{db: db, opts: opts, touched: map[string]time.Time{}}
}

// CreateMerchantParams describes a new merchant.
type CreateMerchantParams struct {
	Name     string
	TimeZone string // IANA name; default "UTC"
	Actor    string // who creates it, for the audit fields
}

// NewMerchant is a created merchant with its first admin key and its user-token secret, both shown once.
type NewMerchant struct {
	Merchant    Merchant `json:"merchant"`
	AdminKey    NewKey   `json:"admin_key"`
	TokenSecret string   `json:"user_token_secret"`
}

// NewKey is a created key with its secret, shown once.
type NewKey struct {
	Key    Key    `json:"key"`
	Secret string `json:"secret"`
}

var namePattern = regexp.MustCompile(`^[^\x00-\x1f]{1,100}$`)

func validateName(fs *problem.Fields, path, name string) {
	if strings.TrimSpace(name) == "" || !namePattern.MatchString(name) || utf8.RuneCountInString(name) > 100 {
		fs.Add(path, "must be 1 to 100 printable characters")
	}
}

func validateTimeZone(fs *problem.Fields, path, tz string) {
	if _, err := time.LoadLocation(tz); err != nil || tz == "" || tz == "Local" {
		fs.Add(path, "unknown IANA time zone %q", tz)
	}
}

// CreateMerchant creates a merchant, its first admin key and its user-token secret.
func (s *Service) CreateMerchant(ctx context.Context, p CreateMerchantParams) (NewMerchant, error) {
	if p.TimeZone == "" {
		p.TimeZone = "UTC"
	}
	var fs problem.Fields
	validateName(&fs, "body.name", p.Name)
	validateTimeZone(&fs, "body.time_zone", p.TimeZone)
	if err := fs.Err("the merchant is invalid"); err != nil {
		return NewMerchant{}, err
	}
	now := s.opts.Clock.Now()
	m := Merchant{ID: ids.New("mch", now), Name: p.Name, TimeZone: p.TimeZone, Status: StatusActive,
		CreatedAt: now, UpdatedAt: now}
	out := NewMerchant{Merchant: m, TokenSecret: ids.Secret(32)}
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO tenant_merchants
			(id, name, time_zone, status, token_secret, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)`,
			m.ID, m.Name, m.TimeZone, m.Status, out.TokenSecret, sqldb.Micros(now))
		if err != nil {
			return err
		}
		out.AdminKey, err = s.insertKey(ctx, tx, m.ID, "admin", RoleAdmin, p.Actor)
		return err
	})
	return out, err
}

// UpdateMerchantParams changes a merchant; nil fields stay as they are.
type UpdateMerchantParams struct {
	ID       string
	Name     *string
	TimeZone *string
	Status   *MerchantStatus
}

// UpdateMerchant changes a merchant's name, time zone or status.
func (s *Service) UpdateMerchant(ctx context.Context, p UpdateMerchantParams) (Merchant, error) {
	var fs problem.Fields
	if p.Name != nil {
		validateName(&fs, "body.name", *p.Name)
	}
	if p.TimeZone != nil {
		validateTimeZone(&fs, "body.time_zone", *p.TimeZone)
	}
	if p.Status != nil && *p.Status != StatusActive && *p.Status != StatusSuspended {
		fs.Add("body.status", "must be active or suspended")
	}
	if err := fs.Err("the merchant change is invalid"); err != nil {
		return Merchant{}, err
	}
	var m Merchant
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		if m, err = s.merchant(ctx, tx, p.ID); err != nil {
			return err
		}
		if p.Name != nil {
			m.Name = *p.Name
		}
		if p.TimeZone != nil {
			m.TimeZone = *p.TimeZone
		}
		if p.Status != nil {
			m.Status = *p.Status
		}
		m.UpdatedAt = s.opts.Clock.Now()
		_, err = tx.Exec(ctx, `UPDATE tenant_merchants SET name = $2, time_zone = $3, status = $4, updated_at = $5
			WHERE id = $1`, m.ID, m.Name, m.TimeZone, m.Status, sqldb.Micros(m.UpdatedAt))
		return err
	})
	if err == nil && p.Status != nil {
		s.keys.dropTenant(m.ID)
	}
	return m, err
}

const merchantColumns = `id, name, time_zone, status, token_public_key <> '', created_at, updated_at`

func scanMerchant(row interface{ Scan(...any) error }) (Merchant, error) {
	var m Merchant
	var created, updated int64
	err := row.Scan(&m.ID, &m.Name, &m.TimeZone, &m.Status, &m.HasTokenPublicKey, &created, &updated)
	m.CreatedAt, m.UpdatedAt = sqldb.FromMicros(created), sqldb.FromMicros(updated)
	return m, err
}

func (s *Service) merchant(ctx context.Context, q sqldb.Querier, id string) (Merchant, error) {
	m, err := scanMerchant(q.QueryRow(ctx, `SELECT `+merchantColumns+` FROM tenant_merchants WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Merchant{}, problem.NotFound("merchant %q not found", id)
	}
	return m, err
}

// GetMerchant returns one merchant.
func (s *Service) GetMerchant(ctx context.Context, id string) (Merchant, error) {
	return s.merchant(ctx, s.db.Reader(), id)
}

// ListParams pages through a list.
type ListParams struct {
	Cursor string
	Limit  int
}

// Page is one page of a list; Next is empty on the last page.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next_cursor,omitempty"`
}

// ListMerchants pages through every merchant in id order.
func (s *Service) ListMerchants(ctx context.Context, p ListParams) (Page[Merchant], error) {
	after, limit, err := pageArgs(p)
	if err != nil {
		return Page[Merchant]{}, err
	}
	rows, err := s.db.Reader().Query(ctx, `SELECT `+merchantColumns+` FROM tenant_merchants
		WHERE id > $1 ORDER BY id LIMIT $2`, after, limit+1)
	if err != nil {
		return Page[Merchant]{}, err
	}
	defer rows.Close()
	var items []Merchant
	for rows.Next() {
		m, err := scanMerchant(rows)
		if err != nil {
			return Page[Merchant]{}, err
		}
		items = append(items, m)
	}
	if err := rows.Err(); err != nil {
		return Page[Merchant]{}, err
	}
	return paginate(items, limit, func(m Merchant) string { return m.ID }), nil
}

func pageArgs(p ListParams) (after string, limit int, err error) {
	parts, err := sqldb.DecodeCursor(p.Cursor, 1)
	if err != nil {
		return "", 0, problem.Invalid("the cursor is not one this API returned").WithField("query.cursor", "malformed")
	}
	if p.Limit < 0 || p.Limit > sqldb.MaxPageLimit {
		return "", 0, problem.Invalid("limit out of range").
			WithField("query.limit", fmt.Sprintf("must be between 1 and %d", sqldb.MaxPageLimit))
	}
	if len(parts) == 1 {
		after = parts[0]
	}
	return after, sqldb.PageLimit(p.Limit), nil
}

func paginate[T any](items []T, limit int, key func(T) string) Page[T] {
	if items == nil {
		items = []T{}
	}
	if len(items) <= limit {
		return Page[T]{Items: items}
	}
	items = items[:limit]
	return Page[T]{Items: items, Next: sqldb.EncodeCursor(key(items[limit-1]))}
}

// hashSecret is how key secrets are stored: they are 256-bit random strings, so a plain SHA-256 is enough.
func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func equalHash(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
