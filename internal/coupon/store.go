package coupon

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/tenant"
)

// couponColumns are the columns of coupons and coupons_archive that scanCoupon reads, in order.
const couponColumns = `tenant_id, user_id, id, template_key, template_version, state, issued_at, starts_at,
	expires_at, source_kind, source_id, business_key, redemption_id, discount, redeemed_at, revoke_reason, updated_at`

// insertColumns are the columns an issued coupon is written with (the others take their defaults).
const insertColumns = `tenant_id, user_id, id, template_key, template_version, state, issued_at, starts_at,
	expires_at, source_kind, source_id, business_key, updated_at`

const insertArity = 13

// insertChunk bounds the rows of one INSERT (PostgreSQL takes at most 65535 parameters).
const insertChunk = 500

type scanner interface{ Scan(dest ...any) error }

func scanCoupon(row scanner) (Coupon, error) {
	var (
		c                                Coupon
		issued, starts, expires, updated int64
		redeemed                         sql.NullInt64
		state                            string
	)
	err := row.Scan(&c.TenantID, &c.UserID, &c.ID, &c.Template, &c.TemplateVersion, &state, &issued, &starts, &expires,
		&c.SourceKind, &c.SourceID, &c.BusinessKey, &c.RedemptionID, &c.Discount, &redeemed, &c.RevokeReason, &updated)
	if err != nil {
		return Coupon{}, err
	}
	c.State = State(state)
	c.IssuedAt, c.StartsAt, c.ExpiresAt = sqldb.FromMicros(issued), sqldb.FromMicros(starts), sqldb.FromMicros(expires)
	c.UpdatedAt = sqldb.FromMicros(updated)
	if redeemed.Valid {
		t := sqldb.FromMicros(redeemed.Int64)
		c.RedeemedAt = &t
	}
	return c, nil
}

// collectCoupons scans every row and closes rows.
func collectCoupons(rows *sql.Rows) ([]Coupon, error) {
	defer rows.Close()
	var out []Coupon
	for rows.Next() {
		c, err := scanCoupon(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// insertCoupons writes new coupons with multi-row INSERTs, skipping any whose business key the user
// already has, and returns the business keys actually inserted.
func insertCoupons(ctx context.Context, tx *sqldb.Tx, m sqldb.Dialect, cs []Coupon) (map[string]bool, error) {
	inserted := make(map[string]bool, len(cs))
	for start := 0; start < len(cs); start += insertChunk {
		chunk := cs[start:min(start+insertChunk, len(cs))]
		args := make([]any, 0, len(chunk)*insertArity)
		for _, c := range chunk {
			args = append(args, c.TenantID, c.UserID, c.ID, c.Template, c.TemplateVersion, string(c.State),
				sqldb.Micros(c.IssuedAt), sqldb.Micros(c.StartsAt), sqldb.Micros(c.ExpiresAt), c.SourceKind, c.SourceID,
				c.BusinessKey, sqldb.Micros(c.UpdatedAt))
		}
		rows, err := tx.Query(ctx, `INSERT INTO coupons (`+insertColumns+`) VALUES `+m.Tuples(len(chunk), insertArity)+
			` ON CONFLICT (tenant_id, user_id, business_key) DO NOTHING RETURNING business_key`, args...)
		if err != nil {
			return nil, fmt.Errorf("coupon: insert coupons: %w", err)
		}
		for rows.Next() {
			var key string
			if err := rows.Scan(&key); err != nil {
				rows.Close()
				return nil, err
			}
			inserted[key] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("coupon: insert coupons: %w", err)
		}
	}
	return inserted, nil
}

// userKey is one (user, business key) pair.
type userKey struct{ user, key string }

// issuedKey is what a business key issued: the coupon and its template.
type issuedKey struct {
	UserID   string
	Key      string
	ID       string
	Template string
}

// findByKeys returns, by business key, the coupons (wallet or archive) the pairs' business keys
// issued.
//
// It asks one correlated lookup per pair, which both engines run as one probe of the unique
// (tenant_id, user_id, business_key) index. A join or IN lists let the planners, which have no
// statistics on a young table, read every coupon of the tenant instead.
func findByKeys(ctx context.Context, q sqldb.Querier, m sqldb.Dialect, tenant string, pairs []userKey) (map[string]issuedKey, error) {
	found := map[string]issuedKey{}
	if len(pairs) == 0 {
		return found, nil
	}
	args := make([]any, 0, 2*len(pairs)+2)
	args = append(args, tenant, tenant)
	values := make([]string, len(pairs))
	for i, p := range pairs {
		values[i] = "(" + m.Placeholders(len(args)+1, 2) + ")"
		args = append(args, p.user, p.key)
	}
	rows, err := q.Query(ctx, `SELECT k.column1, k.column2, COALESCE(
		(SELECT c.id || ' ' || c.template_key FROM coupons c WHERE c.tenant_id = `+m.Placeholders(1, 1)+`
			AND c.user_id = k.column1 AND c.business_key = k.column2),
		(SELECT a.id || ' ' || a.template_key FROM coupons_archive a WHERE a.tenant_id = `+m.Placeholders(2, 1)+`
			AND a.user_id = k.column1 AND a.business_key = k.column2), '')
		FROM (VALUES `+strings.Join(values, ", ")+`) AS k`, args...)
	if err != nil {
		return nil, fmt.Errorf("coupon: find issued keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			ik  issuedKey
			ref string
		)
		if err := rows.Scan(&ik.UserID, &ik.Key, &ref); err != nil {
			return nil, fmt.Errorf("coupon: find issued keys: %w", err)
		}
		if id, template, ok := strings.Cut(ref, " "); ok {
			ik.ID, ik.Template = id, template
			found[ik.Key] = ik
		}
	}
	return found, rows.Err()
}

// collectArchived scans rows of couponColumns followed by an archived flag (0 or 1).
func collectArchived(rows *sql.Rows) ([]Coupon, error) {
	defer rows.Close()
	var out []Coupon
	for rows.Next() {
		var archived int
		c, err := scanCoupon(archivedScanner{rows, &archived})
		if err != nil {
			return nil, err
		}
		c.Archived = archived == 1
		out = append(out, c)
	}
	return out, rows.Err()
}

// archivedScanner appends the archived flag to a coupon scan.
type archivedScanner struct {
	rows     *sql.Rows
	archived *int
}

func (a archivedScanner) Scan(dest ...any) error { return a.rows.Scan(append(dest, a.archived)...) }

// getCoupon reads a coupon by id from the wallet, then the archive.
func getCoupon(ctx context.Context, q sqldb.Querier, tenant, id string) (Coupon, error) {
	rows, err := q.Query(ctx, `SELECT `+couponColumns+`, 0 FROM coupons WHERE tenant_id = $1 AND id = $2
		UNION ALL SELECT `+couponColumns+`, 1 FROM coupons_archive WHERE tenant_id = $1 AND id = $2`, tenant, id)
	if err != nil {
		return Coupon{}, fmt.Errorf("coupon: get: %w", err)
	}
	cs, err := collectArchived(rows)
	if err != nil {
		return Coupon{}, fmt.Errorf("coupon: get: %w", err)
	}
	if len(cs) == 0 {
		return Coupon{}, couponNotFound(id)
	}
	return cs[0], nil
}

func couponNotFound(id string) error {
	return problem.NotFound("coupon %q not found", id).WithCode(CodeCouponNotFound)
}

// Field checks shared by the entry points.

func checkTenant(fs *problem.Fields, tenant string) {
	if tenant == "" || len(tenant) > 64 {
		fs.Add("tenant_id", "is required (at most 64 characters)")
	}
}

func checkUser(fs *problem.Fields, path, user string) {
	if !tenant.ValidUserID(user) {
		fs.Add(path, "must be 1 to 128 characters of A-Z a-z 0-9 _ . : @ -")
	}
}

func checkTemplateKey(fs *problem.Fields, path, key string) {
	if !keyPattern.MatchString(key) {
		fs.Add(path, "must be a coupon template key (a slug of at most 64 characters)")
	}
}
