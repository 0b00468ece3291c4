package coupon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// ExpireDue moves up to limit issued coupons whose expiry has passed to expired, writing
// coupon.expired for each, and returns how many. Locked coupons are left to their redemption.
// Every node may run it at once: on PostgreSQL the rows another node holds are skipped, and the
// state condition is rechecked by the UPDATE.
func (s *Service) ExpireDue(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		limit = s.opts.SweepBatch
	}
	var expired []Coupon
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		now := s.now()
		rows, err := tx.Query(ctx, `UPDATE coupons SET state = 'expired', updated_at = $1
			WHERE (tenant_id, user_id, id) IN (SELECT tenant_id, user_id, id FROM coupons
				WHERE state = 'issued' AND expires_at <= $1 ORDER BY expires_at LIMIT $2`+s.dialect.SkipLocked()+`)
			AND state = 'issued' RETURNING `+couponColumns, sqldb.Micros(now), limit)
		if err != nil {
			return fmt.Errorf("coupon: expire coupons: %w", err)
		}
		if expired, err = collectCoupons(rows); err != nil {
			return fmt.Errorf("coupon: expire coupons: %w", err)
		}
		return s.emit(ctx, tx, s.couponEvents(EventExpired, now, expired, func(_ Coupon, e *couponEvent) { e.Reason = "expiry" }))
	})
	if err != nil {
		return 0, err
	}
	s.metrics.swept.WithLabelValues("expired").Add(float64(len(expired)))
	return len(expired), nil
}

// archiveColumns are couponColumns plus the archive's own.
const archiveColumns = couponColumns + `, archived_at`

// Archive moves up to limit ended coupons (redeemed, expired, revoked) whose last change is older
// than olderThan (0 means Options.ArchiveAfter) from the wallet to coupons_archive, and returns
// how many. Get still finds them; issuance still counts them; a rollback brings its coupons back.
// Every node may run it at once (rows another node holds are skipped on PostgreSQL).
func (s *Service) Archive(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	if olderThan <= 0 {
		olderThan = s.opts.ArchiveAfter
	}
	if limit <= 0 {
		limit = s.opts.SweepBatch
	}
	moved := 0
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		now := s.now()
		rows, err := tx.Query(ctx, `SELECT `+couponColumns+` FROM coupons
			WHERE state IN ('redeemed', 'expired', 'revoked') AND updated_at <= $1
			ORDER BY updated_at LIMIT $2`+s.dialect.SkipLocked(), sqldb.Micros(now.Add(-olderThan)), limit)
		if err != nil {
			return fmt.Errorf("coupon: find coupons to archive: %w", err)
		}
		cs, err := collectCoupons(rows)
		if err != nil || len(cs) == 0 {
			return err
		}
		moved = len(cs)
		return moveToArchive(ctx, tx, s.dialect, cs, now)
	})
	if err != nil {
		return 0, err
	}
	s.metrics.swept.WithLabelValues("archived").Add(float64(moved))
	return moved, nil
}

// moveToArchive copies coupons into the archive and deletes them from the wallet.
func moveToArchive(ctx context.Context, tx *sqldb.Tx, m sqldb.Dialect, cs []Coupon, now time.Time) error {
	const arity = 18
	const chunk = 200
	for start := 0; start < len(cs); start += chunk {
		part := cs[start:min(start+chunk, len(cs))]
		args := make([]any, 0, len(part)*arity)
		keys := make([]any, 0, len(part)*3)
		for _, c := range part {
			var redeemed any
			if c.RedeemedAt != nil {
				redeemed = sqldb.Micros(*c.RedeemedAt)
			}
			args = append(args, c.TenantID, c.UserID, c.ID, c.Template, c.TemplateVersion, string(c.State),
				sqldb.Micros(c.IssuedAt), sqldb.Micros(c.StartsAt), sqldb.Micros(c.ExpiresAt), c.SourceKind, c.SourceID,
				c.BusinessKey, c.RedemptionID, c.Discount, redeemed, c.RevokeReason, sqldb.Micros(c.UpdatedAt), sqldb.Micros(now))
			keys = append(keys, c.TenantID, c.UserID, c.ID)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO coupons_archive (`+archiveColumns+`) VALUES `+m.Tuples(len(part), arity)+
			` ON CONFLICT (tenant_id, user_id, id) DO NOTHING`, args...); err != nil {
			return fmt.Errorf("coupon: archive coupons: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM coupons WHERE (tenant_id, user_id, id) IN (VALUES `+m.Tuples(len(part), 3)+`)`,
			keys...); err != nil {
			return fmt.Errorf("coupon: archive coupons: %w", err)
		}
	}
	return nil
}

// Revoke withdraws an issued coupon (coupon.revoked). Revoking a revoked coupon returns it
// unchanged; a locked, redeemed, expired or archived coupon is a Conflict with code
// CodeCouponState; an unknown one is a NotFound.
func (s *Service) Revoke(ctx context.Context, tenantID, couponID, reason string) (Coupon, error) {
	if len(reason) > 200 {
		return Coupon{}, problem.Invalid("invalid revoke").WithField("reason", "must be at most 200 characters")
	}
	if tenantID == "" || !strings.HasPrefix(couponID, "cpn_") || len(couponID) > 64 {
		return Coupon{}, couponNotFound(couponID)
	}
	var c Coupon
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+couponColumns+` FROM coupons WHERE tenant_id = $1 AND id = $2`+s.dialect.ForUpdate(),
			tenantID, couponID)
		if err != nil {
			return fmt.Errorf("coupon: revoke: %w", err)
		}
		cs, err := collectCoupons(rows)
		if err != nil {
			return fmt.Errorf("coupon: revoke: %w", err)
		}
		if len(cs) == 0 {
			archived, err := getCoupon(ctx, tx, tenantID, couponID)
			if err != nil {
				return err
			}
			return couponState(archived, "it is archived")
		}
		c = cs[0]
		switch c.State {
		case StateRevoked:
			return nil
		case StateIssued:
		case StateLocked:
			return couponState(c, "it is locked by redemption "+c.RedemptionID+"; release it first")
		default:
			return couponState(c, "only an issued coupon can be revoked")
		}
		now := s.now()
		c.State, c.RevokeReason, c.UpdatedAt = StateRevoked, reason, now
		if _, err := tx.Exec(ctx, `UPDATE coupons SET state = 'revoked', revoke_reason = $4, updated_at = $5
			WHERE tenant_id = $1 AND user_id = $2 AND id = $3`, c.TenantID, c.UserID, c.ID, reason, sqldb.Micros(now)); err != nil {
			return fmt.Errorf("coupon: revoke: %w", err)
		}
		return s.emit(ctx, tx, s.couponEvents(EventRevoked, now, []Coupon{c}, func(_ Coupon, e *couponEvent) { e.Reason = reason }))
	})
	if err != nil {
		return Coupon{}, err
	}
	return c, nil
}

func couponState(c Coupon, why string) error {
	return problem.Conflict("coupon %s is %s: %s", c.ID, c.State, why).WithCode(CodeCouponState).With("state", string(c.State))
}

// Stats sums up a template's coupons, live and archived: counts by state, the discount cost of
// the redeemed ones and the redemption rate.
func (s *Service) Stats(ctx context.Context, tenantID, template string) (Stats, error) {
	var fs problem.Fields
	checkTenant(&fs, tenantID)
	checkTemplateKey(&fs, "template", template)
	if err := fs.Err("invalid stats request"); err != nil {
		return Stats{}, err
	}
	rows, err := s.db.Replica().Query(ctx, `SELECT state, COUNT(*), COALESCE(SUM(discount), 0) FROM coupons
		WHERE tenant_id = $1 AND template_key = $2 GROUP BY state
		UNION ALL
		SELECT state, COUNT(*), COALESCE(SUM(discount), 0) FROM coupons_archive
		WHERE tenant_id = $1 AND template_key = $2 GROUP BY state`, tenantID, template)
	if err != nil {
		return Stats{}, fmt.Errorf("coupon: stats: %w", err)
	}
	defer rows.Close()
	st := Stats{Template: template}
	for rows.Next() {
		var (
			state     string
			n, amount int64
		)
		if err := rows.Scan(&state, &n, &amount); err != nil {
			return Stats{}, err
		}
		st.Issued += n
		switch State(state) {
		case StateIssued:
			st.Available += n
		case StateLocked:
			st.Locked += n
		case StateRedeemed:
			st.Redeemed += n
			st.DiscountCost += amount
		case StateExpired:
			st.Expired += n
		case StateRevoked:
			st.Revoked += n
		}
	}
	if err := rows.Err(); err != nil {
		return Stats{}, err
	}
	if st.Issued > 0 {
		st.RedemptionRate = float64(st.Redeemed) / float64(st.Issued)
	}
	return st, nil
}

// Sweep runs the lifecycle jobs once: expiry, release of expired locks, archive.
func (s *Service) Sweep(ctx context.Context) error {
	_, errExpire := s.ExpireDue(ctx, 0)
	_, errRelease := s.ReleaseExpired(ctx, 0)
	_, errArchive := s.Archive(ctx, 0, 0)
	return errors.Join(errExpire, errRelease, errArchive)
}

// Run sweeps every Options.SweepInterval until ctx is done; failures are logged. Every node may
// run it.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	for {
		if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("coupon: sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
