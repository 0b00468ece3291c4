package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/reward"
)

// GrantsConsumer is the durable name of the consumer of grant outcomes on the DOMAIN stream.
const GrantsConsumer = "task-grants"

// ConsumeGrants starts the durable consumer "task-grants" of grant events on the DOMAIN stream,
// acting on grant.succeeded, grant.failed and grant.dead: the outcome of a task's grant moves its
// user task on (completed → rewarded or failed, failed → rewarded once a replay succeeds). Each
// event is applied exactly once, in batches of events arriving together (bus.ConsumeBatchTx: one
// transaction per batch, a failing batch retried event by event); events of other types and grants
// of other sources are acknowledged unread, with no write (ConsumerOptions.Relevant). Every node
// may run it.
func (s *Service) ConsumeGrants(ctx context.Context, b *bus.Bus) (stop func(), err error) {
	return b.ConsumeBatchTx(ctx, s.db, bus.ConsumerOptions{Stream: bus.Domain, Name: GrantsConsumer,
		// One filter (grant.>) rather than three: servers before NATS 2.10 take one only.
		FilterSubjects: []string{b.Subject(bus.Domain, "grant", ">")}, Relevant: taskGrantEvents},
		func(ctx context.Context, tx *sqldb.Tx, msgs []bus.Msg) error {
			for _, m := range msgs {
				e, err := bus.DecodeEvent(m)
				if err != nil {
					return bus.Permanent(err)
				}
				if err := s.HandleGrantEvent(ctx, tx, e); err != nil {
					return err
				}
			}
			return nil
		})
}

// taskGrantEvents picks the grant outcomes of task grants; a message that does not decode is
// relevant, so that the handler terminates it.
func taskGrantEvents(_ context.Context, msgs []bus.Msg) ([]bool, error) {
	out := make([]bool, len(msgs))
	for i, m := range msgs {
		e, err := bus.DecodeEvent(m)
		if err != nil {
			out[i] = true
			continue
		}
		switch e.Type {
		case reward.EventSucceeded, reward.EventFailed, reward.EventDead:
			var data grantEvent
			out[i] = json.Unmarshal(e.Data, &data) != nil || data.SourceKind == SourceKind
		}
	}
	return out, nil
}

// grantEvent is what the task center reads of a grant.* event's data.
type grantEvent struct {
	GrantID    string `json:"grant_id"`
	SourceKind string `json:"source_kind"`
	SourceID   string `json:"source_id"`
}

// HandleGrantEvent applies a grant.succeeded, grant.failed or grant.dead event in the caller's
// transaction: it records the grant's state and settles the user task that earned it. Events of
// other types or about grants of other sources change nothing; a succeeded grant stays succeeded
// whatever arrives after.
func (s *Service) HandleGrantEvent(ctx context.Context, tx *sqldb.Tx, e bus.Event) error {
	var state string
	switch e.Type {
	case reward.EventSucceeded:
		state = grantSucceeded
	case reward.EventFailed:
		state = grantFailed
	case reward.EventDead:
		state = grantDead
	default:
		return nil
	}
	var data grantEvent
	if err := json.Unmarshal(e.Data, &data); err != nil {
		return bus.Permanent(fmt.Errorf("task: grant event %s: %w", e.ID, err))
	}
	if data.SourceKind != SourceKind || data.GrantID == "" {
		return nil
	}
	return s.outcome(ctx, tx, e.TenantID, e.UserID, data.GrantID, state)
}

// outcome records a grant's state and settles the user task whose stage it pays.
func (s *Service) outcome(ctx context.Context, tx *sqldb.Tx, tenantID, userID, grantID, state string) error {
	g, changed, ok, err := setGrantState(ctx, tx, tenantID, userID, grantID, state, sqldb.Micros(s.now()))
	if err != nil || !ok || !changed || g.kind != grantStage {
		return err
	}
	return s.settle(ctx, tx, tenantID, g.userTaskID)
}

// settle moves a completed (or failed) user task on from its stage grants: rewarded when every one
// succeeded, failed when one failed or died.
func (s *Service) settle(ctx context.Context, tx *sqldb.Tx, tenantID, userTaskID string) error {
	ut, err := userTaskByID(ctx, tx, tenantID, userTaskID, s.dialect.ForUpdate())
	if err != nil || ut == nil || (ut.State != StateCompleted && ut.State != StateFailed) {
		return err
	}
	rows, err := grantRowsOf(ctx, tx, tenantID, ut.UserID, ut.ID)
	if err != nil {
		return err
	}
	allOK, failed := true, ""
	var ids []string
	for _, g := range rows {
		if g.kind != grantStage {
			continue
		}
		ids = append(ids, g.grantID)
		allOK = allOK && g.state == grantSucceeded
		if failed == "" && (g.state == grantFailed || g.state == grantDead) {
			failed = g.grantID
		}
	}
	var to State
	switch {
	case allOK && len(ids) > 0:
		to = StateRewarded
	case failed != "" && ut.State == StateCompleted:
		to, ids = StateFailed, []string{failed}
	default:
		return nil
	}
	e, err := s.move(ut, to, ids)
	if err != nil {
		return err
	}
	if err := saveUserTasks(ctx, tx, s.dialect, []*UserTask{ut}); err != nil {
		return err
	}
	tx.AfterCommit(func() { s.metrics.transitions.WithLabelValues(string(to)).Inc() })
	return s.emit(ctx, tx, []bus.Event{e})
}

// recordGrant records what a grant run inline (or replayed) ended as, in its own transaction;
// a grant still pending or running is left to its events.
func (s *Service) recordGrant(ctx context.Context, tenantID, userID string, g reward.Grant) error {
	var state string
	switch g.State {
	case reward.StateSucceeded:
		state = grantSucceeded
	case reward.StateFailed:
		state = grantFailed
	case reward.StateDead:
		state = grantDead
	default:
		return nil
	}
	return s.db.Tx(ctx, func(tx *sqldb.Tx) error { return s.outcome(ctx, tx, tenantID, userID, g.ID, state) })
}

// Replay retries the failed (and dead) grants of a user task through reward.Service.Retry, which
// runs them at once, and records their outcome: the user task moves to rewarded when they succeed.
// A user task with nothing to retry is a Conflict (task-nothing-to-replay).
func (s *Service) Replay(ctx context.Context, tenantID, userTaskID string) (UserTask, error) {
	ut, err := userTaskByID(ctx, s.db.Reader(), tenantID, userTaskID, "")
	if err != nil {
		return UserTask{}, err
	}
	if ut == nil {
		return UserTask{}, userTaskNotFound(userTaskID)
	}
	rows, err := grantRowsOf(ctx, s.db.Reader(), tenantID, ut.UserID, ut.ID)
	if err != nil {
		return UserTask{}, err
	}
	retried := 0
	for _, row := range rows {
		if row.state == grantSucceeded {
			continue
		}
		g, err := s.opts.Rewards.Retry(ctx, tenantID, row.grantID)
		if problem.Is(err, problem.KindConflict) {
			// Running, or succeeded meanwhile: record what it is.
			g, err = s.opts.Rewards.Get(ctx, tenantID, row.grantID)
		} else if err == nil {
			retried++
		}
		if err != nil {
			return UserTask{}, err
		}
		if err := s.recordGrant(ctx, tenantID, ut.UserID, g); err != nil {
			return UserTask{}, err
		}
	}
	if retried == 0 {
		return UserTask{}, problem.Conflict("user task %s has no failed grant to replay", userTaskID).
			WithCode("task-nothing-to-replay")
	}
	return s.userTask(ctx, tenantID, userTaskID)
}

// ReplayFailed replays every failed user task of a task (see Replay) and returns how many it
// replayed. It stops at the first error other than a user task with nothing to retry.
func (s *Service) ReplayFailed(ctx context.Context, tenantID, task string) (int, error) {
	n, after := 0, ""
	for {
		rows, err := s.db.Reader().Query(ctx, `SELECT id FROM user_tasks
			WHERE tenant_id = $1 AND task_key = $2 AND state = 'failed' AND id > $3 ORDER BY id LIMIT 100`,
			tenantID, task, after)
		if err != nil {
			return n, fmt.Errorf("task: failed user tasks: %w", err)
		}
		var idList []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return n, err
			}
			idList = append(idList, id)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return n, fmt.Errorf("task: failed user tasks: %w", err)
		}
		for _, id := range idList {
			_, err := s.Replay(ctx, tenantID, id)
			if err != nil && !problem.Is(err, problem.KindConflict) {
				return n, err
			}
			if err == nil {
				n++
			}
		}
		if len(idList) < 100 {
			return n, nil
		}
		after = idList[len(idList)-1]
	}
}

func userTaskNotFound(id string) error {
	return problem.NotFound("user task %q not found", id).WithCode("user-task-not-found")
}
