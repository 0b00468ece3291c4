package webhook

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// ConsumerName is the default durable name of the fan-out consumer on the DOMAIN stream.
const ConsumerName = "webhooks"

// MaxTestDataBytes bounds the data of a test event.
const MaxTestDataBytes = 16 << 10

// Consume starts the fan-out: a ConsumeTx consumer on the DOMAIN stream that, for each event, queues
// one delivery per enabled endpoint of the event's merchant whose filters match, in the transaction
// that records the message as processed. opts.Stream defaults to DOMAIN and opts.Name to
// ConsumerName; instances with one name on several nodes share the events.
func (s *Service) Consume(ctx context.Context, b *bus.Bus, opts bus.ConsumerOptions) (stop func(), err error) {
	if opts.Stream == "" {
		opts.Stream = bus.Domain
	}
	if opts.Name == "" {
		opts.Name = ConsumerName
	}
	return b.ConsumeTx(ctx, s.db, opts, func(ctx context.Context, tx *sqldb.Tx, m bus.Msg) error {
		e, err := bus.DecodeEvent(m)
		if err != nil {
			return bus.Permanent(err)
		}
		_, err = s.Fanout(ctx, tx, e)
		return err
	})
}

// Fanout queues, in tx, one delivery of e to each enabled endpoint of e's merchant whose filters
// match its type, and returns how many it queued. An (endpoint, event) pair is queued at most once,
// however often the event is fanned out.
func (s *Service) Fanout(ctx context.Context, tx *sqldb.Tx, e bus.Event) (int, error) {
	endpoints, err := matchingEndpoints(ctx, tx, e)
	if err != nil || len(endpoints) == 0 {
		return 0, err
	}
	payload, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("webhook: encode event %s: %w", e.ID, err)
	}
	now := s.opts.Clock.Now()
	queued := 0
	for _, endpointID := range endpoints {
		n, err := insertDelivery(ctx, tx, e, endpointID, payload, now)
		if err != nil {
			return 0, err
		}
		queued += n
	}
	if queued > 0 {
		tx.AfterCommit(s.wake)
	}
	return queued, nil
}

func matchingEndpoints(ctx context.Context, tx *sqldb.Tx, e bus.Event) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT id, event_types FROM webhook_endpoints WHERE tenant_id = $1 AND enabled = $2
		ORDER BY id`, e.TenantID, true)
	if err != nil {
		return nil, fmt.Errorf("webhook: load endpoints: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, types string
		if err := rows.Scan(&id, &types); err != nil {
			return nil, err
		}
		var filters []string
		if err := json.Unmarshal([]byte(types), &filters); err != nil {
			return nil, fmt.Errorf("webhook: endpoint %s has bad event types: %w", id, err)
		}
		if matches(filters, e.Type) {
			out = append(out, id)
		}
	}
	return out, rows.Err()
}

// insertDelivery queues one delivery, due now; it returns 0 when the pair was queued before.
func insertDelivery(ctx context.Context, tx *sqldb.Tx, e bus.Event, endpointID string, payload []byte, now time.Time) (int, error) {
	res, err := tx.Exec(ctx, `INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_type, payload,
		state, next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7, $7)
		ON CONFLICT (tenant_id, endpoint_id, event_id) DO NOTHING`,
		ids.New(deliveryPrefix, now), e.TenantID, endpointID, e.ID, e.Type, string(payload), sqldb.Micros(now))
	if err != nil {
		return 0, fmt.Errorf("webhook: queue delivery: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// SendTestParams names the endpoint to send a test event to.
type SendTestParams struct {
	TenantID   string
	EndpointID string
	// Data is the test event's payload, a JSON object (default {"message": "…"}).
	Data json.RawMessage
}

// SendTest queues a "webhook.test" event for one endpoint, whatever its filters; the dispatcher
// delivers it like any other. The endpoint must be enabled.
func (s *Service) SendTest(ctx context.Context, p SendTestParams) (Delivery, error) {
	data := p.Data
	if len(data) == 0 {
		data = json.RawMessage(`{"message":"This is a test event from perk."}`)
	}
	var obj map[string]any
	if len(data) > MaxTestDataBytes || json.Unmarshal(data, &obj) != nil || obj == nil {
		return Delivery{}, problem.Invalid("the test event data is invalid").
			WithField("body.data", fmt.Sprintf("must be a JSON object of at most %d bytes", MaxTestDataBytes))
	}
	now := s.opts.Clock.Now()
	e := bus.Event{ID: ids.New(eventPrefix, now), Type: TestEventType, TenantID: p.TenantID, Time: now, Data: data}
	payload, err := json.Marshal(e)
	if err != nil {
		return Delivery{}, err
	}
	var d Delivery
	err = s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		ep, err := s.endpoint(ctx, tx, p.TenantID, p.EndpointID)
		if err != nil {
			return err
		}
		if !ep.Enabled {
			return endpointDisabled(ep)
		}
		if _, err := insertDelivery(ctx, tx, e, ep.ID, payload, now); err != nil {
			return err
		}
		d, err = scanDelivery(tx.QueryRow(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries
			WHERE tenant_id = $1 AND endpoint_id = $2 AND event_id = $3`, p.TenantID, ep.ID, e.ID))
		tx.AfterCommit(s.wake)
		return err
	})
	return d, err
}

func endpointDisabled(ep Endpoint) error {
	return problem.Conflict("webhook endpoint %q is disabled (%s); enable it first", ep.ID, ep.DisabledReason).
		WithCode(CodeEndpointDisabled)
}

const deliveryColumns = `id, tenant_id, endpoint_id, event_id, event_type, state, attempts, next_attempt_at,
	last_attempt_at, last_status, last_error, finished_at, created_at, updated_at`

func scanDelivery(row interface{ Scan(...any) error }, extra ...any) (Delivery, error) {
	var (
		d                      Delivery
		next, created, updated int64
		last, finished         sql.NullInt64
	)
	dest := append([]any{&d.ID, &d.TenantID, &d.EndpointID, &d.EventID, &d.EventType, &d.State, &d.AttemptCount,
		&next, &last, &d.LastStatus, &d.LastError, &finished, &created, &updated}, extra...)
	if err := row.Scan(dest...); err != nil {
		return Delivery{}, err
	}
	if d.State == StatePending || d.State == StateRetrying {
		t := sqldb.FromMicros(next)
		d.NextAttemptAt = &t
	}
	d.LastAttemptAt, d.FinishedAt = timePtr(last), timePtr(finished)
	d.CreatedAt, d.UpdatedAt = sqldb.FromMicros(created), sqldb.FromMicros(updated)
	return d, nil
}

func deliveryNotFound(id string) error {
	return problem.NotFound("webhook delivery %q not found", id).WithCode(CodeDeliveryNotFound)
}

// ListDeliveriesParams selects an endpoint's deliveries.
type ListDeliveriesParams struct {
	TenantID   string
	EndpointID string
	// States keeps only deliveries in these states (empty: all).
	States []DeliveryState
	Cursor string
	Limit  int
}

// ListDeliveries pages through an endpoint's deliveries, newest first.
func (s *Service) ListDeliveries(ctx context.Context, p ListDeliveriesParams) (Page[Delivery], error) {
	before, limit, err := pageArgs(p.Cursor, p.Limit)
	if err != nil {
		return Page[Delivery]{}, err
	}
	for _, st := range p.States {
		if !slices.Contains(DeliveryStates, st) {
			return Page[Delivery]{}, problem.Invalid("unknown delivery state %q", st).
				WithField("query.state", "must be one of pending, retrying, delivered, dead, canceled")
		}
	}
	if _, err := s.endpoint(ctx, s.db.Reader(), p.TenantID, p.EndpointID); err != nil {
		return Page[Delivery]{}, err
	}
	q := `SELECT ` + deliveryColumns + ` FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2`
	args := []any{p.TenantID, p.EndpointID}
	if before != "" {
		args = append(args, before)
		q += fmt.Sprintf(" AND id < $%d", len(args))
	}
	if len(p.States) > 0 {
		q += " AND state IN (" + sqldb.Placeholders(len(args)+1, len(p.States)) + ")"
		for _, st := range p.States {
			args = append(args, string(st))
		}
	}
	args = append(args, limit+1)
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))
	rows, err := s.db.Reader().Query(ctx, q, args...)
	if err != nil {
		return Page[Delivery]{}, err
	}
	defer rows.Close()
	var items []Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return Page[Delivery]{}, err
		}
		items = append(items, d)
	}
	if err := rows.Err(); err != nil {
		return Page[Delivery]{}, err
	}
	return paginate(items, limit, func(d Delivery) string { return d.ID }), nil
}

// GetDelivery returns one delivery with the body it sends and every attempt, oldest first.
func (s *Service) GetDelivery(ctx context.Context, tenantID, id string) (DeliveryDetail, error) {
	var (
		detail  DeliveryDetail
		payload string
	)
	q := s.db.Reader()
	d, err := scanDelivery(q.QueryRow(ctx, `SELECT `+deliveryColumns+`, payload FROM webhook_deliveries
		WHERE tenant_id = $1 AND id = $2`, tenantID, id), &payload)
	if errors.Is(err, sql.ErrNoRows) {
		return detail, deliveryNotFound(id)
	}
	if err != nil {
		return detail, err
	}
	detail.Delivery, detail.Payload = d, json.RawMessage(payload)
	rows, err := q.Query(ctx, `SELECT id, attempted_at, status_code, latency_ms, error, response_body
		FROM webhook_attempts WHERE tenant_id = $1 AND delivery_id = $2 ORDER BY id`, tenantID, id)
	if err != nil {
		return detail, err
	}
	defer rows.Close()
	detail.Attempts = []DeliveryAttempt{}
	for rows.Next() {
		var (
			a  DeliveryAttempt
			at int64
		)
		if err := rows.Scan(&a.ID, &at, &a.StatusCode, &a.LatencyMS, &a.Error, &a.ResponseBody); err != nil {
			return detail, err
		}
		a.AttemptedAt = sqldb.FromMicros(at)
		detail.Attempts = append(detail.Attempts, a)
	}
	return detail, rows.Err()
}

// Resend queues a delivery for a new attempt now, with the same webhook-id and body, whatever its
// state; a failure starts the retry schedule over. The endpoint must be enabled.
func (s *Service) Resend(ctx context.Context, tenantID, id string) (Delivery, error) {
	var d Delivery
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		var endpointID string
		err := tx.QueryRow(ctx, `SELECT endpoint_id FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2`,
			tenantID, id).Scan(&endpointID)
		if errors.Is(err, sql.ErrNoRows) {
			return deliveryNotFound(id)
		}
		if err != nil {
			return err
		}
		ep, err := s.endpoint(ctx, tx, tenantID, endpointID)
		if err != nil {
			return err
		}
		if !ep.Enabled {
			return endpointDisabled(ep)
		}
		now := sqldb.Micros(s.opts.Clock.Now())
		state := StatePending
		_, err = tx.Exec(ctx, `UPDATE webhook_deliveries SET state = $3, failures = 0, next_attempt_at = $4,
			finished_at = NULL, updated_at = $4 WHERE tenant_id = $1 AND id = $2`, tenantID, id, string(state), now)
		if err != nil {
			return err
		}
		d, err = scanDelivery(tx.QueryRow(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries
			WHERE tenant_id = $1 AND id = $2`, tenantID, id))
		tx.AfterCommit(s.wake)
		return err
	})
	return d, err
}
