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

// Consume starts the fan-out: a bus.ConsumeBatchTx consumer on the DOMAIN stream that queues, for
// each event, one delivery per enabled endpoint of the event's merchant whose filters match (see
// Fanout). Events arriving together (up to opts.BatchSize) are fanned out in one transaction with
// their processed records, so a batch costs one commit; a failing batch is retried event by event,
// and a message that is not an event is terminated alone. Events no enabled endpoint takes are
// acknowledged with no processed record and no transaction (opts.Relevant defaults to a read of
// the batch's endpoints; see bus.ConsumerOptions). opts.Stream defaults to DOMAIN and opts.Name to
// ConsumerName; instances with one name on several nodes share the events.
func (s *Service) Consume(ctx context.Context, b *bus.Bus, opts bus.ConsumerOptions) (stop func(), err error) {
	if opts.Stream == "" {
		opts.Stream = bus.Domain
	}
	if opts.Name == "" {
		opts.Name = ConsumerName
	}
	if opts.Relevant == nil {
		opts.Relevant = s.relevant
	}
	return b.ConsumeBatchTx(ctx, s.db, opts, func(ctx context.Context, tx *sqldb.Tx, msgs []bus.Msg) error {
		events := make([]bus.Event, 0, len(msgs))
		for _, m := range msgs {
			e, err := bus.DecodeEvent(m)
			if err != nil {
				return bus.Permanent(err)
			}
			events = append(events, e)
		}
		_, err := s.Fanout(ctx, tx, events...)
		return err
	})
}

// relevant flags the messages the fan-out must handle: events an enabled endpoint of their
// merchant takes, read once for the batch outside any transaction (Fanout reads again in its own),
// and messages that do not decode, so that the handler terminates them.
func (s *Service) relevant(ctx context.Context, msgs []bus.Msg) ([]bool, error) {
	out := make([]bool, len(msgs))
	events := make([]bus.Event, 0, len(msgs))
	at := make([]int, 0, len(msgs))
	for i, m := range msgs {
		e, err := bus.DecodeEvent(m)
		if err != nil {
			out[i] = true
			continue
		}
		events, at = append(events, e), append(at, i)
	}
	endpoints, err := enabledEndpoints(ctx, s.db.Reader(), s.db.Dialect(), tenantsOf(events))
	if err != nil {
		return nil, err
	}
	for n, e := range events {
		out[at[n]] = slices.ContainsFunc(endpoints[e.TenantID], func(ep endpointFilter) bool {
			return matches(ep.filters, e.Type)
		})
	}
	return out, nil
}

// Fanout queues, in tx, one delivery of each event to each enabled endpoint of its merchant whose
// filters match its type, and returns how many it queued. It reads the endpoints of all the events'
// merchants at once and writes the deliveries with multi-row inserts; merchants without an enabled
// endpoint cost no write. An (endpoint, event) pair is queued at most once, however often the
// event is fanned out. Running dispatchers of this process are woken after commit when anything
// was queued.
func (s *Service) Fanout(ctx context.Context, tx *sqldb.Tx, events ...bus.Event) (int, error) {
	events = uniqueEvents(events)
	endpoints, err := enabledEndpoints(ctx, tx, tx.Dialect(), tenantsOf(events))
	if err != nil || len(endpoints) == 0 {
		return 0, err
	}
	var rows []newDelivery
	for _, e := range events {
		rows, err = appendMatches(rows, e, endpoints[e.TenantID])
		if err != nil {
			return 0, err
		}
	}
	queued, err := insertDeliveries(ctx, tx, rows, s.opts.Clock.Now())
	if err != nil {
		return 0, err
	}
	if queued > 0 {
		tx.AfterCommit(s.wake)
	}
	return queued, nil
}

// newDelivery is a delivery to queue: an event's payload for one endpoint.
type newDelivery struct {
	tenantID, endpointID, eventID, eventType, payload string
}

// endpointFilter is an enabled endpoint and the event types it takes.
type endpointFilter struct {
	id      string
	filters []string
}

// uniqueEvents drops events whose (merchant, id) came earlier in the list.
func uniqueEvents(events []bus.Event) []bus.Event {
	seen := make(map[[2]string]bool, len(events))
	out := make([]bus.Event, 0, len(events))
	for _, e := range events {
		key := [2]string{e.TenantID, e.ID}
		if !seen[key] {
			seen[key] = true
			out = append(out, e)
		}
	}
	return out
}

// tenantsOf lists the distinct merchants of events.
func tenantsOf(events []bus.Event) []string {
	seen := map[string]bool{}
	var tenants []string
	for _, e := range events {
		if !seen[e.TenantID] {
			seen[e.TenantID] = true
			tenants = append(tenants, e.TenantID)
		}
	}
	return tenants
}

// appendMatches appends a delivery of e to each endpoint whose filters match its type.
func appendMatches(rows []newDelivery, e bus.Event, endpoints []endpointFilter) ([]newDelivery, error) {
	var payload []byte
	for _, ep := range endpoints {
		if !matches(ep.filters, e.Type) {
			continue
		}
		if payload == nil {
			var err error
			if payload, err = json.Marshal(e); err != nil {
				return nil, fmt.Errorf("webhook: encode event %s: %w", e.ID, err)
			}
		}
		rows = append(rows, newDelivery{tenantID: e.TenantID, endpointID: ep.id, eventID: e.ID, eventType: e.Type,
			payload: string(payload)})
	}
	return rows, nil
}

// maxTenantsPerQuery bounds the IN list of one endpoint read.
const maxTenantsPerQuery = 500

// enabledEndpoints returns the enabled endpoints of tenants, by tenant, each tenant's in id order.
// Tenants without one are absent.
func enabledEndpoints(ctx context.Context, q sqldb.Querier, d sqldb.Dialect, tenants []string) (map[string][]endpointFilter, error) {
	out := map[string][]endpointFilter{}
	for chunk := range slices.Chunk(tenants, maxTenantsPerQuery) {
		if err := readEndpoints(ctx, q, d, chunk, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readEndpoints adds the enabled endpoints of tenants to out, in one query.
func readEndpoints(ctx context.Context, q sqldb.Querier, d sqldb.Dialect, tenants []string, out map[string][]endpointFilter) error {
	args := make([]any, 0, len(tenants)+1)
	args = append(args, true)
	for _, t := range tenants {
		args = append(args, t)
	}
	rows, err := q.Query(ctx, `SELECT tenant_id, id, event_types FROM webhook_endpoints WHERE enabled = `+
		d.Placeholder(1)+` AND tenant_id IN (`+d.Placeholders(2, len(tenants))+`) ORDER BY tenant_id, id`, args...)
	if err != nil {
		return fmt.Errorf("webhook: load endpoints: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var tenant, id, types string
		if err := rows.Scan(&tenant, &id, &types); err != nil {
			return fmt.Errorf("webhook: load endpoints: %w", err)
		}
		var filters []string
		if err := json.Unmarshal([]byte(types), &filters); err != nil {
			return fmt.Errorf("webhook: endpoint %s has bad event types: %w", id, err)
		}
		out[tenant] = append(out[tenant], endpointFilter{id: id, filters: filters})
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("webhook: load endpoints: %w", err)
	}
	return nil
}

// deliveryValues is the number of parameters of one inserted delivery.
const deliveryValues = 10

// maxDeliveriesPerInsert bounds the rows of one INSERT, well below both engines' parameter limits.
const maxDeliveriesPerInsert = 500

// insertDeliveries queues rows, due now, and returns how many it queued: rows whose (endpoint,
// event) pair was queued before are skipped.
func insertDeliveries(ctx context.Context, tx *sqldb.Tx, rows []newDelivery, now time.Time) (int, error) {
	queued := 0
	for chunk := range slices.Chunk(rows, maxDeliveriesPerInsert) {
		n, err := insertChunk(ctx, tx, chunk, now)
		if err != nil {
			return 0, err
		}
		queued += n
	}
	return queued, nil
}

// insertChunk queues rows with one multi-row INSERT.
func insertChunk(ctx context.Context, tx *sqldb.Tx, rows []newDelivery, now time.Time) (int, error) {
	at := sqldb.Micros(now)
	args := make([]any, 0, deliveryValues*len(rows))
	for _, r := range rows {
		args = append(args, ids.New(deliveryPrefix, now), r.tenantID, r.endpointID, r.eventID, r.eventType, r.payload,
			string(StatePending), at, at, at)
	}
	res, err := tx.Exec(ctx, `INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_type, payload,
		state, next_attempt_at, created_at, updated_at) VALUES `+tx.Dialect().Tuples(len(rows), deliveryValues)+`
		ON CONFLICT (tenant_id, endpoint_id, event_id) DO NOTHING`, args...)
	if err != nil {
		return 0, fmt.Errorf("webhook: queue deliveries: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("webhook: queue deliveries: %w", err)
	}
	return int(n), nil
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
		row := newDelivery{tenantID: e.TenantID, endpointID: ep.ID, eventID: e.ID, eventType: e.Type, payload: string(payload)}
		if _, err := insertDeliveries(ctx, tx, []newDelivery{row}, now); err != nil {
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
