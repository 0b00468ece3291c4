package coupon

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/kv"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// LockParams asks to lock coupons for an order.
type LockParams struct {
	TenantID string
	UserID   string
	// OrderID is the merchant's order; it has at most one redemption.
	OrderID string
	// CouponIDs are the coupons to use together (1 to MaxLockCoupons, the user's, in state issued).
	CouponIDs []string
	Cart      qualify.Cart
	// TTL is how long the lock holds without a confirmation (default DefaultLockTTL, between
	// MinLockTTL and MaxLockTTL); the HTTP field is ttl_seconds.
	TTL time.Duration
	// Lang is the language of refusal reasons: "en" (default) or "zh-CN".
	Lang string
	// User holds the user's attributes for the templates' CEL conditions (may be nil).
	User map[string]any
}

// Lock prices the chosen coupons on the cart (each must apply, and the set must be allowed
// together) and locks them for the order, all or none, answering the redemption with its
// discount and each coupon's split. A bad request or cart is a problem Invalid and locks nothing.
// A coupon that is not the user's, not issued, or locked meanwhile by another order is a Conflict
// with code CodeUnavailable naming it (field coupon_ids[i]); a combination the engine refuses is
// the engine's Conflict. A repeat for the same order with the same request returns the existing
// redemption (whatever its state); another request for that order is a Conflict with code
// CodeOrderConflict.
//
// Exactly one of any number of concurrent locks of one coupon wins: the lock is one conditional
// UPDATE (state = 'issued') whose affected rows must equal the coupons asked for. With a shared
// kv store, a short guard lock per coupon turns the losers away before they reach the database.
func (s *Service) Lock(ctx context.Context, p LockParams) (Redemption, error) {
	ttl, err := checkLock(&p)
	if err != nil {
		return Redemption{}, err
	}
	if err := qualify.ValidateCart(p.Cart); err != nil {
		return Redemption{}, err
	}
	hash := lockHash(p)
	if r, found, err := s.byOrder(ctx, p.TenantID, p.OrderID); err != nil || found {
		if err != nil {
			return Redemption{}, err
		}
		return sameRequest(r, hash)
	}
	coupons, err := s.usable(ctx, p.TenantID, p.UserID, p.CouponIDs)
	if err != nil {
		return Redemption{}, err
	}
	if len(coupons) != len(p.CouponIDs) {
		s.metrics.redemptions.WithLabelValues("refused").Inc()
		return Redemption{}, unavailable(p.CouponIDs, present(coupons))
	}
	lookup, err := s.templates.lookup(ctx, p.TenantID, coupons)
	if err != nil {
		return Redemption{}, err
	}
	now := s.now()
	pick, outcomes, err := qualify.Price(qualify.Input{Now: now, Cart: p.Cart, Coupons: coupons, Templates: lookup,
		User: p.User, Lang: p.Lang}, p.CouponIDs)
	if err != nil {
		s.metrics.redemptions.WithLabelValues("refused").Inc()
		return Redemption{}, err
	}
	release, err := s.guardCoupons(ctx, p.TenantID, p.CouponIDs)
	if err != nil {
		s.metrics.redemptions.WithLabelValues("refused").Inc()
		return Redemption{}, err
	}
	defer release()
	r := Redemption{ID: ids.New("rdm", now), TenantID: p.TenantID, UserID: p.UserID, OrderID: p.OrderID,
		CouponIDs: p.CouponIDs, Cart: p.Cart, Discount: pick.Discount, Coupons: outcomes, State: RedemptionLocked,
		LockExpiresAt: now.Add(ttl), CreatedAt: now, UpdatedAt: now}
	err = s.db.Tx(ctx, func(tx *sqldb.Tx) error { return s.lockTx(ctx, tx, r, hash) })
	switch {
	case errors.Is(err, errOrderTaken):
		existing, found, err := s.byOrder(ctx, p.TenantID, p.OrderID)
		if err != nil || !found {
			return Redemption{}, errors.Join(err, errors.New("coupon: the order's redemption vanished"))
		}
		return sameRequest(existing, hash)
	case err != nil:
		if problem.Is(err, problem.KindConflict) {
			s.metrics.redemptions.WithLabelValues("refused").Inc()
		}
		return Redemption{}, err
	}
	s.metrics.redemptions.WithLabelValues("locked").Inc()
	return r, nil
}

// errOrderTaken: another request created the order's redemption first.
var errOrderTaken = errors.New("coupon: the order has a redemption")

// lockTx writes the redemption and locks its coupons, all or none.
func (s *Service) lockTx(ctx context.Context, tx *sqldb.Tx, r Redemption, hash string) error {
	res, err := tx.Exec(ctx, `INSERT INTO redemptions (tenant_id, id, user_id, order_id, coupon_ids, cart, outcomes,
		request_hash, discount, state, lock_expires_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) ON CONFLICT (tenant_id, order_id) DO NOTHING`,
		r.TenantID, r.ID, r.UserID, r.OrderID, string(mustJSON(r.CouponIDs)), string(mustJSON(r.Cart)),
		string(mustJSON(r.Coupons)), hash, r.Discount, string(r.State), sqldb.Micros(r.LockExpiresAt), sqldb.Micros(r.CreatedAt))
	if err != nil {
		return fmt.Errorf("coupon: write redemption: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errors.Join(err, errOrderTaken)
	}
	args := []any{r.TenantID, r.UserID, r.ID, sqldb.Micros(r.CreatedAt)}
	var discount strings.Builder
	for _, o := range r.Coupons {
		args = append(args, o.CouponID, o.Discount)
		fmt.Fprintf(&discount, " WHEN $%d THEN CAST($%d AS BIGINT)", len(args)-1, len(args))
	}
	in := sqldb.Placeholders(len(args)+1, len(r.CouponIDs))
	for _, id := range r.CouponIDs {
		args = append(args, id)
	}
	rows, err := tx.Query(ctx, `UPDATE coupons SET state = 'locked', redemption_id = $3, updated_at = $4,
		discount = CASE id`+discount.String()+` ELSE 0 END
		WHERE tenant_id = $1 AND user_id = $2 AND id IN (`+in+`) AND state = 'issued' AND expires_at > $4
		RETURNING `+couponColumns, args...)
	if err != nil {
		return fmt.Errorf("coupon: lock coupons: %w", err)
	}
	locked, err := collectCoupons(rows)
	if err != nil {
		return fmt.Errorf("coupon: lock coupons: %w", err)
	}
	if len(locked) != len(r.CouponIDs) {
		got := map[string]bool{}
		for _, c := range locked {
			got[c.ID] = true
		}
		return unavailable(r.CouponIDs, got) // rolls the redemption and the partial lock back
	}
	events := s.couponEvents(EventLocked, r.CreatedAt, locked, func(_ Coupon, e *couponEvent) { e.OrderID = r.OrderID })
	return s.emit(ctx, tx, append(events, s.redemptionEvent(EventRedemptionLocked, r)...))
}

// guardCoupons takes a short kv lock per coupon when a shared kv store is configured, so that of
// many concurrent requests for one coupon only one goes on to the database. Correctness does not
// depend on it. The returned func releases the locks.
func (s *Service) guardCoupons(ctx context.Context, tenant string, couponIDs []string) (func(), error) {
	if s.guard == nil {
		return func() {}, nil
	}
	var held []*kv.Lock
	release := func() {
		for _, l := range held {
			_ = l.Release(context.WithoutCancel(ctx))
		}
	}
	for i, id := range slices.Sorted(slices.Values(couponIDs)) {
		l, err := s.guard.Lock(ctx, kv.Key("cpn:"+tenant, "lock", id), guardTTL)
		if errors.Is(err, kv.ErrLocked) {
			release()
			return nil, problem.Conflict("coupon %s is being locked by another request", id).WithCode(CodeUnavailable).
				WithField(fmt.Sprintf("coupon_ids[%d]", slices.Index(couponIDs, id)), "is being locked by another request")
		}
		if err != nil {
			release()
			return nil, fmt.Errorf("coupon: guard coupon %d: %w", i, err)
		}
		held = append(held, l)
	}
	return release, nil
}

// guardTTL bounds a guard lock held by a process that dies before releasing it.
const guardTTL = 10 * time.Second

// unavailable is the Conflict naming the coupons of ids that are not in ok.
func unavailable(ids []string, ok map[string]bool) error {
	e := problem.Conflict("some coupons are not available: not the user's, not issued, or locked by another order").
		WithCode(CodeUnavailable)
	var names []string
	for i, id := range ids {
		if !ok[id] {
			e.WithField(fmt.Sprintf("coupon_ids[%d]", i), "is not available")
			names = append(names, id)
		}
	}
	e.Detail = fmt.Sprintf("coupon(s) %s not available: not the user's, not issued, or locked by another order",
		strings.Join(names, ", "))
	return e
}

func present(cs []qualify.Coupon) map[string]bool {
	out := make(map[string]bool, len(cs))
	for _, c := range cs {
		out[c.ID] = true
	}
	return out
}

// checkLock validates a lock request and returns its TTL.
func checkLock(p *LockParams) (time.Duration, error) {
	var fs problem.Fields
	checkTenant(&fs, p.TenantID)
	checkUser(&fs, "user_id", p.UserID)
	if !orderIDPattern.MatchString(p.OrderID) {
		fs.Add("order_id", "must be 1 to 128 printable ASCII characters without spaces")
	}
	switch {
	case len(p.CouponIDs) == 0:
		fs.Add("coupon_ids", "at least one coupon is required")
	case len(p.CouponIDs) > MaxLockCoupons:
		fs.Add("coupon_ids", "at most %d coupons per order", MaxLockCoupons)
	}
	seen := map[string]bool{}
	for i, id := range p.CouponIDs {
		path := fmt.Sprintf("coupon_ids[%d]", i)
		switch {
		case !strings.HasPrefix(id, "cpn_") || len(id) > 64:
			fs.Add(path, "must be a coupon id (cpn_…)")
		case seen[id]:
			fs.Add(path, "is listed twice")
		}
		seen[id] = true
	}
	ttl := p.TTL
	if ttl == 0 {
		ttl = DefaultLockTTL
	}
	if ttl < MinLockTTL || ttl > MaxLockTTL {
		fs.Add("ttl_seconds", "must be between %d and %d", int(MinLockTTL.Seconds()), int(MaxLockTTL.Seconds()))
	}
	checkLang(&fs, p.Lang)
	return ttl, fs.Err("invalid redemption request")
}

// lockHash fingerprints what a lock request asks, to tell a repeat from another request.
func lockHash(p LockParams) string {
	b := mustJSON(struct {
		User    string         `json:"user"`
		Coupons []string       `json:"coupons"`
		Cart    qualify.Cart   `json:"cart"`
		TTL     time.Duration  `json:"ttl"`
		Attrs   map[string]any `json:"attrs,omitempty"`
	}{p.UserID, p.CouponIDs, p.Cart, p.TTL, p.User})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sameRequest answers a lock request for an order that has a redemption already.
func sameRequest(r redemptionRow, hash string) (Redemption, error) {
	if r.hash != hash {
		return Redemption{}, problem.Conflict("order %q already has redemption %s, made from another request", r.OrderID, r.ID).
			WithCode(CodeOrderConflict).With("redemption_id", r.ID)
	}
	return r.Redemption, nil
}

// GetRedemption returns a redemption of the tenant.
func (s *Service) GetRedemption(ctx context.Context, tenantID, id string) (Redemption, error) {
	r, err := loadRedemption(ctx, s.db.Reader(), tenantID, id, "")
	return r.Redemption, err
}

// Confirm completes a locked redemption: its coupons become redeemed. Confirming a confirmed
// redemption returns it unchanged. A lock whose TTL has passed is released instead, and the answer
// is a Conflict with code CodeRedemptionExpired; any other state is a Conflict with code
// CodeRedemptionState.
func (s *Service) Confirm(ctx context.Context, tenantID, id string) (Redemption, error) {
	return s.change(ctx, tenantID, id, func(ctx context.Context, tx *sqldb.Tx, r *Redemption, now time.Time) (error, error) {
		switch r.State {
		case RedemptionConfirmed:
			return nil, nil
		case RedemptionLocked:
			if !now.Before(r.LockExpiresAt) {
				if err := s.releaseTx(ctx, tx, r, ReleaseByTTL, now); err != nil {
					return nil, err
				}
				return problem.Conflict("the lock of redemption %s expired at %s; its coupons are released",
					r.ID, r.LockExpiresAt.Format(time.RFC3339)).WithCode(CodeRedemptionExpired), nil
			}
			return nil, s.confirmTx(ctx, tx, r, now)
		}
		return nil, stateConflict(r, "confirmed", "locked")
	})
}

// Release gives a locked redemption's coupons back to the wallet. Releasing a released
// redemption returns it unchanged; any other state is a Conflict with code CodeRedemptionState.
func (s *Service) Release(ctx context.Context, tenantID, id string) (Redemption, error) {
	return s.change(ctx, tenantID, id, func(ctx context.Context, tx *sqldb.Tx, r *Redemption, now time.Time) (error, error) {
		switch r.State {
		case RedemptionReleased:
			return nil, nil
		case RedemptionLocked:
			return nil, s.releaseTx(ctx, tx, r, ReleaseByRequest, now)
		}
		return nil, stateConflict(r, "released", "locked")
	})
}

// RollbackParams rolls a confirmed redemption back (the order was refunded).
type RollbackParams struct {
	TenantID string
	ID       string
	// Policy overrides Options.RollbackPolicy for this call ("" = the service's).
	Policy RollbackPolicy
}

// Rollback undoes a confirmed redemption. Under RestoreIfValid each coupon goes back to the wallet
// as issued if it has not expired (coupon.restored), else becomes expired; under NeverRestore the
// coupons stay redeemed. Either way their discount no longer counts as a cost. Coupons already
// archived are brought back first. Rolling back a rolled-back redemption returns it unchanged; any
// other state is a Conflict with code CodeRedemptionState.
func (s *Service) Rollback(ctx context.Context, p RollbackParams) (Redemption, error) {
	policy := p.Policy
	if policy == "" {
		policy = s.opts.RollbackPolicy
	}
	if !policy.valid() {
		return Redemption{}, problem.Invalid("invalid rollback").WithField("policy", "must be restore_if_valid or never_restore")
	}
	return s.change(ctx, p.TenantID, p.ID, func(ctx context.Context, tx *sqldb.Tx, r *Redemption, now time.Time) (error, error) {
		switch r.State {
		case RedemptionRolledBack:
			return nil, nil
		case RedemptionConfirmed:
			return nil, s.rollbackTx(ctx, tx, r, policy, now)
		}
		return nil, stateConflict(r, "rolled back", "confirmed")
	})
}

func stateConflict(r *Redemption, verb, from string) error {
	return problem.Conflict("redemption %s is %s; only a %s redemption can be %s", r.ID, r.State, from, verb).
		WithCode(CodeRedemptionState).With("state", string(r.State))
}

// changeFunc applies a transition to r in tx. after is an error to answer once tx has committed
// (the change stands); err rolls tx back.
type changeFunc func(ctx context.Context, tx *sqldb.Tx, r *Redemption, now time.Time) (after error, err error)

// change loads a redemption under its row lock, applies fn and commits.
func (s *Service) change(ctx context.Context, tenantID, id string, fn changeFunc) (Redemption, error) {
	var (
		r     Redemption
		after error
	)
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		row, err := loadRedemption(ctx, tx, tenantID, id, s.dialect.ForUpdate())
		if err != nil {
			return err
		}
		r = row.Redemption
		after, err = fn(ctx, tx, &r, s.now())
		return err
	})
	if err != nil {
		return Redemption{}, err
	}
	return r, after
}

// confirmTx redeems a locked redemption's coupons.
func (s *Service) confirmTx(ctx context.Context, tx *sqldb.Tx, r *Redemption, now time.Time) error {
	rows, err := tx.Query(ctx, `UPDATE coupons SET state = 'redeemed', redeemed_at = $4, updated_at = $4
		WHERE tenant_id = $1 AND user_id = $2 AND redemption_id = $3 AND state = 'locked' RETURNING `+couponColumns,
		r.TenantID, r.UserID, r.ID, sqldb.Micros(now))
	if err != nil {
		return fmt.Errorf("coupon: redeem coupons: %w", err)
	}
	redeemed, err := collectCoupons(rows)
	if err != nil {
		return fmt.Errorf("coupon: redeem coupons: %w", err)
	}
	if len(redeemed) != len(r.CouponIDs) {
		return fmt.Errorf("coupon: redemption %s holds %d of its %d coupons locked", r.ID, len(redeemed), len(r.CouponIDs))
	}
	r.State, r.UpdatedAt, r.ConfirmedAt = RedemptionConfirmed, now, &now
	if _, err := tx.Exec(ctx, `UPDATE redemptions SET state = 'confirmed', confirmed_at = $3, updated_at = $3
		WHERE tenant_id = $1 AND id = $2`, r.TenantID, r.ID, sqldb.Micros(now)); err != nil {
		return fmt.Errorf("coupon: confirm redemption: %w", err)
	}
	events := s.couponEvents(EventRedeemed, now, redeemed, func(_ Coupon, e *couponEvent) { e.OrderID = r.OrderID })
	tx.AfterCommit(func() { s.metrics.redemptions.WithLabelValues("confirmed").Inc() })
	return s.emit(ctx, tx, append(events, s.redemptionEvent(EventRedemptionConfirmed, *r)...))
}

// releaseTx puts a locked redemption's coupons back as issued.
func (s *Service) releaseTx(ctx context.Context, tx *sqldb.Tx, r *Redemption, reason string, now time.Time) error {
	rows, err := tx.Query(ctx, `UPDATE coupons SET state = 'issued', redemption_id = '', discount = 0, updated_at = $4
		WHERE tenant_id = $1 AND user_id = $2 AND redemption_id = $3 AND state = 'locked' RETURNING `+couponColumns,
		r.TenantID, r.UserID, r.ID, sqldb.Micros(now))
	if err != nil {
		return fmt.Errorf("coupon: release coupons: %w", err)
	}
	released, err := collectCoupons(rows)
	if err != nil {
		return fmt.Errorf("coupon: release coupons: %w", err)
	}
	r.State, r.ReleaseReason, r.UpdatedAt, r.ReleasedAt = RedemptionReleased, reason, now, &now
	if _, err := tx.Exec(ctx, `UPDATE redemptions SET state = 'released', release_reason = $3, released_at = $4,
		updated_at = $4 WHERE tenant_id = $1 AND id = $2`, r.TenantID, r.ID, reason, sqldb.Micros(now)); err != nil {
		return fmt.Errorf("coupon: release redemption: %w", err)
	}
	events := s.couponEvents(EventReleased, now, released, func(_ Coupon, e *couponEvent) {
		e.OrderID, e.RedemptionID, e.Reason = r.OrderID, r.ID, reason
	})
	tx.AfterCommit(func() { s.metrics.redemptions.WithLabelValues(reason).Inc() })
	return s.emit(ctx, tx, append(events, s.redemptionEvent(EventRedemptionReleased, *r)...))
}

// rollbackTx undoes a confirmed redemption under policy.
func (s *Service) rollbackTx(ctx context.Context, tx *sqldb.Tx, r *Redemption, policy RollbackPolicy, now time.Time) error {
	// Lock the live rows first: an archive sweep moving them meanwhile commits before this goes on,
	// and unarchive then finds them in the archive.
	if _, err := tx.Exec(ctx, `UPDATE coupons SET updated_at = updated_at WHERE tenant_id = $1 AND user_id = $2
		AND redemption_id = $3`, r.TenantID, r.UserID, r.ID); err != nil {
		return fmt.Errorf("coupon: lock redeemed coupons: %w", err)
	}
	if err := s.unarchive(ctx, tx, r); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, `SELECT `+couponColumns+` FROM coupons WHERE tenant_id = $1 AND user_id = $2
		AND redemption_id = $3 AND state = 'redeemed' ORDER BY id`+s.dialect.ForUpdate(), r.TenantID, r.UserID, r.ID)
	if err != nil {
		return fmt.Errorf("coupon: read redeemed coupons: %w", err)
	}
	coupons, err := collectCoupons(rows)
	if err != nil {
		return fmt.Errorf("coupon: read redeemed coupons: %w", err)
	}
	var restored, expired []Coupon
	for _, c := range coupons {
		c.Discount = 0
		switch {
		case policy == NeverRestore:
			_, err = tx.Exec(ctx, `UPDATE coupons SET discount = 0, updated_at = $4
				WHERE tenant_id = $1 AND user_id = $2 AND id = $3`, c.TenantID, c.UserID, c.ID, sqldb.Micros(now))
		case now.Before(c.ExpiresAt):
			c.State, c.RedemptionID, c.RedeemedAt = StateIssued, "", nil
			restored = append(restored, c)
			_, err = tx.Exec(ctx, `UPDATE coupons SET state = 'issued', redemption_id = '', discount = 0,
				redeemed_at = NULL, updated_at = $4 WHERE tenant_id = $1 AND user_id = $2 AND id = $3`,
				c.TenantID, c.UserID, c.ID, sqldb.Micros(now))
		default:
			c.State = StateExpired
			expired = append(expired, c)
			_, err = tx.Exec(ctx, `UPDATE coupons SET state = 'expired', discount = 0, updated_at = $4
				WHERE tenant_id = $1 AND user_id = $2 AND id = $3`, c.TenantID, c.UserID, c.ID, sqldb.Micros(now))
		}
		if err != nil {
			return fmt.Errorf("coupon: roll back coupon %s: %w", c.ID, err)
		}
	}
	r.State, r.UpdatedAt, r.RolledBackAt = RedemptionRolledBack, now, &now
	r.Restored = []string{}
	for _, c := range restored {
		r.Restored = append(r.Restored, c.ID)
	}
	if _, err := tx.Exec(ctx, `UPDATE redemptions SET state = 'rolled_back', rolled_back_at = $3, updated_at = $3,
		restored = $4 WHERE tenant_id = $1 AND id = $2`, r.TenantID, r.ID, sqldb.Micros(now), string(mustJSON(r.Restored))); err != nil {
		return fmt.Errorf("coupon: roll back redemption: %w", err)
	}
	detail := func(_ Coupon, e *couponEvent) { e.OrderID, e.RedemptionID, e.Reason = r.OrderID, r.ID, "rollback" }
	events := s.couponEvents(EventRestored, now, restored, detail)
	events = append(events, s.couponEvents(EventExpired, now, expired, detail)...)
	tx.AfterCommit(func() { s.metrics.redemptions.WithLabelValues("rolled_back").Inc() })
	return s.emit(ctx, tx, append(events, s.redemptionEvent(EventRedemptionRolledBack, *r)...))
}

// unarchive moves a redemption's archived coupons back to the wallet, for a rollback.
func (s *Service) unarchive(ctx context.Context, tx *sqldb.Tx, r *Redemption) error {
	res, err := tx.Exec(ctx, `INSERT INTO coupons (`+couponColumns+`) SELECT `+couponColumns+` FROM coupons_archive
		WHERE tenant_id = $1 AND user_id = $2 AND redemption_id = $3`, r.TenantID, r.UserID, r.ID)
	if err != nil {
		return fmt.Errorf("coupon: unarchive coupons: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err
	}
	_, err = tx.Exec(ctx, `DELETE FROM coupons_archive WHERE tenant_id = $1 AND user_id = $2 AND redemption_id = $3`,
		r.TenantID, r.UserID, r.ID)
	if err != nil {
		return fmt.Errorf("coupon: unarchive coupons: %w", err)
	}
	return nil
}

// ReleaseExpired releases up to limit locked redemptions whose TTL has passed (reason "expired")
// and returns how many it released. Every node may run it at once: each redemption is claimed
// with its row lock (PostgreSQL skips those another node holds) and rechecked under it.
func (s *Service) ReleaseExpired(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		limit = s.opts.SweepBatch
	}
	now := s.now()
	rows, err := s.db.Reader().Query(ctx, `SELECT tenant_id, id FROM redemptions WHERE state = 'locked'
		AND lock_expires_at <= $1 ORDER BY lock_expires_at LIMIT $2`, sqldb.Micros(now), limit)
	if err != nil {
		return 0, fmt.Errorf("coupon: find expired locks: %w", err)
	}
	var due [][2]string
	for rows.Next() {
		var k [2]string
		if err := rows.Scan(&k[0], &k[1]); err != nil {
			rows.Close()
			return 0, err
		}
		due = append(due, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	released := 0
	for _, k := range due {
		done := false
		err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
			done = false
			row, err := loadRedemption(ctx, tx, k[0], k[1], s.dialect.SkipLocked())
			if problem.Is(err, problem.KindNotFound) {
				return nil // another node holds it
			}
			if err != nil {
				return err
			}
			r := row.Redemption
			now := s.now()
			if r.State != RedemptionLocked || now.Before(r.LockExpiresAt) {
				return nil
			}
			done = true
			return s.releaseTx(ctx, tx, &r, ReleaseByTTL, now)
		})
		if err != nil {
			return released, err
		}
		if done {
			released++
		}
	}
	s.metrics.swept.WithLabelValues("released").Add(float64(released))
	return released, nil
}

// redemptionRow is a redemption with its request fingerprint.
type redemptionRow struct {
	Redemption
	hash string
}

const redemptionColumns = `tenant_id, id, user_id, order_id, coupon_ids, cart, outcomes, request_hash, discount, state,
	release_reason, restored, lock_expires_at, created_at, updated_at, confirmed_at, released_at, rolled_back_at`

func scanRedemption(row scanner) (redemptionRow, error) {
	var (
		r                                 redemptionRow
		couponIDs, cart, outcomes, restor string
		state                             string
		lockExp, created, updated         int64
		confirmed, released, rolledBack   sql.NullInt64
	)
	err := row.Scan(&r.TenantID, &r.ID, &r.UserID, &r.OrderID, &couponIDs, &cart, &outcomes, &r.hash, &r.Discount, &state,
		&r.ReleaseReason, &restor, &lockExp, &created, &updated, &confirmed, &released, &rolledBack)
	if err != nil {
		return redemptionRow{}, err
	}
	r.State = RedemptionState(state)
	r.LockExpiresAt, r.CreatedAt, r.UpdatedAt = sqldb.FromMicros(lockExp), sqldb.FromMicros(created), sqldb.FromMicros(updated)
	r.ConfirmedAt, r.ReleasedAt, r.RolledBackAt = optTime(confirmed), optTime(released), optTime(rolledBack)
	for _, f := range []struct {
		raw string
		dst any
	}{{couponIDs, &r.CouponIDs}, {cart, &r.Cart}, {outcomes, &r.Coupons}, {restor, &r.Restored}} {
		if err := json.Unmarshal([]byte(f.raw), f.dst); err != nil {
			return redemptionRow{}, fmt.Errorf("coupon: redemption %s: %w", r.ID, err)
		}
	}
	if len(r.Restored) == 0 {
		r.Restored = nil
	}
	return r, nil
}

func optTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := sqldb.FromMicros(v.Int64)
	return &t
}

// loadRedemption reads one redemption; lock is a row-lock suffix ("" for none).
func loadRedemption(ctx context.Context, q sqldb.Querier, tenantID, id, lock string) (redemptionRow, error) {
	r, err := scanRedemption(q.QueryRow(ctx, `SELECT `+redemptionColumns+` FROM redemptions
		WHERE tenant_id = $1 AND id = $2`+lock, tenantID, id))
	if isNoRows(err) {
		return redemptionRow{}, problem.NotFound("redemption %q not found", id).WithCode(CodeRedemptionNotFound)
	}
	if err != nil {
		return redemptionRow{}, fmt.Errorf("coupon: read redemption: %w", err)
	}
	return r, nil
}

// byOrder finds the redemption of an order.
func (s *Service) byOrder(ctx context.Context, tenantID, orderID string) (redemptionRow, bool, error) {
	r, err := scanRedemption(s.db.Reader().QueryRow(ctx, `SELECT `+redemptionColumns+` FROM redemptions
		WHERE tenant_id = $1 AND order_id = $2`, tenantID, orderID))
	if isNoRows(err) {
		return redemptionRow{}, false, nil
	}
	if err != nil {
		return redemptionRow{}, false, fmt.Errorf("coupon: read the order's redemption: %w", err)
	}
	return r, true, nil
}
