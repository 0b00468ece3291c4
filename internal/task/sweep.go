package task

import (
	"context"
	"fmt"
	"time"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// sweepBatch is how many user tasks one sweep transaction moves.
const sweepBatch = 500

// ExpireDue moves up to limit claimed user tasks whose period has ended to expired, in one
// transaction, and returns how many. Rows are claimed with SKIP LOCKED on PostgreSQL, so every node
// may sweep at once. limit <= 0 means 500. Completed user tasks are not touched: their rewards are
// owed and still delivered.
func (s *Service) ExpireDue(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		limit = sweepBatch
	}
	now := s.now()
	return s.sweep(ctx, StateExpired, "", `state = 'claimed' AND expires_at > 0 AND expires_at <= $1
		ORDER BY expires_at LIMIT $2`, sqldb.Micros(now), limit)
}

// Run expires due user tasks every Options.SweepInterval until ctx is done (a full batch sweeps
// again at once). Every node may run it.
func (s *Service) Run(ctx context.Context) error {
	interval := s.opts.SweepInterval
	if interval <= 0 {
		interval = time.Minute
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		n, err := s.ExpireDue(ctx, sweepBatch)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("task: expiry sweep", "err", err)
		}
		next := interval
		if n >= sweepBatch {
			next = 0
		}
		timer.Reset(next)
	}
}

// TerminateParams stops a task.
type TerminateParams struct {
	TenantID string
	Task     string
	// Reason is recorded on every user task it closes (at most 200 characters).
	Reason string
	// Actor is who stops it, for the config center's audit trail.
	Actor string
}

// Terminate stops a task: it archives the task in the config center (every node stops serving it
// within seconds; an archived task can be published again) and moves every claimed user task of it
// to terminated, recording the reason, a batch per transaction. Completed and failed user tasks are
// left alone: their rewards are owed and still delivered (a failed one can be replayed). It returns
// how many user tasks it closed. Terminating a task already archived closes what is left.
func (s *Service) Terminate(ctx context.Context, p TerminateParams) (int, error) {
	if len(p.Reason) > 200 {
		return 0, problem.Invalid("invalid termination").WithField("reason", "must be at most 200 characters")
	}
	r, err := s.opts.Catalog.Get(ctx, catalog.GetParams{TenantID: p.TenantID, Kind: KindTask, Key: p.Task})
	if problem.Is(err, problem.KindNotFound) {
		return 0, problem.NotFound("task %q not found", p.Task).WithCode("task-not-found")
	}
	if err != nil {
		return 0, err
	}
	if r.State != catalog.StateArchived {
		if _, err := s.opts.Catalog.Archive(ctx, catalog.ArchiveParams{TenantID: p.TenantID, ID: r.ID,
			Actor: p.Actor}); err != nil && !problem.Is(err, problem.KindConflict) {
			return 0, err
		}
	}
	total := 0
	for {
		n, err := s.sweep(ctx, StateTerminated, p.Reason, `tenant_id = $1 AND task_key = $2 AND state = 'claimed'
			ORDER BY id LIMIT $3`, p.TenantID, p.Task, sweepBatch)
		total += n
		if err != nil || n < sweepBatch {
			return total, err
		}
	}
}

// sweep moves the rows a condition selects (state 'claimed' among them) to state to, in one
// transaction with their events.
func (s *Service) sweep(ctx context.Context, to State, reason, where string, args ...any) (int, error) {
	lock := s.db.Dialect().SkipLocked()
	n := 0
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+userTaskColumns+` FROM user_tasks WHERE `+where+lock, args...)
		if err != nil {
			return fmt.Errorf("task: select user tasks to %s: %w", to, err)
		}
		uts, err := collectUserTasks(rows)
		if err != nil {
			return fmt.Errorf("task: select user tasks to %s: %w", to, err)
		}
		events := make([]bus.Event, 0, len(uts))
		for _, ut := range uts {
			if reason != "" {
				ut.Reason = reason
			}
			e, err := s.move(ut, to, nil)
			if err != nil {
				return err
			}
			events = append(events, e)
		}
		if err := saveUserTasks(ctx, tx, s.dialect, uts); err != nil {
			return err
		}
		n = len(uts)
		tx.AfterCommit(func() { s.metrics.transitions.WithLabelValues(string(to)).Add(float64(n)) })
		return s.emit(ctx, tx, events)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
