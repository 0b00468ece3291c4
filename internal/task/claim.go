package task

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/reward"
	"github.com/perkhq/perk/internal/tenant"
)

// ReceiptSource is the event source of completion receipts.
const ReceiptSource = "receipt"

var (
	businessIDPattern = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)
)

// maxPayloadBytes bounds a completion receipt's payload.
const maxPayloadBytes = 16 << 10

// ClaimParams names the task a user claims.
type ClaimParams struct {
	TenantID string
	UserID   string
	Task     string
}

// Claim gives the user the task for the current period: a claimed user task, from which on
// matching events count (the only way into a manual task). Claiming a task already claimed this
// period returns that user task. Refusals: the task is not live (NotFound task-not-found), switched
// off (Conflict task-disabled), outside its active window (Conflict task-not-active), not for this
// user (Forbidden task-audience-mismatch), done as often as the period allows (Conflict
// task-limit-reached) or closed this period (Conflict task-closed).
func (s *Service) Claim(ctx context.Context, p ClaimParams) (UserTask, error) {
	c, err := s.open(p.TenantID, p.UserID, p.Task)
	if err != nil {
		return UserTask{}, err
	}
	now := s.now()
	if !c.spec.Active.contains(now) {
		return UserTask{}, notActive(c.key)
	}
	var out UserTask
	err = s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		b := s.newBatch(ctx, tx)
		if err := b.audience(p.TenantID, p.UserID, c); err != nil {
			return err
		}
		per := c.spec.periodAt(now, s.zone(p.TenantID))
		if err := b.loadPeriod(p.TenantID, p.UserID, c, per); err != nil {
			return err
		}
		ut, round := b.current(p.TenantID, p.UserID, c.key, per.key, c.spec.perPeriod())
		switch {
		case ut != nil && ut.State == StateClaimed:
		case ut != nil && ut.State.done() && round < c.spec.perPeriod():
			ut = b.create(p.TenantID, p.UserID, c, per, round+1)
		case ut != nil && ut.State.done():
			return problem.Conflict("the task %q is done for this period", c.key).WithCode("task-limit-reached")
		case ut != nil:
			return problem.Conflict("the task %q is %s for this period", c.key, ut.State).WithCode("task-closed")
		default:
			ut = b.create(p.TenantID, p.UserID, c, per, 1)
		}
		out = *ut
		return b.flush()
	})
	return out, unwrapRefusal(err)
}

// open checks a C-end call's user and task: the live version, not switched off.
func (s *Service) open(tenantID, userID, key string) (*compiled, error) {
	if !tenant.ValidUserID(userID) {
		return nil, problem.Invalid("invalid user").WithField("user_id", "must be 1 to 128 characters of A-Z a-z 0-9 _ . : @ -")
	}
	c, err := s.liveTask(tenantID, key)
	if err != nil {
		return nil, err
	}
	if s.killed(tenantID, key) {
		return nil, problem.Conflict("the task %q is switched off", key).WithCode("task-disabled")
	}
	return c, nil
}

// loadPeriod reads the user's rows of a task in a period (every round) and the streak tracker.
func (b *batch) loadPeriod(tenant, user string, c *compiled, p period) error {
	for r := 1; r <= c.spec.perPeriod(); r++ {
		b.rowKeys = append(b.rowKeys, rowKey{tenant, user, c.key, roundKey(p.key, r)})
	}
	if c.spec.hasStreak() {
		b.streakKeys = append(b.streakKeys, streakKey{tenant, user, c.key})
	}
	return b.load()
}

// unwrapRefusal turns a refusal back into its problem.
func unwrapRefusal(err error) error {
	var r refusal
	if errors.As(err, &r) {
		return r.p
	}
	return err
}

// CompleteParams is a completion receipt: the merchant's backend reports that the user did the
// task's action, identified by its business id, with a payload (the event's data: a sum metric
// reads its field there).
type CompleteParams struct {
	TenantID   string
	UserID     string
	Task       string
	BusinessID string
	Payload    json.RawMessage
}

// Completion is the answer to a completion receipt.
type Completion struct {
	UserTask UserTask `json:"user_task"`
	// Grants are the grants the receipt created, as they stand after running inline: succeeded
	// with their outputs, or pending / failed (the sweeper goes on with them).
	Grants []reward.Grant `json:"grants"`
	// Replayed is true when the business id was completed before: nothing changed, the user task
	// is as it stands now.
	Replayed bool `json:"replayed"`
}

// Complete applies a completion receipt synchronously: it counts as one matching event (id
// BusinessID, source "receipt", at the current time; the trigger filter is not applied) in one
// transaction with the receipt's record, runs the grants it creates inline, and answers with the
// user task and those grants. It is idempotent on (user, task, business id): the same payload
// again returns the current state (Replayed); another payload is a Conflict
// (idempotency-mismatch). A receipt that cannot count is refused with the reason (see Claim; also
// task-not-claimed for a manual task, invalid data for a sum or distinct metric) and records
// nothing.
func (s *Service) Complete(ctx context.Context, p CompleteParams) (Completion, error) {
	payload, err := checkReceipt(p)
	if err != nil {
		return Completion{}, err
	}
	c, err := s.open(p.TenantID, p.UserID, p.Task)
	if err != nil {
		return Completion{}, err
	}
	hash := payloadHash(payload)
	var (
		utID     string
		grants   []grantRow
		replayed bool
	)
	err = s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		grants, replayed = nil, false
		var err error
		if utID, replayed, err = s.claimReceipt(ctx, tx, p, hash); err != nil || replayed {
			return err
		}
		utID, grants, err = s.applyReceipt(ctx, tx, c, p, payload)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE task_receipts SET user_task_id = $1
			WHERE tenant_id = $2 AND user_id = $3 AND task_key = $4 AND business_id = $5`,
			utID, p.TenantID, p.UserID, p.Task, p.BusinessID)
		return err
	})
	if err != nil {
		return Completion{}, unwrapRefusal(err)
	}
	out := Completion{Replayed: replayed, Grants: []reward.Grant{}}
	for _, row := range grants {
		g, err := s.opts.Rewards.Get(ctx, p.TenantID, row.grantID)
		if err != nil {
			return Completion{}, err
		}
		if row.state != grantSucceeded { // delivered in the transaction: recorded there already
			if err := s.recordGrant(ctx, p.TenantID, p.UserID, g); err != nil {
				return Completion{}, err
			}
		}
		out.Grants = append(out.Grants, g)
	}
	ut, err := s.userTask(ctx, p.TenantID, utID)
	if err != nil {
		return Completion{}, err
	}
	out.UserTask = ut
	return out, nil
}

func checkReceipt(p CompleteParams) (json.RawMessage, error) {
	var fs problem.Fields
	if !businessIDPattern.MatchString(p.BusinessID) {
		fs.Add("business_id", "must be 1 to 128 printable ASCII characters without spaces")
	}
	payload := bytes.TrimSpace(p.Payload)
	switch {
	case len(payload) == 0 || string(payload) == "null":
		payload = []byte(`{}`)
	case len(payload) > maxPayloadBytes:
		fs.Add("payload", "must be at most %d bytes", maxPayloadBytes)
	case payload[0] != '{' || !json.Valid(payload):
		fs.Add("payload", "must be a JSON object")
	}
	return payload, fs.Err("invalid completion receipt")
}

// payloadHash fingerprints a payload independently of its members' order and spacing.
func payloadHash(payload json.RawMessage) string {
	var v any
	canonical := []byte(payload)
	if json.Unmarshal(payload, &v) == nil {
		canonical, _ = json.Marshal(v)
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// claimReceipt records the receipt; a receipt recorded before is a replay (same payload) or a
// Conflict (another payload). It returns the replayed receipt's user task.
func (s *Service) claimReceipt(ctx context.Context, tx *sqldb.Tx, p CompleteParams, hash string) (string, bool, error) {
	res, err := tx.Exec(ctx, `INSERT INTO task_receipts (tenant_id, user_id, task_key, business_id, payload_hash,
		user_task_id, created_at) VALUES ($1, $2, $3, $4, $5, '', $6) ON CONFLICT DO NOTHING`,
		p.TenantID, p.UserID, p.Task, p.BusinessID, hash, sqldb.Micros(s.now()))
	if err != nil {
		return "", false, fmt.Errorf("task: record receipt: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return "", false, err
	}
	var was, utID string
	err = tx.QueryRow(ctx, `SELECT payload_hash, user_task_id FROM task_receipts
		WHERE tenant_id = $1 AND user_id = $2 AND task_key = $3 AND business_id = $4`,
		p.TenantID, p.UserID, p.Task, p.BusinessID).Scan(&was, &utID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, errRace
	}
	if err != nil {
		return "", false, fmt.Errorf("task: read receipt: %w", err)
	}
	if was != hash {
		return "", false, problem.Conflict("business id %q was completed with another payload", p.BusinessID).
			WithCode("idempotency-mismatch").WithField("business_id", "was used with another payload")
	}
	return utID, true, nil
}

// applyReceipt applies the receipt as an event and returns its user task and the grants it made
// (state grantSucceeded: delivered and recorded in tx).
func (s *Service) applyReceipt(ctx context.Context, tx *sqldb.Tx, c *compiled, p CompleteParams, payload json.RawMessage) (string, []grantRow, error) {
	now := s.now()
	b := s.newBatch(ctx, tx)
	w := &work{e: bus.Behaviour{TenantID: p.TenantID, ID: p.BusinessID, Source: ReceiptSource, UserID: p.UserID,
		Type: c.spec.Trigger.EventTypes[0], Time: now, ReceivedAt: now, Data: payload},
		tasks: []*compiled{c}, receipt: true}
	b.want(w)
	if err := b.load(); err != nil {
		return "", nil, err
	}
	if _, err := b.applyTo(w, c); err != nil {
		return "", nil, err
	}
	if err := b.flush(); err != nil {
		return "", nil, err
	}
	return w.row.ID, b.grants, nil
}
