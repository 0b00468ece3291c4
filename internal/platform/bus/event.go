package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	gojson "github.com/goccy/go-json"

	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// Event is the envelope of every domain event on the DOMAIN stream. Producers write it through the
// outbox in the transaction that made the change (EnqueueEvent); consumers (webhooks, the activity
// log, stats) decode it with DecodeEvent.
type Event struct {
	// ID is unique ("evt_<ulid>"); it is the message id, so JetStream and ConsumeTx de-duplicate on it.
	ID string `json:"id"`
	// Type is dotted lower-case, e.g. "grant.succeeded"; it is the subject's tail.
	Type string `json:"type"`
	// TenantID is the merchant the event belongs to.
	TenantID string `json:"tenant_id"`
	// UserID is the user concerned, if any.
	UserID string `json:"user_id,omitempty"`
	// SourceKind and SourceID name the object the event is about, e.g. "grant", "grt_…".
	SourceKind string `json:"source_kind,omitempty"`
	SourceID   string `json:"source_id,omitempty"`
	// Time is when the change happened (UTC).
	Time time.Time `json:"time"`
	// Data is the event's payload, JSON.
	Data json.RawMessage `json:"data,omitempty"`
}

var eventTypePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`)

// EventsFunc writes domain events in the caller's transaction; (*Bus).EnqueueEvent is one. Modules
// take one in their options so they can be built and tested without a bus.
type EventsFunc func(ctx context.Context, tx *sqldb.Tx, events ...Event) error

// EventSubject is the DOMAIN subject an event type is published on.
func (b *Bus) EventSubject(eventType string) string { return b.Subject(Domain, eventType) }

// EnqueueEvent writes domain events to the outbox in the caller's transaction. A missing ID or Time
// is filled in; the type must be dotted lower-case ("grant.succeeded").
func (b *Bus) EnqueueEvent(ctx context.Context, tx *sqldb.Tx, events ...Event) error {
	msgs := make([]Message, 0, len(events))
	for i := range events {
		e := &events[i]
		if !eventTypePattern.MatchString(e.Type) {
			return fmt.Errorf("bus: event type %q is not dotted lower-case", e.Type)
		}
		if e.TenantID == "" {
			return fmt.Errorf("bus: event %s has no tenant", e.Type)
		}
		if e.Time.IsZero() {
			e.Time = b.clock.Now()
		}
		if e.ID == "" {
			e.ID = ids.New("evt", e.Time)
		}
		data, err := gojson.Marshal(e)
		if err != nil {
			return fmt.Errorf("bus: encode event %s: %w", e.Type, err)
		}
		msgs = append(msgs, Message{Subject: b.EventSubject(e.Type), ID: e.ID, Data: data,
			Header: map[string]string{"Perk-Event-Type": e.Type, "Perk-Tenant": e.TenantID}})
	}
	return Enqueue(ctx, tx, msgs...)
}

// DecodeEvent reads the envelope of a DOMAIN message.
func DecodeEvent(m Msg) (Event, error) {
	var e Event
	if err := gojson.Unmarshal(m.Data, &e); err != nil {
		return Event{}, fmt.Errorf("bus: decode event %s: %w", m.ID, err)
	}
	if e.ID == "" || e.Type == "" || e.TenantID == "" {
		return Event{}, fmt.Errorf("bus: message %s is not an event envelope", m.ID)
	}
	return e, nil
}
