package coupon

import (
	"context"
	"fmt"
	"time"

	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// IssueParams issues one coupon of a template to each of a list of users.
type IssueParams struct {
	TenantID string
	// Template is the key of a published coupon template; its live version is used.
	Template string
	// UserIDs get one coupon each (a user listed twice gets one); at most MaxIssueUsers.
	UserIDs []string
	// BusinessKey is the idempotency base: a user's coupon is keyed "<base>/<user_id>", so
	// repeating the call issues nothing new and answers the same coupons. Empty means a fresh
	// base (the call is then not idempotent).
	BusinessKey string
	// SourceKind and SourceID say what issued the coupons (default "api" and the business key).
	SourceKind string
	SourceID   string
}

// IssueResult is one user's answer.
type IssueResult struct {
	UserID string `json:"user_id"`
	// CouponID is the user's coupon for this business key: new (Created) or issued before.
	CouponID string `json:"coupon_id,omitempty"`
	Created  bool   `json:"created"`
	// Error says why the user got no coupon (Code is CodeSoldOut, CodeLimitReached or
	// CodeKeyConflict).
	Error *IssueError `json:"error,omitempty"`
}

// IssueError is why one user got no coupon.
type IssueError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Issued is the answer of an Issue call.
type Issued struct {
	Template        string `json:"template"`
	TemplateVersion int    `json:"template_version"`
	// Created counts the coupons this call created.
	Created int `json:"created"`
	// Results has one entry per user, in the order of the request.
	Results []IssueResult `json:"results"`
}

// Issue issues one coupon of the template's live version to each user, under the template's
// quantity and per-user limits, idempotently on the business key. Users are handled in chunks of
// 500, each in one transaction with multi-row inserts; a user refused by a limit gets a result
// with an error, the others their coupon. Bad input is a problem Invalid (nothing is issued); an
// unknown template is a NotFound.
func (s *Service) Issue(ctx context.Context, p IssueParams) (Issued, error) {
	users, err := s.checkIssue(&p)
	if err != nil {
		return Issued{}, err
	}
	t, err := s.issuable(ctx, p.TenantID, p.Template)
	if err != nil {
		return Issued{}, err
	}
	results := make(map[string]IssueResult, len(users))
	out := Issued{Template: t.Key, TemplateVersion: t.Version}
	for start := 0; start < len(users); start += insertChunk {
		n, err := s.issueChunk(ctx, p, t, users[start:min(start+insertChunk, len(users))], results)
		if err != nil {
			return Issued{}, err
		}
		out.Created += n
	}
	out.Results = make([]IssueResult, len(p.UserIDs))
	for i, u := range p.UserIDs {
		out.Results[i] = results[u]
	}
	return out, nil
}

// issuable returns the live version of a template whose coupons can still be issued: a fixed
// validity window that is over is a Conflict with code CodeTemplateEnded.
func (s *Service) issuable(ctx context.Context, tenant, key string) (*qualify.Template, error) {
	t, err := s.templates.live(ctx, tenant, key)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if _, expires := t.Window(now); !expires.After(now) {
		return nil, problem.Conflict("coupon template %q ended at %s", key, expires.Format(time.RFC3339)).
			WithCode(CodeTemplateEnded)
	}
	return t, nil
}

// checkIssue validates an Issue call, fills the defaults and returns the distinct users in order.
func (s *Service) checkIssue(p *IssueParams) ([]string, error) {
	var fs problem.Fields
	checkTenant(&fs, p.TenantID)
	checkTemplateKey(&fs, "template", p.Template)
	switch {
	case len(p.UserIDs) == 0:
		fs.Add("user_ids", "at least one user is required")
	case len(p.UserIDs) > MaxIssueUsers:
		fs.Add("user_ids", "at most %d users per call", MaxIssueUsers)
	}
	seen := make(map[string]bool, len(p.UserIDs))
	users := make([]string, 0, len(p.UserIDs))
	for i, u := range p.UserIDs {
		checkUser(&fs, fmt.Sprintf("user_ids[%d]", i), u)
		if !seen[u] {
			seen[u] = true
			users = append(users, u)
		}
	}
	if p.BusinessKey == "" {
		p.BusinessKey = ids.New("iss", s.now())
	}
	if !printablePattern.MatchString(p.BusinessKey) {
		fs.Add("business_key", "must be 1 to 200 printable ASCII characters without spaces")
	}
	if p.SourceKind == "" {
		p.SourceKind = SourceAPI
	}
	if !sourceKindPattern.MatchString(p.SourceKind) {
		fs.Add("source_kind", "must be a slug of at most 32 characters")
	}
	if p.SourceID == "" {
		p.SourceID = p.BusinessKey
	}
	if !printablePattern.MatchString(p.SourceID) {
		fs.Add("source_id", "must be 1 to 200 printable ASCII characters without spaces")
	}
	return users, fs.Err("invalid issue request")
}

// issueChunk issues to up to insertChunk users in one transaction and files their results; it
// returns how many coupons it created.
func (s *Service) issueChunk(ctx context.Context, p IssueParams, t *qualify.Template, users []string,
	results map[string]IssueResult) (int, error) {
	pairs := make([]userKey, len(users))
	for i, u := range users {
		pairs[i] = userKey{u, p.BusinessKey + "/" + u}
	}
	existing, err := findByKeys(ctx, s.db.Reader(), s.dialect, p.TenantID, pairs)
	if err != nil {
		return 0, err
	}
	var todo []string
	for _, pk := range pairs {
		if c, ok := existing[pk.key]; ok {
			results[pk.user] = existingResult(c, t.Key)
		} else {
			todo = append(todo, pk.user)
		}
	}
	if len(todo) == 0 {
		return 0, nil
	}
	refused, err := s.limits.reserve(ctx, p.TenantID, t, todo)
	if err != nil {
		return 0, err
	}
	reserved := without(todo, refused)
	if len(reserved) == 0 {
		for u, code := range refused {
			results[u] = refusedResult(u, code, t)
			s.metrics.refused.WithLabelValues(code).Inc()
		}
		return 0, nil
	}
	var (
		created   []Coupon
		raced     []string
		refusedTx map[string]string
	)
	err = s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		created, raced = nil, nil
		now := s.now()
		var err error
		if refusedTx, err = s.limits.checkTx(ctx, tx, p.TenantID, t, reserved); err != nil {
			return err
		}
		cs := make([]Coupon, 0, len(reserved))
		for _, u := range without(reserved, refusedTx) {
			cs = append(cs, s.newCoupon(p.TenantID, u, t, p.BusinessKey+"/"+u, p.SourceKind, p.SourceID, now))
		}
		inserted, err := insertCoupons(ctx, tx, s.dialect, cs)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if inserted[c.BusinessKey] {
				created = append(created, c)
			} else {
				raced = append(raced, c.UserID)
			}
		}
		if err := s.limits.addTx(ctx, tx, p.TenantID, t.Key, len(created)); err != nil {
			return err
		}
		return s.emit(ctx, tx, s.couponEvents(EventIssued, now, created, nil))
	})
	if err != nil {
		s.limits.giveBack(ctx, p.TenantID, t.Key, reserved)
		return 0, err
	}
	s.limits.giveBack(ctx, p.TenantID, t.Key, raced)
	for _, c := range created {
		results[c.UserID] = IssueResult{UserID: c.UserID, CouponID: c.ID, Created: true}
	}
	for _, m := range []map[string]string{refused, refusedTx} {
		for u, code := range m {
			results[u] = refusedResult(u, code, t)
			s.metrics.refused.WithLabelValues(code).Inc()
		}
	}
	if err := s.fileRaced(ctx, p, t, raced, results); err != nil {
		return 0, err
	}
	s.metrics.issued.WithLabelValues(p.SourceKind).Add(float64(len(created)))
	return len(created), nil
}

// fileRaced answers the users whose business key another call issued while this one ran.
func (s *Service) fileRaced(ctx context.Context, p IssueParams, t *qualify.Template, users []string, results map[string]IssueResult) error {
	if len(users) == 0 {
		return nil
	}
	pairs := make([]userKey, len(users))
	for i, u := range users {
		pairs[i] = userKey{u, p.BusinessKey + "/" + u}
	}
	existing, err := findByKeys(ctx, s.db.Reader(), s.dialect, p.TenantID, pairs)
	if err != nil {
		return err
	}
	for _, pk := range pairs {
		c, ok := existing[pk.key]
		if !ok {
			return fmt.Errorf("coupon: business key %s was taken but its coupon is not found", pk.key)
		}
		results[pk.user] = existingResult(c, t.Key)
	}
	return nil
}

// newCoupon builds a coupon of t for user, issued now.
func (s *Service) newCoupon(tenant, user string, t *qualify.Template, key, sourceKind, sourceID string, now time.Time) Coupon {
	starts, expires := t.Window(now)
	return Coupon{ID: ids.New("cpn", now), TenantID: tenant, UserID: user, Template: t.Key, TemplateVersion: t.Version,
		State: StateIssued, IssuedAt: now, StartsAt: starts.UTC(), ExpiresAt: expires.UTC(), SourceKind: sourceKind,
		SourceID: sourceID, BusinessKey: key, UpdatedAt: now}
}

// existingResult answers a user whose business key already issued a coupon.
func existingResult(ik issuedKey, template string) IssueResult {
	if ik.Template != template {
		return IssueResult{UserID: ik.UserID, Error: &IssueError{Code: CodeKeyConflict,
			Message: fmt.Sprintf("the business key %q already issued a coupon of template %q", ik.Key, ik.Template)}}
	}
	return IssueResult{UserID: ik.UserID, CouponID: ik.ID}
}

// refusedResult answers a user refused by a limit.
func refusedResult(user, code string, t *qualify.Template) IssueResult {
	return IssueResult{UserID: user, Error: &IssueError{Code: code, Message: limitMessage(code, t)}}
}

func limitMessage(code string, t *qualify.Template) string {
	if code == CodeSoldOut {
		return fmt.Sprintf("coupon template %q is sold out (%d issued)", t.Key, t.Spec.Quantity)
	}
	return fmt.Sprintf("the user already holds the %d coupon(s) of template %q one user may get", t.Spec.PerUser, t.Key)
}

// without returns users minus those in refused, in order.
func without(users []string, refused map[string]string) []string {
	if len(refused) == 0 {
		return users
	}
	out := make([]string, 0, len(users))
	for _, u := range users {
		if _, no := refused[u]; !no {
			out = append(out, u)
		}
	}
	return out
}

// TxIssueParams names a coupon to issue in the caller's transaction. It mirrors the reward
// module's IssueCouponParams (the composition root adapts one to the other: the two modules are
// on the same layer and do not import each other).
type TxIssueParams struct {
	TenantID string
	UserID   string
	// Template is the key of a published coupon template; its live version is used.
	Template string
	// BusinessKey is used as is (e.g. "<grant_id>/<step>"): the same key never issues twice.
	BusinessKey string
	SourceKind  string
	SourceID    string
}

// IssueTx issues one coupon in the caller's transaction, idempotently on the business key: a key
// that issued before returns that coupon. A limit that refuses is a problem Conflict with code
// CodeSoldOut or CodeLimitReached; an unknown template is a NotFound. With counters in a shared kv
// store, the unit reserved for a transaction that rolls back is reused when the same key is
// issued again on this node (see limits.go); with SQL counters it rolls back with the transaction.
func (s *Service) IssueTx(ctx context.Context, tx *sqldb.Tx, p TxIssueParams) (string, error) {
	var fs problem.Fields
	checkTenant(&fs, p.TenantID)
	checkUser(&fs, "user_id", p.UserID)
	checkTemplateKey(&fs, "template", p.Template)
	if !printablePattern.MatchString(p.BusinessKey) {
		fs.Add("business_key", "must be 1 to 200 printable ASCII characters without spaces")
	}
	if p.SourceKind != "" && !sourceKindPattern.MatchString(p.SourceKind) {
		fs.Add("source_kind", "must be a slug of at most 32 characters")
	}
	if len(p.SourceID) > 200 {
		fs.Add("source_id", "must be at most 200 characters")
	}
	if err := fs.Err("invalid coupon issue"); err != nil {
		return "", err
	}
	if id, found, err := s.issuedTx(ctx, tx, p); found || err != nil {
		return id, err
	}
	t, err := s.issuable(ctx, p.TenantID, p.Template)
	if err != nil {
		return "", err
	}
	code, fresh, err := s.limits.reserveKey(ctx, tx, p.TenantID, t, p.UserID, p.BusinessKey)
	if err != nil {
		return "", err
	}
	if code != "" {
		s.metrics.refused.WithLabelValues(code).Inc()
		return "", problem.Conflict("%s", limitMessage(code, t)).WithCode(code)
	}
	now := s.now()
	c := s.newCoupon(p.TenantID, p.UserID, t, p.BusinessKey, p.SourceKind, p.SourceID, now)
	inserted, err := insertCoupons(ctx, tx, s.dialect, []Coupon{c})
	if err != nil {
		return "", err
	}
	if !inserted[c.BusinessKey] { // issued by a concurrent transaction since the check
		if fresh {
			s.limits.forgetKey(p.TenantID, p.BusinessKey)
			s.limits.giveBack(ctx, p.TenantID, t.Key, []string{p.UserID})
		}
		id, _, err := s.issuedTx(ctx, tx, p)
		return id, err
	}
	if err := s.limits.addTx(ctx, tx, p.TenantID, t.Key, 1); err != nil {
		return "", err
	}
	if err := s.emit(ctx, tx, s.couponEvents(EventIssued, now, []Coupon{c}, nil)); err != nil {
		return "", err
	}
	source := p.SourceKind
	tx.AfterCommit(func() { s.metrics.issued.WithLabelValues(source).Inc() })
	return c.ID, nil
}

// issuedTx finds the coupon a business key issued, in tx.
func (s *Service) issuedTx(ctx context.Context, tx *sqldb.Tx, p TxIssueParams) (string, bool, error) {
	found, err := findByKeys(ctx, tx, s.dialect, p.TenantID, []userKey{{p.UserID, p.BusinessKey}})
	if err != nil {
		return "", false, err
	}
	c, ok := found[p.BusinessKey]
	if !ok {
		return "", false, nil
	}
	if c.Template != p.Template {
		return "", true, problem.Conflict("the business key %q already issued a coupon of template %q", p.BusinessKey, c.Template).
			WithCode(CodeKeyConflict)
	}
	return c.ID, true, nil
}
