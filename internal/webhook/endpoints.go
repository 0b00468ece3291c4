package webhook

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// Limits on endpoint fields.
const (
	MaxURLLength         = 2048
	MaxDescriptionLength = 500
	MaxEventTypes        = 64
	MaxReasonLength      = 500
)

var (
	exactType    = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`)
	wildcardType = regexp.MustCompile(`^([a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.)?\*$`)
)

// CreateEndpointParams describes a new endpoint.
type CreateEndpointParams struct {
	TenantID    string
	URL         string
	Description string
	// EventTypes are exact types ("grant.succeeded") or wildcards: "grant.*" matches every type that
	// starts with "grant.", "*" matches everything. At least one.
	EventTypes []string
	// Disabled creates the endpoint disabled (it receives nothing until enabled).
	Disabled bool
}

// CreateEndpoint creates an endpoint with a fresh signing secret, returned once.
func (s *Service) CreateEndpoint(ctx context.Context, p CreateEndpointParams) (NewEndpoint, error) {
	var fs problem.Fields
	validateURL(&fs, "body.url", p.URL)
	validateDescription(&fs, "body.description", p.Description)
	types := validateEventTypes(&fs, "body.event_types", p.EventTypes)
	if err := fs.Err("the webhook endpoint is invalid"); err != nil {
		return NewEndpoint{}, err
	}
	now := s.opts.Clock.Now()
	e := Endpoint{ID: ids.New(endpointPrefix, now), TenantID: p.TenantID, URL: p.URL, Description: p.Description,
		EventTypes: types, Enabled: !p.Disabled, CreatedAt: now, UpdatedAt: now}
	if p.Disabled {
		e.DisabledReason, e.DisabledAt = "created disabled", &now
	}
	secret := newSecret()
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM webhook_endpoints WHERE tenant_id = $1`, p.TenantID).Scan(&n); err != nil {
			return err
		}
		if n >= s.opts.MaxEndpoints {
			return problem.Conflict("a merchant may have at most %d webhook endpoints", s.opts.MaxEndpoints).
				WithCode(CodeEndpointLimit)
		}
		typesJSON, _ := json.Marshal(e.EventTypes)
		_, err := tx.Exec(ctx, `INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, enabled,
			disabled_reason, disabled_at, secret, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)`,
			e.ID, e.TenantID, e.URL, e.Description, string(typesJSON), e.Enabled, e.DisabledReason, microsPtr(e.DisabledAt),
			secret, sqldb.Micros(now))
		return err
	})
	if err != nil {
		return NewEndpoint{}, err
	}
	return NewEndpoint{Endpoint: e, Secret: secret}, nil
}

func validateURL(fs *problem.Fields, path, raw string) {
	if raw == "" {
		fs.Add(path, "is required")
		return
	}
	if len(raw) > MaxURLLength {
		fs.Add(path, "must be at most %d bytes", MaxURLLength)
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || strings.ContainsAny(raw, " \t\r\n"):
		fs.Add(path, "is not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		fs.Add(path, "must be an http or https URL")
	case u.Host == "" || u.Hostname() == "":
		fs.Add(path, "must name a host")
	}
}

func validateDescription(fs *problem.Fields, path, d string) {
	if utf8.RuneCountInString(d) > MaxDescriptionLength || !utf8.ValidString(d) {
		fs.Add(path, "must be at most %d characters of UTF-8", MaxDescriptionLength)
	}
}

// validateEventTypes checks the filters and returns them without duplicates, in their order.
func validateEventTypes(fs *problem.Fields, path string, types []string) []string {
	if len(types) == 0 {
		fs.Add(path, "must list at least one event type (\"*\" for all)")
		return nil
	}
	if len(types) > MaxEventTypes {
		fs.Add(path, "must list at most %d event types", MaxEventTypes)
		return nil
	}
	out := make([]string, 0, len(types))
	seen := map[string]bool{}
	for i, t := range types {
		if len(t) > 128 || (!exactType.MatchString(t) && !wildcardType.MatchString(t)) {
			fs.Add(fmt.Sprintf("%s[%d]", path, i),
				"must be an event type like \"grant.succeeded\", a wildcard like \"grant.*\", or \"*\"")
			continue
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// matches reports whether an event type passes an endpoint's filters.
func matches(filters []string, eventType string) bool {
	for _, f := range filters {
		if f == "*" || f == eventType {
			return true
		}
		if prefix, ok := strings.CutSuffix(f, "*"); ok && strings.HasPrefix(eventType, prefix) {
			return true
		}
	}
	return false
}

const endpointColumns = `id, tenant_id, url, description, event_types, enabled, disabled_reason, disabled_at,
	previous_secret_until, created_at, updated_at`

func scanEndpoint(row interface{ Scan(...any) error }, now time.Time) (Endpoint, error) {
	var (
		e                       Endpoint
		types                   string
		disabledAt              sql.NullInt64
		prevUntil, created, upd int64
	)
	err := row.Scan(&e.ID, &e.TenantID, &e.URL, &e.Description, &types, &e.Enabled, &e.DisabledReason,
		&disabledAt, &prevUntil, &created, &upd)
	if err != nil {
		return Endpoint{}, err
	}
	if err := json.Unmarshal([]byte(types), &e.EventTypes); err != nil {
		return Endpoint{}, fmt.Errorf("webhook: endpoint %s has bad event types: %w", e.ID, err)
	}
	e.DisabledAt = timePtr(disabledAt)
	if prevUntil > sqldb.Micros(now) {
		t := sqldb.FromMicros(prevUntil)
		e.PreviousSecretUntil = &t
	}
	e.CreatedAt, e.UpdatedAt = sqldb.FromMicros(created), sqldb.FromMicros(upd)
	return e, nil
}

func (s *Service) endpoint(ctx context.Context, q sqldb.Querier, tenantID, id string) (Endpoint, error) {
	e, err := scanEndpoint(q.QueryRow(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints
		WHERE tenant_id = $1 AND id = $2`, tenantID, id), s.opts.Clock.Now())
	if errors.Is(err, sql.ErrNoRows) {
		return Endpoint{}, endpointNotFound(id)
	}
	return e, err
}

func endpointNotFound(id string) error {
	return problem.NotFound("webhook endpoint %q not found", id).WithCode(CodeEndpointNotFound)
}

// GetEndpoint returns one of a merchant's endpoints.
func (s *Service) GetEndpoint(ctx context.Context, tenantID, id string) (Endpoint, error) {
	return s.endpoint(ctx, s.db.Reader(), tenantID, id)
}

// ListParams pages through a list.
type ListParams struct {
	Cursor string
	Limit  int
}

// ListEndpoints pages through a merchant's endpoints, oldest first.
func (s *Service) ListEndpoints(ctx context.Context, tenantID string, p ListParams) (Page[Endpoint], error) {
	after, limit, err := pageArgs(p.Cursor, p.Limit)
	if err != nil {
		return Page[Endpoint]{}, err
	}
	rows, err := s.db.Reader().Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints
		WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`, tenantID, after, limit+1)
	if err != nil {
		return Page[Endpoint]{}, err
	}
	defer rows.Close()
	now := s.opts.Clock.Now()
	var items []Endpoint
	for rows.Next() {
		e, err := scanEndpoint(rows, now)
		if err != nil {
			return Page[Endpoint]{}, err
		}
		items = append(items, e)
	}
	if err := rows.Err(); err != nil {
		return Page[Endpoint]{}, err
	}
	return paginate(items, limit, func(e Endpoint) string { return e.ID }), nil
}

// UpdateEndpointParams changes an endpoint; nil fields stay as they are.
type UpdateEndpointParams struct {
	TenantID    string
	ID          string
	URL         *string
	Description *string
	// EventTypes replaces the filters (nil: unchanged; empty: invalid).
	EventTypes []string
	// Enabled enables or disables the endpoint. Disabling cancels its pending deliveries.
	Enabled *bool
	// DisabledReason is recorded when the endpoint is (or stays) disabled; default "disabled by the merchant".
	DisabledReason *string
}

// UpdateEndpoint changes an endpoint's URL, description, filters or state.
func (s *Service) UpdateEndpoint(ctx context.Context, p UpdateEndpointParams) (Endpoint, error) {
	var fs problem.Fields
	if p.URL != nil {
		validateURL(&fs, "body.url", *p.URL)
	}
	if p.Description != nil {
		validateDescription(&fs, "body.description", *p.Description)
	}
	if p.EventTypes != nil {
		p.EventTypes = validateEventTypes(&fs, "body.event_types", p.EventTypes)
	}
	if p.DisabledReason != nil && (utf8.RuneCountInString(*p.DisabledReason) > MaxReasonLength || !utf8.ValidString(*p.DisabledReason)) {
		fs.Add("body.disabled_reason", "must be at most %d characters of UTF-8", MaxReasonLength)
	}
	if err := fs.Err("the webhook endpoint change is invalid"); err != nil {
		return Endpoint{}, err
	}
	var (
		e        Endpoint
		disabled bool
	)
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		if e, err = s.endpoint(ctx, tx, p.TenantID, p.ID); err != nil {
			return err
		}
		now := s.opts.Clock.Now()
		wasEnabled := e.Enabled
		applyUpdate(&e, p, now)
		disabled = wasEnabled && !e.Enabled
		typesJSON, _ := json.Marshal(e.EventTypes)
		_, err = tx.Exec(ctx, `UPDATE webhook_endpoints SET url = $3, description = $4, event_types = $5, enabled = $6,
			disabled_reason = $7, disabled_at = $8, updated_at = $9 WHERE tenant_id = $1 AND id = $2`,
			e.TenantID, e.ID, e.URL, e.Description, string(typesJSON), e.Enabled, e.DisabledReason,
			microsPtr(e.DisabledAt), sqldb.Micros(now))
		if err != nil || !disabled {
			return err
		}
		return cancelPending(ctx, tx, e.TenantID, e.ID, "endpoint disabled: "+e.DisabledReason, now)
	})
	if err == nil && disabled {
		s.metrics.disabled.WithLabelValues("manual").Inc()
	}
	return e, err
}

func applyUpdate(e *Endpoint, p UpdateEndpointParams, now time.Time) {
	if p.URL != nil {
		e.URL = *p.URL
	}
	if p.Description != nil {
		e.Description = *p.Description
	}
	if p.EventTypes != nil {
		e.EventTypes = p.EventTypes
	}
	if p.Enabled != nil && *p.Enabled != e.Enabled {
		e.Enabled = *p.Enabled
		if e.Enabled {
			e.DisabledReason, e.DisabledAt = "", nil
		} else {
			e.DisabledReason, e.DisabledAt = "disabled by the merchant", &now
		}
	}
	if !e.Enabled && p.DisabledReason != nil && *p.DisabledReason != "" {
		e.DisabledReason = *p.DisabledReason
	}
	e.UpdatedAt = now
}

// cancelPending cancels an endpoint's deliveries that are waiting for an attempt.
func cancelPending(ctx context.Context, tx *sqldb.Tx, tenantID, endpointID, reason string, now time.Time) error {
	_, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET state = 'canceled', last_error = $3, finished_at = $4,
		updated_at = $4 WHERE tenant_id = $1 AND endpoint_id = $2 AND state IN ('pending', 'retrying')`,
		tenantID, endpointID, truncate(reason, 1000), sqldb.Micros(now))
	return err
}

// DeleteEndpoint deletes an endpoint with its deliveries and their log.
func (s *Service) DeleteEndpoint(ctx context.Context, tenantID, id string) error {
	return s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		if _, err := s.endpoint(ctx, tx, tenantID, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM webhook_attempts WHERE tenant_id = $1 AND delivery_id IN (
			SELECT id FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2)`, tenantID, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2`,
			tenantID, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2`, tenantID, id)
		return err
	})
}

// RotateSecretParams names the endpoint whose secret to replace.
type RotateSecretParams struct {
	TenantID string
	ID       string
	// Grace is how long the current secret keeps signing deliveries, next to the new one (nil: the
	// service's default, 24h; 0: the old secret stops at once). A secret rotated out earlier, still
	// in its grace period, stops at once: at most two secrets sign a delivery.
	Grace *time.Duration
}

// RotateSecret replaces an endpoint's signing secret and returns the new one, once.
func (s *Service) RotateSecret(ctx context.Context, p RotateSecretParams) (NewSecret, error) {
	grace := s.opts.DefaultGrace
	if p.Grace != nil {
		grace = *p.Grace
	}
	if grace < 0 || grace > s.opts.MaxGrace {
		return NewSecret{}, problem.Invalid("the grace period is out of range").
			WithField("body.grace_seconds", fmt.Sprintf("must be between 0 and %d", int64(s.opts.MaxGrace/time.Second)))
	}
	secret := newSecret()
	var e Endpoint
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		if _, err := s.endpoint(ctx, tx, p.TenantID, p.ID); err != nil {
			return err
		}
		now := s.opts.Clock.Now()
		_, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = $3,
			secret = $4, updated_at = $5 WHERE tenant_id = $1 AND id = $2`,
			p.TenantID, p.ID, sqldb.Micros(now.Add(grace)), secret, sqldb.Micros(now))
		if err != nil {
			return err
		}
		e, err = s.endpoint(ctx, tx, p.TenantID, p.ID)
		return err
	})
	if err != nil {
		return NewSecret{}, err
	}
	return NewSecret{Endpoint: e, Secret: secret}, nil
}

func pageArgs(cursor string, limit int) (after string, n int, err error) {
	parts, err := sqldb.DecodeCursor(cursor, 1)
	if err != nil {
		return "", 0, problem.Invalid("the cursor is not one this API returned").WithField("query.cursor", "malformed")
	}
	if limit < 0 || limit > sqldb.MaxPageLimit {
		return "", 0, problem.Invalid("limit out of range").
			WithField("query.limit", fmt.Sprintf("must be between 1 and %d", sqldb.MaxPageLimit))
	}
	if len(parts) == 1 {
		after = parts[0]
	}
	return after, sqldb.PageLimit(limit), nil
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

func microsPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return sqldb.Micros(*t)
}

func timePtr(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := sqldb.FromMicros(v.Int64)
	return &t
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
