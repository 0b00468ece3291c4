// Package webhook sends perk's domain events to merchants' systems: endpoints with event-type
// filters and signing secrets, a fan-out consumer on the DOMAIN stream that queues one delivery per
// matching endpoint, and a dispatcher that POSTs deliveries signed per Standard Webhooks, retries
// them with backoff for more than a day, honours Retry-After, disables endpoints that answer
// 410 Gone and keeps a log of every attempt.
package webhook

import (
	"embed"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

//go:embed migrations
var migrationsFS embed.FS

// Migrations creates the module's tables: webhook_endpoints, webhook_deliveries, webhook_attempts.
var Migrations = sqldb.Migrations{Module: "webhook", FS: migrationsFS, Dir: "migrations"}

// Id prefixes.
const (
	endpointPrefix = "whe"
	deliveryPrefix = "whd"
	attemptPrefix  = "wha"
	eventPrefix    = "evt"
)

// TestEventType is the type of the event SendTest delivers.
const TestEventType = "webhook.test"

// Problem codes this module answers with (see docs/errors.md).
const (
	CodeEndpointNotFound = "webhook-endpoint-not-found"
	CodeDeliveryNotFound = "webhook-delivery-not-found"
	CodeEndpointDisabled = "webhook-endpoint-disabled"
	CodeEndpointLimit    = "webhook-endpoint-limit"
)

// Endpoint is a merchant's receiver. Its secret is never part of it: it is shown once, at creation
// and at each rotation.
type Endpoint struct {
	ID          string   `json:"id"`
	TenantID    string   `json:"tenant_id"`
	URL         string   `json:"url"`
	Description string   `json:"description"`
	EventTypes  []string `json:"event_types"`
	Enabled     bool     `json:"enabled"`
	// DisabledReason says why a disabled endpoint is disabled, e.g. "410 Gone from receiver".
	DisabledReason string     `json:"disabled_reason,omitempty"`
	DisabledAt     *time.Time `json:"disabled_at,omitempty"`
	// PreviousSecretUntil is the end of the last rotation's grace period, while the old secret still
	// signs deliveries; nil when no old secret is valid.
	PreviousSecretUntil *time.Time `json:"previous_secret_until,omitempty"`
	CreatedAt           time.Time  `json:"created_at"`
	UpdatedAt           time.Time  `json:"updated_at"`
}

// NewEndpoint is a created endpoint with its signing secret, shown once.
type NewEndpoint struct {
	Endpoint Endpoint `json:"endpoint"`
	Secret   string   `json:"secret"`
}

// NewSecret is an endpoint after a rotation with its new secret, shown once.
type NewSecret struct {
	Endpoint Endpoint `json:"endpoint"`
	Secret   string   `json:"secret"`
}

// DeliveryState is where a delivery stands.
type DeliveryState string

// The delivery states. Pending and retrying deliveries are waiting for an attempt; the others are
// final until a manual resend.
const (
	StatePending   DeliveryState = "pending"   // queued, no attempt failed yet
	StateRetrying  DeliveryState = "retrying"  // an attempt failed; the next one is scheduled
	StateDelivered DeliveryState = "delivered" // the receiver answered 2xx
	StateDead      DeliveryState = "dead"      // every scheduled attempt failed
	StateCanceled  DeliveryState = "canceled"  // the endpoint was disabled or answered 410 Gone
)

// DeliveryStates lists every state, for validation and docs.
var DeliveryStates = []DeliveryState{StatePending, StateRetrying, StateDelivered, StateDead, StateCanceled}

// Delivery is one event on its way to one endpoint. Its id for the receiver (webhook-id) is the
// event id, the same on every attempt.
type Delivery struct {
	ID            string        `json:"id"`
	TenantID      string        `json:"tenant_id"`
	EndpointID    string        `json:"endpoint_id"`
	EventID       string        `json:"event_id"`
	EventType     string        `json:"event_type"`
	State         DeliveryState `json:"state"`
	AttemptCount  int           `json:"attempt_count"`
	NextAttemptAt *time.Time    `json:"next_attempt_at,omitempty"`
	LastAttemptAt *time.Time    `json:"last_attempt_at,omitempty"`
	// LastStatus is the HTTP status of the last attempt (0: none, or no response).
	LastStatus int        `json:"last_status,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// DeliveryAttempt is one HTTP attempt of a delivery: the delivery log.
type DeliveryAttempt struct {
	ID          string    `json:"id"`
	AttemptedAt time.Time `json:"attempted_at"`
	// StatusCode is the receiver's HTTP status; 0 when no response came back (see Error).
	StatusCode int    `json:"status_code"`
	LatencyMS  int64  `json:"latency_ms"`
	Error      string `json:"error,omitempty"`
	// ResponseBody is the first KiB of the receiver's answer.
	ResponseBody string `json:"response_body,omitempty"`
}

// DeliveryDetail is a delivery with the body it sends and its attempts, oldest first.
type DeliveryDetail struct {
	Delivery
	Payload  json.RawMessage   `json:"payload"`
	Attempts []DeliveryAttempt `json:"attempts"`
}

// Page is one page of a list; Next is empty on the last page.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next_cursor,omitempty"`
}

// Options configures the service. Zero fields take the defaults.
type Options struct {
	// Clock stamps rows and decides what is due (default clock.Real).
	Clock clock.Clock
	// Logger receives failures (default slog.Default()).
	Logger *slog.Logger
	// Registerer registers the module's metrics; nil means don't register.
	Registerer prometheus.Registerer
	// MaxEndpoints bounds a merchant's endpoints (default 100).
	MaxEndpoints int
	// DefaultGrace is how long a rotated-out secret keeps signing when the caller names no grace
	// period (default 24h).
	DefaultGrace time.Duration
	// MaxGrace bounds the grace period a caller may ask for (default 7 days).
	MaxGrace time.Duration
}

// Defaults.
const (
	DefaultMaxEndpoints = 100
	DefaultGrace        = 24 * time.Hour
	DefaultMaxGrace     = 7 * 24 * time.Hour
)

func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxEndpoints <= 0 {
		o.MaxEndpoints = DefaultMaxEndpoints
	}
	if o.DefaultGrace <= 0 {
		o.DefaultGrace = DefaultGrace
	}
	if o.MaxGrace <= 0 {
		o.MaxGrace = DefaultMaxGrace
	}
	return o
}

// Service manages endpoints and deliveries. Build dispatchers with NewDispatcher and the fan-out
// consumer with Consume.
type Service struct {
	db      *sqldb.DB
	opts    Options
	log     *slog.Logger
	metrics *metrics

	mu          sync.Mutex
	dispatchers map[*Dispatcher]struct{}
}

// New returns the webhook service over db.
func New(db *sqldb.DB, opts Options) *Service {
	opts = opts.withDefaults()
	return &Service{db: db, opts: opts, log: opts.Logger.With("module", "webhook"),
		metrics: newMetrics(opts.Registerer), dispatchers: map[*Dispatcher]struct{}{}}
}

// wake tells this process's running dispatchers that a delivery is due.
func (s *Service) wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := range s.dispatchers {
		d.Wake()
	}
}

func (s *Service) addDispatcher(d *Dispatcher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dispatchers[d] = struct{}{}
}

func (s *Service) removeDispatcher(d *Dispatcher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.dispatchers, d)
}
