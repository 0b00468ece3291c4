package coupon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/kv"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/tenant"
)

// Issuance limits: a template's Quantity (total) and PerUser (per user, over all time) are never
// exceeded, under any concurrency, in one of two ways chosen by Options.KV.
//
// With a shared kv store (Redis), the counters live there: a unit is reserved with one bounded
// AddAll (the total and the user's counter share a hash tag, so one script updates both, also on
// Redis Cluster) before the coupon row is inserted, and given back when the insert does not
// happen (the transaction fails, or the business key turns out to exist). A process that dies
// between the reservation and the commit leaves a unit reserved that no coupon uses: the template
// may under-issue, never over-issue. Reconcile recounts from SQL and resets the counters. Inside a
// caller's transaction (IssueTx) a rollback cannot be observed (sqldb.Tx has no after-rollback
// hook), so the reservation is remembered by business key in this process and reused when the
// same key is issued again (the reward engine retries the step with the same key); only a
// rollback that is never retried on this node leaves a unit reserved.
//
// Without Redis (Options.KV nil or a *kv.SQL), the counters live in the coupon_counters table and
// move inside the issuing transaction: its first statement locks the template's counter row (every
// issuer of the template queues on it), the user's holdings are counted from the wallet and the
// archive under that lock, and the counter grows by the rows actually inserted. Nothing is
// reserved outside the transaction, so nothing can leak. The kv SQL store is not used for this
// because it runs its own transaction on the database, which deadlocks SQLite's single writer
// when the caller (the reward step) already holds it.
type limits interface {
	// reserve takes one unit for each user before the transaction and returns the refused users
	// with their problem code.
	reserve(ctx context.Context, tenant string, t *qualify.Template, users []string) (map[string]string, error)
	// giveBack returns the units of users that did not get a coupon.
	giveBack(ctx context.Context, tenant, template string, users []string)
	// checkTx decides, inside the issuing transaction, which users may get a coupon.
	checkTx(ctx context.Context, tx *sqldb.Tx, tenant string, t *qualify.Template, users []string) (map[string]string, error)
	// addTx records n coupons inserted by the transaction.
	addTx(ctx context.Context, tx *sqldb.Tx, tenant, template string, n int) error
	// reserveKey is reserve (or checkTx) for one user inside a caller's transaction, remembered by
	// business key until tx commits (see above); fresh tells a new reservation from a reused one.
	reserveKey(ctx context.Context, tx *sqldb.Tx, tenant string, t *qualify.Template, user, key string) (code string, fresh bool, err error)
	// forgetKey drops the remembered reservation of a key that found its coupon already issued.
	forgetKey(tenant, key string)
}

// upTo is the bound of a limit (0 = unlimited).
func upTo(n int64) kv.Bounds {
	if n <= 0 {
		return kv.Bounds{}
	}
	return kv.AtMost(n)
}

// sqlLimits keeps the counters in coupon_counters, inside the issuing transaction.
type sqlLimits struct{ dialect sqldb.Dialect }

func (sqlLimits) reserve(context.Context, string, *qualify.Template, []string) (map[string]string, error) {
	return nil, nil
}

func (sqlLimits) giveBack(context.Context, string, string, []string) {}

func (sqlLimits) forgetKey(string, string) {}

func (l sqlLimits) reserveKey(ctx context.Context, tx *sqldb.Tx, tenant string, t *qualify.Template, user, _ string) (string, bool, error) {
	refused, err := l.checkTx(ctx, tx, tenant, t, []string{user})
	return refused[user], false, err
}

func (l sqlLimits) checkTx(ctx context.Context, tx *sqldb.Tx, tenant string, t *qualify.Template, users []string) (map[string]string, error) {
	issued, err := lockCounter(ctx, tx, tenant, t.Key)
	if err != nil {
		return nil, err
	}
	held := map[string]int64{}
	if t.Spec.PerUser > 0 {
		if held, err = countHeld(ctx, tx, l.dialect, tenant, t.Key, users); err != nil {
			return nil, err
		}
	}
	refused := map[string]string{}
	for _, u := range users {
		switch {
		case t.Spec.Quantity > 0 && issued >= t.Spec.Quantity:
			refused[u] = CodeSoldOut
		case t.Spec.PerUser > 0 && held[u] >= t.Spec.PerUser:
			refused[u] = CodeLimitReached
		default:
			issued++
		}
	}
	return refused, nil
}

func (sqlLimits) addTx(ctx context.Context, tx *sqldb.Tx, tenant, template string, n int) error {
	if n == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `UPDATE coupon_counters SET issued = issued + $3 WHERE tenant_id = $1 AND template_key = $2`,
		tenant, template, n)
	if err != nil {
		return fmt.Errorf("coupon: count issued: %w", err)
	}
	return nil
}

// lockCounter creates the template's counter row if needed, locks it and returns its value.
func lockCounter(ctx context.Context, tx *sqldb.Tx, tenant, template string) (int64, error) {
	var issued int64
	err := tx.QueryRow(ctx, `INSERT INTO coupon_counters (tenant_id, template_key, issued) VALUES ($1, $2, 0)
		ON CONFLICT (tenant_id, template_key) DO UPDATE SET issued = coupon_counters.issued
		RETURNING issued`, tenant, template).Scan(&issued)
	if err != nil {
		return 0, fmt.Errorf("coupon: lock the issuance counter: %w", err)
	}
	return issued, nil
}

// countHeld counts, per user, the coupons of a template ever issued to them (wallet and archive).
//
// It asks one correlated count per user, which both engines run as one index probe per user on
// (tenant_id, user_id). Joins and IN lists let the planners, which have no statistics on a young
// table, pick coupons_template and read every coupon of the template instead; comparing
// template_key with an empty string appended keeps that index out of the probes.
func countHeld(ctx context.Context, q sqldb.Querier, m sqldb.Dialect, tenant, template string, users []string) (map[string]int64, error) {
	if len(users) == 0 {
		return map[string]int64{}, nil
	}
	args := make([]any, 0, len(users)+4)
	args = append(args, tenant, template, tenant, template)
	values := make([]string, len(users))
	for i, u := range users {
		values[i] = "(" + m.Placeholders(len(args)+1, 1) + ")"
		args = append(args, u)
	}
	rows, err := q.Query(ctx, `SELECT k.column1,
		(SELECT COUNT(*) FROM coupons c WHERE c.tenant_id = `+m.Placeholders(1, 1)+` AND c.user_id = k.column1
			AND c.template_key || '' = `+m.Placeholders(2, 1)+`)
		+ (SELECT COUNT(*) FROM coupons_archive a WHERE a.tenant_id = `+m.Placeholders(3, 1)+` AND a.user_id = k.column1
			AND a.template_key || '' = `+m.Placeholders(4, 1)+`)
		FROM (VALUES `+strings.Join(values, ", ")+`) AS k`, args...)
	if err != nil {
		return nil, fmt.Errorf("coupon: count held coupons: %w", err)
	}
	defer rows.Close()
	held := map[string]int64{}
	for rows.Next() {
		var (
			u string
			n int64
		)
		if err := rows.Scan(&u, &n); err != nil {
			return nil, err
		}
		held[u] = n
	}
	return held, rows.Err()
}

// kvLimits keeps the counters in a shared kv store.
type kvLimits struct {
	kv    kv.Store
	clock clock.Clock
	log   *slog.Logger

	mu      sync.Mutex
	pending map[string]time.Time // "tenant\x00business key" → when its unit was reserved
}

// pendingTTL is how long an unconfirmed reservation is remembered; maxPending bounds the memory.
const (
	pendingTTL = 10 * time.Minute
	maxPending = 100_000
)

func newKVLimits(store kv.Store, c clock.Clock, log *slog.Logger) *kvLimits {
	return &kvLimits{kv: store, clock: c, log: log, pending: map[string]time.Time{}}
}

// keys returns the template's total counter and its per-user counter function; they share the
// hash tag "cpn:<tenant>:<template>".
func (l *kvLimits) keys(tenant, template string) (string, func(user string) string) {
	tag := "cpn:" + tenant + ":" + template
	return kv.Key(tag, "issued"), func(user string) string { return kv.Key(tag, "user", user) }
}

func (l *kvLimits) reserve(ctx context.Context, tenant string, t *qualify.Template, users []string) (map[string]string, error) {
	if len(users) == 0 {
		return nil, nil
	}
	total, userKey := l.keys(tenant, t.Key)
	ops := make([]kv.Op, 0, len(users)+1)
	ops = append(ops, kv.Op{Key: total, Delta: int64(len(users)), Bounds: upTo(t.Spec.Quantity)})
	for _, u := range users {
		ops = append(ops, kv.Op{Key: userKey(u), Delta: 1, Bounds: upTo(t.Spec.PerUser)})
	}
	err := l.kv.AddAll(ctx, ops) // the common case: everyone fits, one round trip
	if err == nil {
		return nil, nil
	}
	if !errors.Is(err, kv.ErrOutOfBounds) {
		return nil, fmt.Errorf("coupon: reserve issuance: %w", err)
	}
	// Someone does not fit: one user at a time, so the others still get theirs.
	refused := map[string]string{}
	var granted []string
	sold := false
	for _, u := range users {
		if sold {
			refused[u] = CodeSoldOut
			continue
		}
		code, err := l.reserveOne(ctx, total, userKey(u), t)
		if err != nil {
			l.giveBack(ctx, tenant, t.Key, granted)
			return nil, err
		}
		if code != "" {
			refused[u], sold = code, code == CodeSoldOut
			continue
		}
		granted = append(granted, u)
	}
	return refused, nil
}

// reserveOne takes one unit of the total and of one user's counter; code is the refusal.
func (l *kvLimits) reserveOne(ctx context.Context, total, user string, t *qualify.Template) (string, error) {
	err := l.kv.AddAll(ctx, []kv.Op{{Key: total, Delta: 1, Bounds: upTo(t.Spec.Quantity)},
		{Key: user, Delta: 1, Bounds: upTo(t.Spec.PerUser)}})
	var oob *kv.OutOfBoundsError
	switch {
	case err == nil:
		return "", nil
	case errors.As(err, &oob) && oob.Key == total:
		return CodeSoldOut, nil
	case errors.As(err, &oob):
		return CodeLimitReached, nil
	}
	return "", fmt.Errorf("coupon: reserve issuance: %w", err)
}

func (l *kvLimits) giveBack(ctx context.Context, tenant, template string, users []string) {
	if len(users) == 0 {
		return
	}
	total, userKey := l.keys(tenant, template)
	ops := make([]kv.Op, 0, len(users)+1)
	ops = append(ops, kv.Op{Key: total, Delta: -int64(len(users))})
	for _, u := range users {
		ops = append(ops, kv.Op{Key: userKey(u), Delta: -1})
	}
	if err := l.kv.AddAll(context.WithoutCancel(ctx), ops); err != nil {
		l.log.Warn("coupon: could not give back issuance reservations; the template under-issues until Reconcile",
			"tenant", tenant, "template", template, "units", len(users), "err", err)
	}
}

func (*kvLimits) checkTx(context.Context, *sqldb.Tx, string, *qualify.Template, []string) (map[string]string, error) {
	return nil, nil
}

func (*kvLimits) addTx(context.Context, *sqldb.Tx, string, string, int) error { return nil }

func (l *kvLimits) reserveKey(ctx context.Context, tx *sqldb.Tx, tenant string, t *qualify.Template, user, key string) (string, bool, error) {
	pk := tenant + "\x00" + key
	now := l.clock.Now()
	l.mu.Lock()
	at, reused := l.pending[pk]
	if reused && now.Sub(at) > pendingTTL {
		delete(l.pending, pk)
		reused = false
	}
	l.mu.Unlock()
	if !reused {
		total, userKey := l.keys(tenant, t.Key)
		code, err := l.reserveOne(ctx, total, userKey(user), t)
		if err != nil || code != "" {
			return code, false, err
		}
		l.remember(pk, now)
	}
	tx.AfterCommit(func() { l.forgetKey(tenant, key) })
	return "", !reused, nil
}

func (l *kvLimits) remember(pk string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) >= maxPending {
		for k, t := range l.pending {
			if at.Sub(t) > pendingTTL {
				delete(l.pending, k)
			}
		}
		if len(l.pending) >= maxPending {
			clear(l.pending) // the forgotten units under-issue until Reconcile
		}
	}
	l.pending[pk] = at
}

func (l *kvLimits) forgetKey(tenant, key string) {
	l.mu.Lock()
	delete(l.pending, tenant+"\x00"+key)
	l.mu.Unlock()
}

// ReconcileParams names the template whose counters to recount. UserIDs lists users whose
// counters to reset even if they hold none of its coupons (a unit leaked by a crash for a user
// without coupons is not found otherwise).
type ReconcileParams struct {
	TenantID string
	Template string
	UserIDs  []string
}

// Reconciled is what Reconcile set.
type Reconciled struct {
	Template string `json:"template"`
	// Issued is the template's coupons counted in the wallet and the archive.
	Issued int64 `json:"issued"`
	// Users is how many per-user counters were reset (0 when the counters live in SQL, where
	// holdings are counted from the wallet).
	Users int `json:"users"`
}

// Reconcile recounts a template's issued coupons from SQL and resets its counters to the counts:
// it repairs the under-issue a crash between a kv reservation and its commit can leave. Run it
// when no issuance of the template is in flight: a reservation in flight is indistinguishable
// from a leaked one, and resetting it away could let the template over-issue by that many.
func (s *Service) Reconcile(ctx context.Context, p ReconcileParams) (Reconciled, error) {
	var fs problem.Fields
	checkTenant(&fs, p.TenantID)
	checkTemplateKey(&fs, "template", p.Template)
	for i, u := range p.UserIDs {
		if !tenant.ValidUserID(u) {
			fs.Add(fmt.Sprintf("user_ids[%d]", i), "must be 1 to 128 characters of A-Z a-z 0-9 _ . : @ -")
		}
	}
	if err := fs.Err("invalid reconcile request"); err != nil {
		return Reconciled{}, err
	}
	out := Reconciled{Template: p.Template}
	l, isKV := s.limits.(*kvLimits)
	if !isKV {
		err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
			if _, err := lockCounter(ctx, tx, p.TenantID, p.Template); err != nil {
				return err
			}
			n, err := countIssued(ctx, tx, p.TenantID, p.Template)
			if err != nil {
				return err
			}
			out.Issued = n
			_, err = tx.Exec(ctx, `UPDATE coupon_counters SET issued = $3 WHERE tenant_id = $1 AND template_key = $2`,
				p.TenantID, p.Template, n)
			return err
		})
		return out, err
	}
	n, err := countIssued(ctx, s.db.Reader(), p.TenantID, p.Template)
	if err != nil {
		return Reconciled{}, err
	}
	held, err := heldByUser(ctx, s.db.Reader(), p.TenantID, p.Template)
	if err != nil {
		return Reconciled{}, err
	}
	for _, u := range p.UserIDs {
		if _, ok := held[u]; !ok {
			held[u] = 0
		}
	}
	total, userKey := l.keys(p.TenantID, p.Template)
	if err := l.kv.Set(ctx, total, n); err != nil {
		return Reconciled{}, fmt.Errorf("coupon: reconcile: %w", err)
	}
	for u, c := range held {
		if err := l.kv.Set(ctx, userKey(u), c); err != nil {
			return Reconciled{}, fmt.Errorf("coupon: reconcile: %w", err)
		}
	}
	out.Issued, out.Users = n, len(held)
	return out, nil
}

// countIssued counts a template's coupons in the wallet and the archive.
func countIssued(ctx context.Context, q sqldb.Querier, tenant, template string) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM coupons WHERE tenant_id = $1 AND template_key = $2)
		+ (SELECT COUNT(*) FROM coupons_archive WHERE tenant_id = $1 AND template_key = $2)`, tenant, template).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("coupon: count issued: %w", err)
	}
	return n, nil
}

// heldByUser counts a template's coupons per user, wallet and archive.
func heldByUser(ctx context.Context, q sqldb.Querier, tenant, template string) (map[string]int64, error) {
	rows, err := q.Query(ctx, `SELECT user_id, COUNT(*) FROM (
		SELECT user_id FROM coupons WHERE tenant_id = $1 AND template_key = $2
		UNION ALL
		SELECT user_id FROM coupons_archive WHERE tenant_id = $1 AND template_key = $2
	) held GROUP BY user_id`, tenant, template)
	if err != nil {
		return nil, fmt.Errorf("coupon: count held coupons: %w", err)
	}
	defer rows.Close()
	held := map[string]int64{}
	for rows.Next() {
		var (
			u string
			n int64
		)
		if err := rows.Scan(&u, &n); err != nil {
			return nil, err
		}
		held[u] = n
	}
	return held, rows.Err()
}
