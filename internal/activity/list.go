package activity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// ListParams filters and pages a tenant's activity. Every filter but TenantID is optional.
type ListParams struct {
	TenantID string
	// UserID keeps one user's records.
	UserID string
	// Type is an event type ("grant.succeeded"), or a prefix ending in ".*" ("grant.*" matches
	// "grant.succeeded" and "grant.step.failed", not "grantee.x").
	Type string
	// SourceKind and SourceID keep the records about one kind of object, or one object.
	SourceKind string
	SourceID   string
	// From and To bound the event time: [From, To).
	From time.Time
	To   time.Time
	// Cursor is the Next of the previous page ("" for the first page).
	Cursor string
	// Limit is the page size: 0 means sqldb.DefaultPageLimit, at most sqldb.MaxPageLimit.
	Limit int
}

var typePrefixPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.\*$`)

// List returns a page of a tenant's records, newest first (by event time, then id). The cursor
// holds the last record's (occurred_at, id), so walking the pages while records are added never
// repeats or skips a record that existed when the walk began.
func (s *Service) List(ctx context.Context, p ListParams) (Page, error) {
	if p.TenantID == "" {
		return Page{}, errors.New("activity: list: no tenant")
	}
	var fs problem.Fields
	limit := checkLimit(&fs, p.Limit)
	before, beforeID := decodeCursor(&fs, p.Cursor)
	checkFilters(&fs, p)
	if err := fs.Err("invalid activity search"); err != nil {
		return Page{}, err
	}
	var f filter
	f.add("tenant_id = ?", p.TenantID)
	if p.UserID != "" {
		f.add("user_id = ?", p.UserID)
	}
	switch {
	case strings.HasSuffix(p.Type, ".*"):
		// A byte range: "grant." <= type < "grant/" ('/' follows '.'), which an index serves.
		prefix := strings.TrimSuffix(p.Type, "*")
		f.add("type >= ?", prefix)
		f.add("type < ?", strings.TrimSuffix(prefix, ".")+"/")
	case p.Type != "":
		f.add("type = ?", p.Type)
	}
	if p.SourceKind != "" {
		f.add("source_kind = ?", p.SourceKind)
	}
	if p.SourceID != "" {
		f.add("source_id = ?", p.SourceID)
	}
	if !p.From.IsZero() {
		f.add("occurred_at >= ?", sqldb.Micros(p.From))
	}
	if !p.To.IsZero() {
		f.add("occurred_at < ?", sqldb.Micros(p.To))
	}
	if beforeID != "" {
		f.add2("(occurred_at, id) < (?, ?)", before, beforeID)
	}
	query, args := f.query(limit + 1)
	rows, err := s.db.Replica().Query(ctx, query, args...)
	if err != nil {
		return Page{}, fmt.Errorf("activity: list: %w", err)
	}
	items, err := collect(rows)
	if err != nil {
		return Page{}, fmt.Errorf("activity: list: %w", err)
	}
	return paginate(items, limit), nil
}

func checkFilters(fs *problem.Fields, p ListParams) {
	if p.Type != "" && !eventTypePattern.MatchString(p.Type) && !typePrefixPattern.MatchString(p.Type) {
		fs.Add("type", "must be an event type (grant.succeeded) or a prefix ending in .* (grant.*)")
	}
	for _, c := range []struct {
		name, value string
		max         int
	}{{"user_id", p.UserID, maxIDLen}, {"source_kind", p.SourceKind, maxIDLen}, {"source_id", p.SourceID, maxSourceLen}} {
		if len(c.value) > c.max {
			fs.Add(c.name, "must be at most %d bytes", c.max)
		}
	}
	if !p.From.IsZero() && !p.To.IsZero() && !p.From.Before(p.To) {
		fs.Add("to", "must be after from")
	}
}

func checkLimit(fs *problem.Fields, limit int) int {
	if limit < 0 || limit > sqldb.MaxPageLimit {
		fs.Add("limit", "must be between 1 and %d", sqldb.MaxPageLimit)
	}
	return sqldb.PageLimit(limit)
}

// decodeCursor returns the (occurred_at, id) a cursor carries; id is "" for no cursor.
func decodeCursor(fs *problem.Fields, cursor string) (int64, string) {
	parts, err := sqldb.DecodeCursor(cursor, 2)
	if err != nil {
		fs.Add("cursor", "is not a cursor this list returned")
		return 0, ""
	}
	if len(parts) == 0 {
		return 0, ""
	}
	at, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || parts[1] == "" {
		fs.Add("cursor", "is not a cursor this list returned")
		return 0, ""
	}
	return at, parts[1]
}

func paginate(items []Record, limit int) Page {
	if len(items) <= limit {
		if items == nil {
			items = []Record{}
		}
		return Page{Items: items}
	}
	items = items[:limit]
	last := items[limit-1]
	return Page{Items: items, Next: sqldb.EncodeCursor(strconv.FormatInt(sqldb.Micros(last.OccurredAt), 10), last.ID)}
}

func collect(rows *sql.Rows) ([]Record, error) {
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var (
			r                    Record
			occurred, recordedAt int64
			data                 string
		)
		if err := rows.Scan(&r.ID, &r.TenantID, &r.UserID, &r.Type, &r.SourceKind, &r.SourceID,
			&occurred, &recordedAt, &data); err != nil {
			return nil, err
		}
		r.OccurredAt, r.RecordedAt = sqldb.FromMicros(occurred), sqldb.FromMicros(recordedAt)
		if data != "" {
			r.Data = []byte(data)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// filter builds a WHERE clause with numbered placeholders.
type filter struct {
	conds []string
	args  []any
}

func (f *filter) add(cond string, arg any) {
	f.args = append(f.args, arg)
	f.conds = append(f.conds, strings.Replace(cond, "?", "$"+strconv.Itoa(len(f.args)), 1))
}

func (f *filter) add2(cond string, a, b any) {
	f.args = append(f.args, a, b)
	n := len(f.args)
	cond = strings.Replace(cond, "?", "$"+strconv.Itoa(n-1), 1)
	f.conds = append(f.conds, strings.Replace(cond, "?", "$"+strconv.Itoa(n), 1))
}

func (f *filter) query(limit int) (string, []any) {
	args := append(f.args, limit)
	return `SELECT ` + recordColumns + ` FROM activity_records WHERE ` + strings.Join(f.conds, " AND ") +
		` ORDER BY occurred_at DESC, id DESC LIMIT $` + strconv.Itoa(len(args)), args
}
