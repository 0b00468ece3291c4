package task

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/reward"
	"github.com/perkhq/perk/internal/tenant"
)

// The filters of List.
const (
	FilterAvailable = "available" // the user can start (or claim) it now
	FilterClaimed   = "claimed"   // in progress this period
	FilterDone      = "done"      // finished this period: completed, rewarded, failed, expired or terminated
)

// The statuses of TaskView besides the user-task states.
const (
	StatusAvailable = "available" // no user task this period (or another round is allowed)
	StatusUpcoming  = "upcoming"  // visible, not active yet
	StatusEnded     = "ended"     // visible, no longer active
)

// ListParams asks for a user's tasks. Filter is "" (every visible task), available, claimed or
// done; Lang picks the texts ("zh-CN" or "en"; others fall back to English, then Chinese).
type ListParams struct {
	TenantID string
	UserID   string
	Filter   string
	Lang     string
}

// TaskView is a task as one user sees it now: the live definition and the user's current period.
type TaskView struct {
	Task        string `json:"task"`
	Version     int    `json:"version"`
	Kind        Kind   `json:"kind"`
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
	Icon        string `json:"icon,omitempty"`
	Order       int    `json:"order"`
	ClaimMode   string `json:"claim_mode"`
	// Status is available, upcoming, ended, or the state of the user's task this period.
	Status string `json:"status"`
	// Claimable: a Claim now would succeed (as far as the definition and the user's rows tell).
	Claimable  bool   `json:"claimable"`
	UserTaskID string `json:"user_task_id,omitempty"`
	Period     string `json:"period"`
	Round      int    `json:"round,omitempty"`
	// Progress against Target, the target of the next stage to complete (the last one when done).
	Progress int64         `json:"progress"`
	Target   int64         `json:"target"`
	Stage    int           `json:"stage"`
	Stages   []StageReward `json:"stages"`
	// ExpiresAt is when the period ends; TimeLeft its distance from now, in seconds.
	ExpiresAt *time.Time  `json:"expires_at,omitempty"`
	TimeLeft  int64       `json:"time_left_seconds,omitempty"`
	Streak    *StreakView `json:"streak,omitempty"`
}

// StageReward is the reward preview of one stage: its target and its inline rewards or flow.
type StageReward struct {
	Target  int64           `json:"target"`
	Rewards []reward.Reward `json:"rewards,omitempty"`
	Flow    string          `json:"flow,omitempty"`
	Done    bool            `json:"done"`
}

// List returns the user's tasks: every live task visible now (and switched on) whose audience lets
// the user in (or that the user has started), in the definitions' order, with the user's progress in
// the current period, reward previews and time left. It reads the snapshot, the user's rows of the
// current periods (one query) and their streaks.
func (s *Service) List(ctx context.Context, p ListParams) ([]TaskView, error) {
	if err := checkList(p); err != nil {
		return nil, err
	}
	now := s.now()
	loc := s.zone(p.TenantID)
	var tasks []*compiled
	for _, c := range s.index(p.TenantID).ordered {
		if c.err == nil && c.spec.Visible.contains(now) && !s.killed(p.TenantID, c.key) {
			tasks = append(tasks, c)
		}
	}
	rows, streaks, err := s.current(ctx, p.TenantID, p.UserID, tasks, now, loc)
	if err != nil {
		return nil, err
	}
	var attrs map[string]any
	out := []TaskView{}
	for _, c := range tasks {
		per := c.spec.periodAt(now, loc)
		ut, round := latestRound(rows, c, per.key)
		if ut == nil && c.audience != nil {
			if attrs == nil {
				if attrs, err = s.users(ctx, p.TenantID, p.UserID); err != nil {
					return nil, err
				}
			}
			if ok, err := c.audience.EvalBool(ctx, map[string]any{"user": attrs}); err != nil || !ok {
				continue
			}
		}
		v := s.view(c, ut, round, per, now, p.Lang)
		if r := streaks[c.key]; r != nil {
			sv := r.view(c.spec.Streak, dayNumber(now, loc))
			v.Streak = &sv
		} else if c.spec.hasStreak() {
			v.Streak = &StreakView{}
			if c.spec.Streak != nil {
				v.Streak.MakeupLeft, v.Streak.FreezeLeft = c.spec.Streak.MakeupCardsPerMonth, c.spec.Streak.FreezePerMonth
			}
		}
		if matches(p.Filter, v.Status) {
			out = append(out, v)
		}
	}
	return out, nil
}

func checkList(p ListParams) error {
	var fs problem.Fields
	if !tenant.ValidUserID(p.UserID) {
		fs.Add("user_id", "must be 1 to 128 characters of A-Z a-z 0-9 _ . : @ -")
	}
	switch p.Filter {
	case "", FilterAvailable, FilterClaimed, FilterDone:
	default:
		fs.Add("filter", "must be available, claimed or done")
	}
	return fs.Err("invalid task list request")
}

func matches(filter, status string) bool {
	switch filter {
	case FilterAvailable:
		return status == StatusAvailable
	case FilterClaimed:
		return status == string(StateClaimed)
	case FilterDone:
		switch State(status) {
		case StateCompleted, StateRewarded, StateFailed, StateExpired, StateTerminated:
			return true
		}
		return false
	}
	return true
}

// current reads the user's rows of the tasks' current periods and their streak trackers.
func (s *Service) current(ctx context.Context, tenant, user string, tasks []*compiled, now time.Time, loc *time.Location) (map[rowKey]*UserTask, map[string]*streakRow, error) {
	var keys []rowKey
	var skeys []streakKey
	for _, c := range tasks {
		per := c.spec.periodAt(now, loc)
		for r := 1; r <= c.spec.perPeriod(); r++ {
			keys = append(keys, rowKey{tenant, user, c.key, roundKey(per.key, r)})
		}
		if c.spec.hasStreak() {
			skeys = append(skeys, streakKey{tenant, user, c.key})
		}
	}
	rows := map[rowKey]*UserTask{}
	uts, err := loadUserTasks(ctx, s.db.Reader(), s.dialect, keys, false)
	if err != nil {
		return nil, nil, err
	}
	for _, ut := range uts {
		rows[rowKey{ut.TenantID, ut.UserID, ut.Task, ut.PeriodKey}] = ut
	}
	streaks := map[string]*streakRow{}
	trackers, err := loadStreaks(ctx, s.db.Reader(), s.dialect, skeys, false)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range trackers {
		streaks[r.task] = r
	}
	return rows, streaks, nil
}

// latestRound picks the latest round's row of a task in a period.
func latestRound(rows map[rowKey]*UserTask, c *compiled, period string) (*UserTask, int) {
	for r := c.spec.perPeriod(); r >= 1; r-- {
		for _, ut := range rows {
			if ut.Task == c.key && ut.PeriodKey == roundKey(period, r) {
				return ut, r
			}
		}
	}
	return nil, 0
}

// view builds what the user sees of a task, given the latest round's row (nil: none).
func (s *Service) view(c *compiled, ut *UserTask, round int, per period, now time.Time, lang string) TaskView {
	spec := &c.spec
	v := TaskView{Task: c.key, Version: c.version, Kind: spec.Kind, Title: spec.text(spec.Title, lang),
		Description: spec.text(spec.Description, lang), Icon: spec.Icon, Order: spec.Order,
		ClaimMode: spec.Claim.Mode, Period: per.key, Stages: make([]StageReward, len(spec.Stages))}
	var done uint64
	again := ut == nil || (ut.State.done() && round < spec.perPeriod())
	if ut != nil && !again {
		v.Status, v.UserTaskID, v.Round = string(ut.State), ut.ID, ut.Round
		v.Progress, v.Stage, v.ExpiresAt, done = ut.Progress, ut.Stage, ut.ExpiresAt, ut.done
	} else {
		v.Status, v.Round = StatusAvailable, round+1
		if !per.end.IsZero() {
			end := per.end.UTC()
			v.ExpiresAt = &end
		}
		switch {
		case spec.Active != nil && spec.Active.From != nil && now.Before(*spec.Active.From):
			v.Status = StatusUpcoming
		case !spec.Active.contains(now):
			v.Status = StatusEnded
		}
		v.Claimable = v.Status == StatusAvailable
	}
	for i, st := range spec.Stages {
		v.Stages[i] = StageReward{Target: st.Target, Rewards: st.Rewards, Flow: st.Flow, Done: done&(1<<i) != 0}
		if v.Target == 0 && done&(1<<i) == 0 {
			v.Target = st.Target
		}
	}
	if v.Target == 0 && len(spec.Stages) > 0 {
		v.Target = spec.Stages[len(spec.Stages)-1].Target
	}
	if v.ExpiresAt != nil && v.ExpiresAt.After(now) {
		v.TimeLeft = int64(v.ExpiresAt.Sub(now) / time.Second)
	}
	return v
}

// TaskDetail is one task for one user: the view, the current user task with its grants, and the
// user tasks of past periods.
type TaskDetail struct {
	TaskView
	Current *UserTask  `json:"current,omitempty"`
	History []UserTask `json:"history"`
}

// maxHistory bounds TaskDetail.History.
const maxHistory = 50

// Get returns one live task for a user, with the current period's user task (and its grants) and
// up to 50 user tasks of earlier periods, newest first. A task that is not live is NotFound.
func (s *Service) Get(ctx context.Context, tenantID, userID, key string) (TaskDetail, error) {
	if err := checkList(ListParams{UserID: userID}); err != nil {
		return TaskDetail{}, err
	}
	c, err := s.liveTask(tenantID, key)
	if err != nil {
		return TaskDetail{}, err
	}
	now := s.now()
	loc := s.zone(tenantID)
	rows, streaks, err := s.current(ctx, tenantID, userID, []*compiled{c}, now, loc)
	if err != nil {
		return TaskDetail{}, err
	}
	per := c.spec.periodAt(now, loc)
	ut, round := latestRound(rows, c, per.key)
	d := TaskDetail{TaskView: s.view(c, ut, round, per, now, ""), History: []UserTask{}}
	if r := streaks[c.key]; r != nil {
		sv := r.view(c.spec.Streak, dayNumber(now, loc))
		d.Streak = &sv
	}
	if ut != nil {
		cur, err := s.withGrants(ctx, *ut)
		if err != nil {
			return TaskDetail{}, err
		}
		d.Current = &cur
	}
	q, err := s.db.Reader().Query(ctx, `SELECT `+userTaskColumns+` FROM user_tasks
		WHERE tenant_id = $1 AND user_id = $2 AND task_key = $3 ORDER BY claimed_at DESC, id DESC LIMIT $4`,
		tenantID, userID, key, maxHistory+1)
	if err != nil {
		return TaskDetail{}, fmt.Errorf("task: history: %w", err)
	}
	past, err := collectUserTasks(q)
	if err != nil {
		return TaskDetail{}, fmt.Errorf("task: history: %w", err)
	}
	for _, h := range past {
		if (ut == nil || h.ID != ut.ID) && len(d.History) < maxHistory {
			d.History = append(d.History, *h)
		}
	}
	return d, nil
}

// userTask reads a user task with its grants.
func (s *Service) userTask(ctx context.Context, tenantID, id string) (UserTask, error) {
	ut, err := userTaskByID(ctx, s.db.Reader(), tenantID, id, "")
	if err != nil {
		return UserTask{}, err
	}
	if ut == nil {
		return UserTask{}, userTaskNotFound(id)
	}
	return s.withGrants(ctx, *ut)
}

func (s *Service) withGrants(ctx context.Context, ut UserTask) (UserTask, error) {
	rows, err := grantRowsOf(ctx, s.db.Reader(), ut.TenantID, ut.UserID, ut.ID)
	if err != nil {
		return UserTask{}, err
	}
	ut.Grants = make([]GrantRef, len(rows))
	for i, g := range rows {
		ut.Grants[i] = g.ref()
	}
	return ut, nil
}

// UserTaskByID returns one user task of the tenant with its grants (merchant lookup).
func (s *Service) UserTaskByID(ctx context.Context, tenantID, id string) (UserTask, error) {
	return s.userTask(ctx, tenantID, id)
}

// Page is one page of user tasks, with the cursor of the next page ("" on the last page).
type Page struct {
	Items []UserTask `json:"items"`
	Next  string     `json:"next_cursor,omitempty"`
}

// UserTasks returns one page of a user's tasks, every task and period, newest first (merchant
// lookup). limit 0 means 50, at most 200.
func (s *Service) UserTasks(ctx context.Context, tenantID, userID, cursor string, limit int) (Page, error) {
	var fs problem.Fields
	if !tenant.ValidUserID(userID) {
		fs.Add("user_id", "must be 1 to 128 characters of A-Z a-z 0-9 _ . : @ -")
	}
	if limit < 0 || limit > sqldb.MaxPageLimit {
		fs.Add("limit", "must be between 1 and %d", sqldb.MaxPageLimit)
	}
	parts, err := sqldb.DecodeCursor(cursor, 1)
	if err != nil {
		fs.Add("cursor", "is not a cursor from this list")
	}
	if err := fs.Err("invalid user task query"); err != nil {
		return Page{}, err
	}
	before := "\x7f"
	if len(parts) == 1 {
		before = parts[0]
	}
	limit = sqldb.PageLimit(limit)
	rows, err := s.db.Reader().Query(ctx, `SELECT `+userTaskColumns+` FROM user_tasks
		WHERE tenant_id = $1 AND user_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4`, tenantID, userID, before, limit+1)
	if err != nil {
		return Page{}, fmt.Errorf("task: user tasks: %w", err)
	}
	uts, err := collectUserTasks(rows)
	if err != nil {
		return Page{}, fmt.Errorf("task: user tasks: %w", err)
	}
	page := Page{Items: make([]UserTask, 0, len(uts))}
	for _, ut := range uts {
		page.Items = append(page.Items, *ut)
	}
	if len(page.Items) > limit {
		page.Items = page.Items[:limit]
		page.Next = sqldb.EncodeCursor(page.Items[limit-1].ID)
	}
	return page, nil
}

// Stats are a task's figures over every user and period.
type Stats struct {
	Task string `json:"task"`
	// Claimed counts every user task ever created (claimed, auto-claimed or assigned).
	Claimed int64 `json:"claimed"`
	// InProgress counts those still claimed.
	InProgress int64 `json:"in_progress"`
	// Completed counts those whose every stage completed (now completed, rewarded or failed).
	Completed  int64 `json:"completed"`
	Rewarded   int64 `json:"rewarded"`
	Failed     int64 `json:"failed"`
	Expired    int64 `json:"expired"`
	Terminated int64 `json:"terminated"`
	// RewardCost is what the task's succeeded grants delivered, by asset: points, growth, coupons.
	RewardCost map[string]int64 `json:"reward_cost"`
	// Owed is what its grants not yet succeeded will deliver.
	Owed map[string]int64 `json:"owed"`
	// Budget is what the budget has used (nil without a budget row).
	Budget *BudgetUse `json:"budget,omitempty"`
}

// BudgetUse is what a task's budget has spent.
type BudgetUse struct {
	Completions int64 `json:"completions"`
	CostPoints  int64 `json:"cost_points"`
}

// Stats counts a task's user tasks by state and sums its rewards' cost. The task need not be live.
func (s *Service) Stats(ctx context.Context, tenantID, key string) (Stats, error) {
	if !keyPattern(key) {
		return Stats{}, problem.Invalid("invalid task").WithField("task", "must be a task key")
	}
	q := s.db.Reader()
	st := Stats{Task: key}
	rows, err := q.Query(ctx, `SELECT state, COUNT(*) FROM user_tasks WHERE tenant_id = $1
		AND state IN ('claimed', 'completed', 'rewarded', 'failed', 'expired', 'terminated') AND task_key = $2
		GROUP BY state`, tenantID, key)
	if err != nil {
		return Stats{}, fmt.Errorf("task: stats: %w", err)
	}
	for rows.Next() {
		var (
			state string
			n     int64
		)
		if err := rows.Scan(&state, &n); err != nil {
			rows.Close()
			return Stats{}, fmt.Errorf("task: stats: %w", err)
		}
		st.Claimed += n
		switch State(state) {
		case StateClaimed:
			st.InProgress = n
		case StateCompleted:
			st.Completed += n
		case StateRewarded:
			st.Rewarded, st.Completed = n, st.Completed+n
		case StateFailed:
			st.Failed, st.Completed = n, st.Completed+n
		case StateExpired:
			st.Expired = n
		case StateTerminated:
			st.Terminated = n
		}
	}
	if err := rows.Close(); err != nil {
		return Stats{}, err
	}
	var paid, owed Cost
	for _, sum := range []struct {
		cond string
		into *Cost
	}{{"state = 'succeeded'", &paid}, {"state <> 'succeeded'", &owed}} {
		if err := q.QueryRow(ctx, `SELECT COALESCE(SUM(points), 0), COALESCE(SUM(growth), 0), COALESCE(SUM(coupons), 0)
			FROM user_task_grants WHERE tenant_id = $1 AND task_key = $2 AND `+sum.cond, tenantID, key).
			Scan(&sum.into.Points, &sum.into.Growth, &sum.into.Coupons); err != nil {
			return Stats{}, fmt.Errorf("task: stats: %w", err)
		}
	}
	st.RewardCost, st.Owed = paid.assets(), owed.assets()
	var use BudgetUse
	err = q.QueryRow(ctx, `SELECT completions, cost FROM task_budgets WHERE tenant_id = $1 AND task_key = $2`,
		tenantID, key).Scan(&use.Completions, &use.CostPoints)
	switch {
	case err == nil:
		st.Budget = &use
	case !errors.Is(err, sql.ErrNoRows):
		return Stats{}, fmt.Errorf("task: stats: %w", err)
	}
	return st, nil
}

// keyPattern reports whether key is a config key.
func keyPattern(key string) bool { return flowKeyPattern.MatchString(key) }
