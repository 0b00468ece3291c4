package coupon

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// ListParams filters and pages a user's wallet. Every filter but the tenant and user is optional.
type ListParams struct {
	TenantID string
	UserID   string
	State    State
	// Template keeps the coupons of one template key.
	Template string
	// ExpiringBefore keeps the coupons that expire before it.
	ExpiringBefore time.Time
	// Cursor is the Next of the previous page ("" for the first page).
	Cursor string
	// Limit is the page size: 0 means sqldb.DefaultPageLimit, at most sqldb.MaxPageLimit.
	Limit int
}

// List returns a page of a user's wallet, newest first (by id, which follows issue time). Archived
// coupons are not listed (Get still reads them).
func (s *Service) List(ctx context.Context, p ListParams) (Page, error) {
	var fs problem.Fields
	checkTenant(&fs, p.TenantID)
	checkUser(&fs, "user_id", p.UserID)
	if p.State != "" && !p.State.Valid() {
		fs.Add("state", "must be one of issued, locked, redeemed, expired, revoked")
	}
	if p.Template != "" {
		checkTemplateKey(&fs, "template", p.Template)
	}
	if p.Limit < 0 || p.Limit > sqldb.MaxPageLimit {
		fs.Add("limit", "must be between 1 and %d", sqldb.MaxPageLimit)
	}
	after, err := sqldb.DecodeCursor(p.Cursor, 1)
	if err != nil || (len(after) == 1 && after[0] == "") {
		fs.Add("cursor", "is not a cursor this list returned")
	}
	if err := fs.Err("invalid wallet query"); err != nil {
		return Page{}, err
	}
	limit := sqldb.PageLimit(p.Limit)
	where := []string{"tenant_id = $1", "user_id = $2"}
	args := []any{p.TenantID, p.UserID}
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, strings.Replace(cond, "?", "$"+strconv.Itoa(len(args)), 1))
	}
	if p.State != "" {
		add("state = ?", string(p.State))
	}
	if p.Template != "" {
		add("template_key = ?", p.Template)
	}
	if !p.ExpiringBefore.IsZero() {
		add("expires_at < ?", sqldb.Micros(p.ExpiringBefore))
	}
	if len(after) == 1 {
		add("id < ?", after[0])
	}
	args = append(args, limit+1)
	rows, err := s.db.Reader().Query(ctx, `SELECT `+couponColumns+` FROM coupons WHERE `+strings.Join(where, " AND ")+
		` ORDER BY id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return Page{}, fmt.Errorf("coupon: list: %w", err)
	}
	items, err := collectCoupons(rows)
	if err != nil {
		return Page{}, fmt.Errorf("coupon: list: %w", err)
	}
	page := Page{Items: items}
	if len(items) > limit {
		page.Items = items[:limit]
		page.Next = sqldb.EncodeCursor(items[limit-1].ID)
	}
	if page.Items == nil {
		page.Items = []Coupon{}
	}
	return page, nil
}

// Get returns a coupon of the tenant by id, from the wallet or the archive.
func (s *Service) Get(ctx context.Context, tenantID, id string) (Coupon, error) {
	if tenantID == "" || !strings.HasPrefix(id, "cpn_") || len(id) > 64 {
		return Coupon{}, couponNotFound(id)
	}
	return getCoupon(ctx, s.db.Reader(), tenantID, id)
}

// QualifyParams asks which of a user's coupons apply to a cart.
type QualifyParams struct {
	TenantID string
	UserID   string
	Cart     qualify.Cart
	// Lang is the language of the reasons: "en" (default) or "zh-CN".
	Lang string
	// User holds the user's attributes for the templates' CEL conditions (may be nil).
	User map[string]any
	// Buffer, when set, holds the answer: its arrays are reused by the buffer's next evaluation
	// (see qualify.Buffer), so a handler encodes the answer before it reuses the buffer.
	Buffer *qualify.Buffer
}

// Qualify answers, for every usable coupon in the user's wallet (state issued, including ones not
// started yet or just expired, so their reasons show), what it is worth on the cart and why the
// others do not apply, with the best single coupon and the best stack. A bad cart is a problem
// Invalid with paths like cart.items[2].quantity. The wallet is read with one indexed query
// (tenant, user, state) and its template versions come from memory; a node keeps recently
// qualified wallets prepared (see the wallet cache).
func (s *Service) Qualify(ctx context.Context, p QualifyParams) (qualify.Result, error) {
	start := time.Now()
	var fs problem.Fields
	checkTenant(&fs, p.TenantID)
	checkUser(&fs, "user_id", p.UserID)
	checkLang(&fs, p.Lang)
	if err := fs.Err("invalid qualify request"); err != nil {
		return qualify.Result{}, err
	}
	if err := qualify.ValidateCart(p.Cart); err != nil {
		return qualify.Result{}, err
	}
	w, err := s.wallet(ctx, p.TenantID, p.UserID)
	if err != nil {
		return qualify.Result{}, err
	}
	in := qualify.Input{Now: s.now(), Cart: p.Cart, Wallet: w, User: p.User, Lang: p.Lang}
	var res qualify.Result
	if p.Buffer != nil {
		res = *p.Buffer.Evaluate(in)
	} else {
		res = qualify.Evaluate(in)
	}
	s.metrics.qualify.Observe(time.Since(start).Seconds())
	return res, nil
}

func checkLang(fs *problem.Fields, lang string) {
	if lang != "" && lang != "en" && lang != "zh-CN" {
		fs.Add("lang", "must be en or zh-CN")
	}
}

// usable reads a user's coupons in state issued (all of them, or those of ids), soonest expiry
// first, as the engine sees them.
func (s *Service) usable(ctx context.Context, tenant, user string, ids []string) ([]qualify.Coupon, error) {
	q := `SELECT id, template_key, template_version, starts_at, expires_at FROM coupons
		WHERE tenant_id = $1 AND user_id = $2 AND state = 'issued'`
	args := []any{tenant, user}
	if ids != nil {
		q += ` AND id IN (` + sqldb.Placeholders(3, len(ids)) + `)`
		for _, id := range ids {
			args = append(args, id)
		}
	}
	q += ` ORDER BY expires_at, id LIMIT ` + strconv.Itoa(maxWalletCoupons)
	rows, err := s.db.Reader().Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("coupon: read wallet: %w", err)
	}
	defer rows.Close()
	out := []qualify.Coupon{}
	for rows.Next() {
		var (
			c               qualify.Coupon
			starts, expires int64
		)
		if err := rows.Scan(&c.ID, &c.TemplateKey, &c.TemplateVersion, &starts, &expires); err != nil {
			return nil, err
		}
		c.StartsAt, c.ExpiresAt = sqldb.FromMicros(starts), sqldb.FromMicros(expires)
		out = append(out, c)
	}
	return out, rows.Err()
}
