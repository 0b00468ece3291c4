package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// This file holds the catalog's SQL: one text per statement, $n placeholders, both engines.

const resourceColumns = `id, tenant_id, kind, res_key, state, draft, draft_revision, published_version,
	published_revision, created_at, updated_at, created_by, updated_by`

const versionColumns = `resource_id, version, spec, published_at, published_by, rolled_back_from`

// auditColumns leave out seq, which the database assigns.
const auditColumns = `id, tenant_id, resource_id, kind, res_key, action, actor, at, version, revision, diff`

// scanner is a *sql.Rows or a sqldb.Row.
type scanner interface{ Scan(dest ...any) error }

func scanResource(row scanner) (Resource, error) {
	var (
		r                Resource
		draft            string
		created, updated int64
	)
	err := row.Scan(&r.ID, &r.TenantID, &r.Kind, &r.Key, &r.State, &draft, &r.DraftRevision,
		&r.PublishedVersion, &r.PublishedRevision, &created, &updated, &r.CreatedBy, &r.UpdatedBy)
	r.Draft = json.RawMessage(draft)
	r.CreatedAt, r.UpdatedAt = sqldb.FromMicros(created), sqldb.FromMicros(updated)
	return r, err
}

func scanVersion(row scanner) (Version, error) {
	var (
		v    Version
		spec string
		at   int64
	)
	err := row.Scan(&v.ResourceID, &v.Version, &spec, &at, &v.PublishedBy, &v.RolledBackFrom)
	v.Spec, v.PublishedAt = json.RawMessage(spec), sqldb.FromMicros(at)
	return v, err
}

func scanAudit(row scanner) (AuditEntry, error) {
	var (
		e    AuditEntry
		at   int64
		diff string
	)
	err := row.Scan(&e.Seq, &e.ID, &e.TenantID, &e.ResourceID, &e.Kind, &e.Key, &e.Action, &e.Actor, &at,
		&e.Version, &e.Revision, &diff)
	if err != nil {
		return e, err
	}
	e.At = sqldb.FromMicros(at)
	if err := json.Unmarshal([]byte(diff), &e.Diff); err != nil {
		return e, fmt.Errorf("catalog: audit %s: bad diff: %w", e.ID, err)
	}
	return e, nil
}

func notFound(id string) error {
	return problem.NotFound("config resource %q not found", id).WithCode("config-not-found")
}

// loadResource reads one resource of one tenant; another tenant's resource is NotFound.
func loadResource(ctx context.Context, q sqldb.Querier, tenant, id string) (Resource, error) {
	r, err := scanResource(q.QueryRow(ctx, `SELECT `+resourceColumns+`
		FROM catalog_resources WHERE tenant_id = $1 AND id = $2`, tenant, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Resource{}, notFound(id)
	}
	if err != nil {
		return Resource{}, fmt.Errorf("catalog: load resource: %w", err)
	}
	return r, nil
}

func loadResourceByKey(ctx context.Context, q sqldb.Querier, tenant, kind, key string) (Resource, error) {
	r, err := scanResource(q.QueryRow(ctx, `SELECT `+resourceColumns+`
		FROM catalog_resources WHERE tenant_id = $1 AND kind = $2 AND res_key = $3`, tenant, kind, key))
	if errors.Is(err, sql.ErrNoRows) {
		return Resource{}, notFound(kind + ":" + key)
	}
	if err != nil {
		return Resource{}, fmt.Errorf("catalog: load resource: %w", err)
	}
	return r, nil
}

// loadVersion reads one version of a resource the caller has already scoped to its tenant.
func loadVersion(ctx context.Context, q sqldb.Querier, resourceID string, version int) (Version, error) {
	v, err := scanVersion(q.QueryRow(ctx, `SELECT `+versionColumns+`
		FROM catalog_versions WHERE resource_id = $1 AND version = $2`, resourceID, version))
	if errors.Is(err, sql.ErrNoRows) {
		return Version{}, problem.NotFound("version %d of %q not found", version, resourceID).
			WithCode("config-version-not-found")
	}
	if err != nil {
		return Version{}, fmt.Errorf("catalog: load version: %w", err)
	}
	return v, nil
}

// publishedColumns select a Published from catalog_resources r joined with its live version v.
const publishedColumns = `r.id, r.tenant_id, r.kind, r.res_key, v.version, v.spec, v.published_at`

const publishedJoin = `FROM catalog_resources r
	JOIN catalog_versions v ON v.resource_id = r.id AND v.version = r.published_version`

func scanPublished(row scanner) (Published, error) {
	var (
		p    Published
		spec string
		at   int64
	)
	err := row.Scan(&p.ResourceID, &p.TenantID, &p.Kind, &p.Key, &p.Version, &spec, &at)
	p.Spec, p.PublishedAt = json.RawMessage(spec), sqldb.FromMicros(at)
	return p, err
}

func loadPublished(ctx context.Context, q sqldb.Querier, tenant, kind, key string) (Published, bool, error) {
	p, err := scanPublished(q.QueryRow(ctx, `SELECT `+publishedColumns+` `+publishedJoin+`
		WHERE r.tenant_id = $1 AND r.kind = $2 AND r.res_key = $3 AND r.state = 'published'`,
		tenant, kind, key))
	if errors.Is(err, sql.ErrNoRows) {
		return Published{}, false, nil
	}
	if err != nil {
		return Published{}, false, fmt.Errorf("catalog: lookup %s:%s: %w", kind, key, err)
	}
	return p, true, nil
}

func insertResource(ctx context.Context, tx *sqldb.Tx, r Resource) error {
	_, err := tx.Exec(ctx, `INSERT INTO catalog_resources (`+resourceColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		r.ID, r.TenantID, r.Kind, r.Key, string(r.State), string(r.Draft), r.DraftRevision, r.PublishedVersion,
		r.PublishedRevision, sqldb.Micros(r.CreatedAt), sqldb.Micros(r.UpdatedAt), r.CreatedBy, r.UpdatedBy)
	return err
}

// updateResource writes r's mutable columns, provided the row still has the draft revision, the
// published version and the state of was. It reports a Conflict when another writer got there first.
func updateResource(ctx context.Context, tx *sqldb.Tx, was, r Resource) error {
	res, err := tx.Exec(ctx, `UPDATE catalog_resources
		SET state = $1, draft = $2, draft_revision = $3, published_version = $4, published_revision = $5,
			updated_at = $6, updated_by = $7
		WHERE tenant_id = $8 AND id = $9 AND draft_revision = $10 AND published_version = $11 AND state = $12`,
		string(r.State), string(r.Draft), r.DraftRevision, r.PublishedVersion, r.PublishedRevision,
		sqldb.Micros(r.UpdatedAt), r.UpdatedBy, r.TenantID, r.ID, was.DraftRevision, was.PublishedVersion, string(was.State))
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return problem.Conflict("config resource %q was changed concurrently; reload and retry", r.ID).
			WithCode("config-concurrent-change")
	}
	return nil
}

func insertVersion(ctx context.Context, tx *sqldb.Tx, tenant string, v Version) error {
	_, err := tx.Exec(ctx, `INSERT INTO catalog_versions (`+versionColumns+`, tenant_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		v.ResourceID, v.Version, string(v.Spec), sqldb.Micros(v.PublishedAt), v.PublishedBy, v.RolledBackFrom, tenant)
	return err
}

func insertAudit(ctx context.Context, tx *sqldb.Tx, e AuditEntry) error {
	diff, err := json.Marshal(e.Diff)
	if err != nil {
		return fmt.Errorf("catalog: encode diff: %w", err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO catalog_audit (`+auditColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		e.ID, e.TenantID, e.ResourceID, e.Kind, e.Key, string(e.Action), e.Actor, sqldb.Micros(e.At), e.Version,
		e.Revision, string(diff))
	return err
}

// insertChange appends c to the change log and returns it with its seq. On PostgreSQL it first
// takes an EXCLUSIVE lock on the log (plain reads still pass) so that seqs become visible in
// order; it must be the transaction's last statement to keep that lock short.
func insertChange(ctx context.Context, tx *sqldb.Tx, d sqldb.Dialect, c Change) (Change, error) {
	if d == sqldb.Postgres {
		if _, err := tx.Exec(ctx, `LOCK TABLE catalog_changes IN EXCLUSIVE MODE`); err != nil {
			return c, err
		}
	}
	err := tx.QueryRow(ctx, `INSERT INTO catalog_changes
		(tenant_id, kind, resource_id, res_key, version, action, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq`,
		c.TenantID, c.Kind, c.ResourceID, c.Key, c.Version, string(c.Action), sqldb.Micros(c.At)).Scan(&c.Seq)
	return c, err
}

// filter builds a WHERE clause: each condition's "?" becomes the next $n.
type filter struct {
	conds []string
	args  []any
}

func (f *filter) add(cond string, arg any) {
	f.args = append(f.args, arg)
	f.conds = append(f.conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(f.args))))
}

// query returns "WHERE … ORDER BY … LIMIT $n" and its arguments.
func (f *filter) query(order string, limit int) (string, []any) {
	args := append(f.args, limit)
	return " WHERE " + strings.Join(f.conds, " AND ") + " ORDER BY " + order +
		" LIMIT $" + strconv.Itoa(len(args)), args
}
