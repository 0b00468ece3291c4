package bus

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	gojson "github.com/goccy/go-json"
)

// Behaviour is the envelope of a user's behaviour event on the EVENTS stream: a CloudEvent accepted
// by ingestion, tied to its tenant. Task progress and issue rules consume it.
type Behaviour struct {
	// TenantID is the merchant that sent the event.
	TenantID string `json:"tenant_id"`
	// ID and Source are the CloudEvent's id and source; (tenant, source, id) identifies an event.
	ID     string `json:"id"`
	Source string `json:"source"`
	// Type is the CloudEvent type, e.g. "checkin" or "order.paid".
	Type string `json:"type"`
	// UserID is the CloudEvent subject: the user who did it.
	UserID string `json:"user_id"`
	// Time is when it happened (the CloudEvent time, else when it was received), UTC.
	Time time.Time `json:"time"`
	// ReceivedAt is when ingestion accepted it, UTC.
	ReceivedAt time.Time `json:"received_at"`
	// Data is the CloudEvent data, a JSON object (or absent).
	Data json.RawMessage `json:"data,omitempty"`
}

// Key is the event's identity as a message id: a hash of (tenant, source, id), so a resent event
// is de-duplicated by JetStream within the window and by consumers' processed records after it.
func (e Behaviour) Key() string {
	h := sha256.Sum256([]byte(e.TenantID + "\x00" + e.Source + "\x00" + e.ID))
	return "bev_" + hex.EncodeToString(h[:16])
}

// BehaviourSubject is the EVENTS subject of a tenant's events: events.<tenant>.<type tokens>.
// Consumers filter on b.Subject(Events, ">") or on one tenant.
func (b *Bus) BehaviourSubject(tenantID, eventType string) string {
	return b.Subject(Events, tenantID, eventType)
}

// BehaviourMessage is the message that carries e on EVENTS.
func (b *Bus) BehaviourMessage(e Behaviour) (Message, error) {
	data, err := gojson.Marshal(e)
	if err != nil {
		return Message{}, fmt.Errorf("bus: encode behaviour event %s: %w", e.ID, err)
	}
	return Message{Subject: b.BehaviourSubject(e.TenantID, e.Type), ID: e.Key(), Data: data,
		Header: map[string]string{"Perk-Event-Type": e.Type, "Perk-Tenant": e.TenantID}}, nil
}

// DecodeBehaviour reads the envelope of an EVENTS message.
func DecodeBehaviour(m Msg) (Behaviour, error) {
	var e Behaviour
	if err := gojson.Unmarshal(m.Data, &e); err != nil {
		return Behaviour{}, fmt.Errorf("bus: decode behaviour event %s: %w", m.ID, err)
	}
	if e.ID == "" || e.Type == "" || e.TenantID == "" || e.UserID == "" {
		return Behaviour{}, fmt.Errorf("bus: message %s is not a behaviour event", m.ID)
	}
	return e, nil
}

// MaxBehaviourTypeLen bounds the type of a behaviour event.
const MaxBehaviourTypeLen = 64

// ValidBehaviourType reports whether t can be a behaviour event's type: at most
// MaxBehaviourTypeLen characters of dot-separated tokens, each a lower-case letter then letters,
// digits or '_' (^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$), safe as NATS subject tokens. Ingestion
// accepts only such events, so task triggers and issue rules are held to the same rule.
func ValidBehaviourType(t string) bool {
	if len(t) > MaxBehaviourTypeLen {
		return false
	}
	start := true
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c >= 'a' && c <= 'z':
			start = false
		case start:
			return false
		case c >= '0' && c <= '9', c == '_':
		case c == '.':
			start = true
		default:
			return false
		}
	}
	return !start
}
