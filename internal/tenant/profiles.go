package tenant

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/rules"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// Profile is what a merchant tells perk about one of its users: free attributes and tags. Task
// audiences and trigger filters and coupon conditions see them as user.attributes and user.tags
// (and user.id).
type Profile struct {
	UserID     string         `json:"user_id"`
	Attributes map[string]any `json:"attributes"`
	Tags       []string       `json:"tags"`
	UpdatedAt  *time.Time     `json:"updated_at,omitempty"`
}

// Limits of a profile.
const (
	MaxProfileBytes = 16 << 10
	MaxProfileTags  = 100
)

var tagPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:-]{0,63}$`)

// SetProfileParams replaces a user's profile.
type SetProfileParams struct {
	TenantID   string
	UserID     string
	Attributes map[string]any
	Tags       []string
}

// SetProfile replaces a user's attributes and tags (tags are de-duplicated and sorted). Attributes
// must be a JSON object of at most 16 KiB; tags at most 100 lower-case slugs.
func (s *Service) SetProfile(ctx context.Context, p SetProfileParams) (Profile, error) {
	var fs problem.Fields
	if !ValidUserID(p.UserID) {
		fs.Add("user_id", "must be 1 to 128 of A-Z a-z 0-9 _ . : @ -, starting with a letter or digit")
	}
	if p.Attributes == nil {
		p.Attributes = map[string]any{}
	}
	attrs, err := json.Marshal(p.Attributes)
	if err != nil || len(attrs) > MaxProfileBytes {
		fs.Add("attributes", "must be a JSON object of at most %d bytes", MaxProfileBytes)
	}
	tags := slices.Clone(p.Tags)
	slices.Sort(tags)
	tags = slices.Compact(tags)
	if len(tags) > MaxProfileTags {
		fs.Add("tags", "at most %d tags", MaxProfileTags)
	}
	for i, t := range p.Tags {
		if !tagPattern.MatchString(t) {
			fs.Add(fmt.Sprintf("tags[%d]", i), "must be a lower-case slug of at most 64 characters (a-z 0-9 _ . : -)")
		}
	}
	if err := fs.Err("invalid profile"); err != nil {
		return Profile{}, err
	}
	if tags == nil {
		tags = []string{}
	}
	rawTags, _ := json.Marshal(tags)
	now := sqldb.FromMicros(sqldb.Micros(s.opts.Clock.Now()))
	err = s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO tenant_user_profiles (tenant_id, user_id, attributes, tags, updated_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, user_id)
			DO UPDATE SET attributes = excluded.attributes, tags = excluded.tags, updated_at = excluded.updated_at`,
			p.TenantID, p.UserID, string(attrs), string(rawTags), sqldb.Micros(now))
		tx.AfterCommit(func() { s.userVars.drop(p.TenantID, p.UserID) })
		return err
	})
	if err != nil {
		return Profile{}, err
	}
	return Profile{UserID: p.UserID, Attributes: p.Attributes, Tags: tags, UpdatedAt: &now}, nil
}

// Profile returns a user's profile; a user the merchant never described has an empty one.
func (s *Service) Profile(ctx context.Context, tenantID, userID string) (Profile, error) {
	if !ValidUserID(userID) {
		return Profile{}, problem.Invalid("invalid user id").WithField("user_id", "not a valid user id")
	}
	var attrs, tags string
	var updated int64
	err := s.db.Reader().QueryRow(ctx, `SELECT attributes, tags, updated_at FROM tenant_user_profiles
		WHERE tenant_id = $1 AND user_id = $2`, tenantID, userID).Scan(&attrs, &tags, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Profile{UserID: userID, Attributes: map[string]any{}, Tags: []string{}}, nil
	}
	if err != nil {
		return Profile{}, err
	}
	p := Profile{UserID: userID}
	// Rules compare numbers as CEL ints where they are integral: decode as the rules do.
	decoded, err := rules.DecodeJSON([]byte(attrs))
	if err != nil {
		return Profile{}, err
	}
	var ok bool
	if p.Attributes, ok = decoded.(map[string]any); !ok {
		return Profile{}, fmt.Errorf("tenant: profile of %s: attributes are not an object", userID)
	}
	if err := json.Unmarshal([]byte(tags), &p.Tags); err != nil {
		return Profile{}, err
	}
	at := sqldb.FromMicros(updated)
	p.UpdatedAt = &at
	return p, nil
}

// UserVars is the `user` that rules see: {"id", "attributes", "tags"}.
func (p Profile) UserVars() map[string]any {
	tags := make([]any, len(p.Tags))
	for i, t := range p.Tags {
		tags[i] = t
	}
	return map[string]any{"id": p.UserID, "attributes": p.Attributes, "tags": tags}
}
