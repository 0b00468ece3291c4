package catalog

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// GetParams names a resource by ID, or by Kind and Key.
type GetParams struct {
	TenantID string
	ID       string
	Kind     string
	Key      string
}

// Get returns one resource of the tenant. Another tenant's resource is NotFound.
func (s *Service) Get(ctx context.Context, p GetParams) (Resource, error) {
	if p.ID != "" {
		return loadResource(ctx, s.db.Reader(), p.TenantID, p.ID)
	}
	if p.Kind == "" || p.Key == "" {
		return Resource{}, problem.Invalid("name the resource by id, or by kind and key").
			WithField("id", "is required without kind and key")
	}
	return loadResourceByKey(ctx, s.db.Reader(), p.TenantID, p.Kind, p.Key)
}

// ListParams filters and pages a tenant's resources. Kind and State are optional filters.
type ListParams struct {
	TenantID string
	Kind     string
	State    State
	// Cursor is the Next of the previous page ("" for the first page).
	Cursor string
	// Limit is the page size: 0 means sqldb.DefaultPageLimit, at most sqldb.MaxPageLimit.
	Limit int
}

// List returns a page of the tenant's resources, oldest first.
func (s *Service) List(ctx context.Context, p ListParams) (Page[Resource], error) {
	var fs problem.Fields
	limit := checkLimit(&fs, p.Limit)
	after := decodeCursor(&fs, p.Cursor)
	if p.State != "" && !p.State.valid() {
		fs.Add("state", "must be draft, published or archived")
	}
	if err := fs.Err("invalid list request"); err != nil {
		return Page[Resource]{}, err
	}
	var f filter
	f.add("tenant_id = ?", p.TenantID)
	if p.Kind != "" {
		f.add("kind = ?", p.Kind)
	}
	if p.State != "" {
		f.add("state = ?", string(p.State))
	}
	if after != "" {
		f.add("id > ?", after)
	}
	where, args := f.query("id", limit+1)
	rows, err := s.db.Reader().Query(ctx, `SELECT `+resourceColumns+` FROM catalog_resources`+where, args...)
	if err != nil {
		return Page[Resource]{}, fmt.Errorf("catalog: list: %w", err)
	}
	items, err := collect(rows, scanResource)
	if err != nil {
		return Page[Resource]{}, fmt.Errorf("catalog: list: %w", err)
	}
	return paginate(items, limit, func(r Resource) string { return r.ID }), nil
}

// VersionsParams pages a resource's versions.
type VersionsParams struct {
	TenantID string
	ID       string
	Cursor   string
	Limit    int
}

// Versions returns a page of a resource's versions, newest first.
func (s *Service) Versions(ctx context.Context, p VersionsParams) (Page[Version], error) {
	var fs problem.Fields
	limit := checkLimit(&fs, p.Limit)
	before := int(decodeSeqCursor(&fs, p.Cursor))
	if err := fs.Err("invalid versions request"); err != nil {
		return Page[Version]{}, err
	}
	r, err := loadResource(ctx, s.db.Reader(), p.TenantID, p.ID)
	if err != nil {
		return Page[Version]{}, err
	}
	var f filter
	f.add("resource_id = ?", r.ID)
	if before > 0 {
		f.add("version < ?", before)
	}
	where, args := f.query("version DESC", limit+1)
	rows, err := s.db.Reader().Query(ctx, `SELECT `+versionColumns+` FROM catalog_versions`+where, args...)
	if err != nil {
		return Page[Version]{}, fmt.Errorf("catalog: versions: %w", err)
	}
	items, err := collect(rows, scanVersion)
	if err != nil {
		return Page[Version]{}, fmt.Errorf("catalog: versions: %w", err)
	}
	return paginate(items, limit, func(v Version) string { return strconv.Itoa(v.Version) }), nil
}

// VersionParams names one version of a resource.
type VersionParams struct {
	TenantID string
	ID       string
	Version  int
}

// Version returns one version of a resource of the tenant.
func (s *Service) Version(ctx context.Context, p VersionParams) (Version, error) {
	r, err := loadResource(ctx, s.db.Reader(), p.TenantID, p.ID)
	if err != nil {
		return Version{}, err
	}
	return loadVersion(ctx, s.db.Reader(), r.ID, p.Version)
}

// AuditParams filters and pages a tenant's audit trail. Every filter is optional; the time range
// is [From, To).
type AuditParams struct {
	TenantID   string
	ResourceID string
	Kind       string
	Actor      string
	From       time.Time
	To         time.Time
	Cursor     string
	Limit      int
}

// Audit returns a page of the tenant's audit trail, newest first.
func (s *Service) Audit(ctx context.Context, p AuditParams) (Page[AuditEntry], error) {
	var fs problem.Fields
	limit := checkLimit(&fs, p.Limit)
	before := decodeSeqCursor(&fs, p.Cursor)
	if !p.From.IsZero() && !p.To.IsZero() && !p.From.Before(p.To) {
		fs.Add("to", "must be after from")
	}
	if err := fs.Err("invalid audit request"); err != nil {
		return Page[AuditEntry]{}, err
	}
	var f filter
	f.add("tenant_id = ?", p.TenantID)
	for _, c := range []struct{ cond, val string }{
		{"resource_id = ?", p.ResourceID}, {"kind = ?", p.Kind}, {"actor = ?", p.Actor},
	} {
		if c.val != "" {
			f.add(c.cond, c.val)
		}
	}
	if before > 0 {
		f.add("seq < ?", before)
	}
	if !p.From.IsZero() {
		f.add("at >= ?", sqldb.Micros(p.From))
	}
	if !p.To.IsZero() {
		f.add("at < ?", sqldb.Micros(p.To))
	}
	where, args := f.query("seq DESC", limit+1)
	rows, err := s.db.Reader().Query(ctx, `SELECT seq, `+auditColumns+` FROM catalog_audit`+where, args...)
	if err != nil {
		return Page[AuditEntry]{}, fmt.Errorf("catalog: audit: %w", err)
	}
	items, err := collect(rows, scanAudit)
	if err != nil {
		return Page[AuditEntry]{}, fmt.Errorf("catalog: audit: %w", err)
	}
	return paginate(items, limit, func(e AuditEntry) string { return strconv.FormatInt(e.Seq, 10) }), nil
}

// rows is what collect reads (a *sql.Rows).
type rows interface {
	scanner
	Next() bool
	Err() error
	Close() error
}

func collect[T any](rs rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rs.Close()
	var out []T
	for rs.Next() {
		item, err := scan(rs)
		if err != nil {
			return nil, err
		}
		out = append(out, item)
	}
	return out, rs.Err()
}

// paginate trims a limit+1 result to a page and sets the cursor when there is more.
func paginate[T any](items []T, limit int, key func(T) string) Page[T] {
	if len(items) <= limit {
		if items == nil {
			items = []T{}
		}
		return Page[T]{Items: items}
	}
	items = items[:limit]
	return Page[T]{Items: items, Next: sqldb.EncodeCursor(key(items[limit-1]))}
}

func checkLimit(fs *problem.Fields, limit int) int {
	if limit < 0 || limit > sqldb.MaxPageLimit {
		fs.Add("limit", "must be between 1 and %d", sqldb.MaxPageLimit)
	}
	return sqldb.PageLimit(limit)
}

// decodeCursor returns the key a cursor carries ("" for no cursor), recording a problem when it is
// not one of ours.
func decodeCursor(fs *problem.Fields, cursor string) string {
	parts, err := sqldb.DecodeCursor(cursor, 1)
	if err != nil || (cursor != "" && parts[0] == "") {
		fs.Add("cursor", "is not a cursor this list returned")
		return ""
	}
	if len(parts) == 0 {
		return ""
	}
	return parts[0]
}

// decodeSeqCursor returns the number a cursor carries (0 for no cursor).
func decodeSeqCursor(fs *problem.Fields, cursor string) int64 {
	key := decodeCursor(fs, cursor)
	if key == "" {
		return 0
	}
	n, err := strconv.ParseInt(key, 10, 64)
	if err != nil || n < 1 {
		fs.Add("cursor", "is not a cursor this list returned")
		return 0
	}
	return n
}
