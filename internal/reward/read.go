package reward

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/tenant"
)

// Get returns a grant of the tenant with its flow's steps and what happened to each.
func (s *Service) Get(ctx context.Context, tenantID, grantID string) (Grant, error) {
	g, err := grantByID(ctx, s.db.Reader(), tenantID, grantID)
	if err != nil {
		return Grant{}, err
	}
	return s.withSteps(ctx, g)
}

// withSteps fills g.Steps: the flow's steps in order (pending where nothing happened yet); when the
// flow cannot be loaded, the step rows alone.
func (s *Service) withSteps(ctx context.Context, g Grant) (Grant, error) {
	rows, err := loadSteps(ctx, s.db.Reader(), g)
	if err != nil {
		return Grant{}, err
	}
	f, err := s.flowOf(ctx, g)
	if err != nil {
		f = &flow{}
	}
	g.Steps = f.merge(rows)
	return g, nil
}

// ListParams filters and pages a tenant's grants, newest first. State and UserID are optional.
type ListParams struct {
	TenantID string
	State    State
	UserID   string
	Cursor   string
	Limit    int
}

// List returns one page of the tenant's grants, newest first (without their steps).
func (s *Service) List(ctx context.Context, p ListParams) (Page, error) {
	var fs problem.Fields
	if p.State != "" && !p.State.Valid() {
		fs.Add("state", "must be one of pending, running, succeeded, failed, dead")
	}
	if p.UserID != "" && !tenant.ValidUserID(p.UserID) {
		fs.Add("user_id", "must be 1 to 128 characters of A-Z a-z 0-9 _ . : @ -")
	}
	if p.Limit < 0 || p.Limit > sqldb.MaxPageLimit {
		fs.Add("limit", "must be between 1 and %d", sqldb.MaxPageLimit)
	}
	cursor, err := sqldb.DecodeCursor(p.Cursor, 1)
	if err != nil {
		fs.Add("cursor", "is not a cursor from this list")
	}
	if err := fs.Err("invalid grant query"); err != nil {
		return Page{}, err
	}
	where := []string{"tenant_id = $1"}
	args := []any{p.TenantID}
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if p.State != "" {
		add("state = $%d", string(p.State))
	}
	if p.UserID != "" {
		add("user_id = $%d", p.UserID)
	}
	if len(cursor) == 1 {
		add("id < $%d", cursor[0])
	}
	limit := sqldb.PageLimit(p.Limit)
	args = append(args, limit+1)
	items, err := s.query(ctx, `SELECT `+grantColumns+` FROM reward_grants WHERE `+strings.Join(where, " AND ")+
		fmt.Sprintf(` ORDER BY id DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return Page{}, err
	}
	page := Page{Items: items}
	if len(items) > limit {
		page.Items = items[:limit]
		page.Next = sqldb.EncodeCursor(items[limit-1].ID)
	}
	return page, nil
}

// maxOwed bounds Owed's answer.
const maxOwed = 200

// Owed returns what the user is still owed, newest first, with steps: grants pending (including
// those waiting for a confirmation), running, failed (to be retried) and dead (to be replayed) —
// the answer to "where is my reward". At most 200.
func (s *Service) Owed(ctx context.Context, tenantID, userID string) ([]Grant, error) {
	if !tenant.ValidUserID(userID) {
		return nil, problem.Invalid("invalid user").WithField("user_id", "must be 1 to 128 characters of A-Z a-z 0-9 _ . : @ -")
	}
	items, err := s.query(ctx, `SELECT `+grantColumns+` FROM reward_grants
		WHERE tenant_id = $1 AND user_id = $2 AND state <> 'succeeded' ORDER BY id DESC LIMIT $3`,
		tenantID, userID, maxOwed)
	if err != nil {
		return nil, err
	}
	for i := range items {
		if items[i], err = s.withSteps(ctx, items[i]); err != nil {
			return nil, err
		}
	}
	return items, nil
}

func (s *Service) query(ctx context.Context, query string, args ...any) ([]Grant, error) {
	rows, err := s.db.Reader().Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("reward: list grants: %w", err)
	}
	defer rows.Close()
	items := []Grant{}
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, fmt.Errorf("reward: list grants: %w", err)
		}
		items = append(items, g)
	}
	return items, rows.Err()
}

// Retry puts a failed or dead grant (or a pending one, to run it now) back to pending, due now, with
// a fresh budget of attempts, then runs it at once. A grant whose steps were compensated cannot be
// replayed (grant-compensated); a running or succeeded one is a Conflict (grant-not-retryable).
func (s *Service) Retry(ctx context.Context, tenantID, grantID string) (Grant, error) {
	now := s.now()
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		g, err := grantByID(ctx, tx, tenantID, grantID)
		if err != nil {
			return err
		}
		switch g.State {
		case StateFailed, StateDead, StatePending:
		default:
			return problem.Conflict("grant %s is %s; only failed, dead or pending grants can be retried", g.ID, g.State).
				WithCode("grant-not-retryable").With("state", g.State)
		}
		var compensated int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM reward_steps WHERE tenant_id = $1 AND user_id = $2
			AND grant_id = $3 AND state = 'compensated'`, g.TenantID, g.UserID, g.ID).Scan(&compensated); err != nil {
			return err
		}
		if compensated > 0 {
			return problem.Conflict("grant %s was compensated when it died; it cannot be replayed", g.ID).
				WithCode("grant-compensated")
		}
		res, err := tx.Exec(ctx, `UPDATE reward_grants SET state = 'pending', attempts = 0, next_attempt_at = $1,
			updated_at = $1, completed_at = NULL WHERE tenant_id = $2 AND user_id = $3 AND id = $4 AND state = $5`,
			sqldb.Micros(now), g.TenantID, g.UserID, g.ID, string(g.State))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errors.Join(problem.Conflict("grant %s changed meanwhile; retry", g.ID).WithCode("grant-not-retryable"), err)
		}
		if _, err := tx.Exec(ctx, `UPDATE reward_steps SET attempts = 0 WHERE tenant_id = $1 AND user_id = $2
			AND grant_id = $3 AND state = 'failed'`, g.TenantID, g.UserID, g.ID); err != nil {
			return err
		}
		g.State, g.Attempts = StatePending, 0
		return s.emit(ctx, tx, EventRetried, g, nil)
	})
	if err != nil {
		if _, ok := problem.As(err); ok {
			return Grant{}, err
		}
		return Grant{}, fmt.Errorf("reward: retry %s: %w", grantID, err)
	}
	s.metrics.transition(StatePending)
	if _, err := s.execute(context.WithoutCancel(ctx), grantID); err != nil {
		s.log.Warn("reward: execution after retry failed; the sweeper will replay the grant", "grant", grantID, "err", err)
	}
	return s.Get(ctx, tenantID, grantID)
}
