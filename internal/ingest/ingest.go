// Package ingest is the intake of users' behaviour events: it reads CloudEvents JSON (one event,
// a batch, or a plain JSON array), validates each event, and publishes the good ones to the EVENTS
// stream as bus.Behaviour envelopes, answering only once each is durable there. Task progress and
// coupon issue rules consume them.
//
// A batch is accepted in part: each event gets its own result (accepted, duplicate, rejected with
// a reason, or failed), and the good events are published even when others are bad. A body that
// cannot be read as a whole (not JSON, an empty or oversized batch) is refused and nothing is
// published; so is a single event (application/cloudevents+json, or an object as
// application/json) that does not validate.
//
// De-duplication is on (tenant, source, id): a repeat inside one batch is answered "duplicate"
// and published once; a resend inside the EVENTS stream's de-duplication window is dropped by
// JetStream and answered "duplicate"; a later resend is published again and the consumers'
// processed records drop it.
package ingest

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/platform/clock"
)

// The content types Accept reads.
const (
	// ContentTypeEvent is one CloudEvent in JSON (structured mode).
	ContentTypeEvent = "application/cloudevents+json"
	// ContentTypeBatch is a JSON array of CloudEvents.
	ContentTypeBatch = "application/cloudevents-batch+json"
	// ContentTypeJSON is read as a batch when the body is an array, as one event when it is an object.
	ContentTypeJSON = "application/json"
)

// Status is what became of one event.
type Status string

// The statuses of an event.
const (
	// StatusAccepted: the event is durable on EVENTS.
	StatusAccepted Status = "accepted"
	// StatusDuplicate: the event was received before (earlier in the batch, or in an earlier
	// request inside the de-duplication window) and is durable from then; it was not stored again.
	StatusDuplicate Status = "duplicate"
	// StatusRejected: the event is invalid, or outside the accepted time range; Reason says why.
	// Sending it again will not help.
	StatusRejected Status = "rejected"
	// StatusFailed: the event could not be stored (the bus is down or full); send it again.
	StatusFailed Status = "failed"
)

// The reasons of rejected and failed events.
const (
	// ReasonMalformed: the event is not a JSON object.
	ReasonMalformed = "malformed"
	// ReasonTooLarge: the event is larger than Options.MaxEventBytes.
	ReasonTooLarge = "too_large"
	// ReasonMissingAttribute: a required attribute (specversion, id, source, type, subject) is
	// absent or empty.
	ReasonMissingAttribute = "missing_attribute"
	// ReasonInvalidAttribute: an attribute has the wrong JSON type or a value outside its rules.
	ReasonInvalidAttribute = "invalid_attribute"
	// ReasonInvalidData: data is not a JSON object, datacontenttype is not application/json, or
	// data_base64 is used.
	ReasonInvalidData = "invalid_data"
	// ReasonTooLate: the event's time is older than Options.MaxLateness.
	ReasonTooLate = "too_late"
	// ReasonInFuture: the event's time is later than now plus Options.MaxFutureSkew.
	ReasonInFuture = "in_future"
	// ReasonUnavailable: the bus did not store the event (status failed).
	ReasonUnavailable = "unavailable"
)

// EventResult is the outcome of one event of a request.
type EventResult struct {
	// Index is the event's position in the request (0 for a single event).
	Index int `json:"index"`
	// ID is the event's id, when it has a valid one.
	ID     string `json:"id,omitempty"`
	Status Status `json:"status"`
	// Reason is a stable code for rejected and failed events.
	Reason string `json:"reason,omitempty"`
	// Detail explains the outcome to a human.
	Detail string `json:"detail,omitempty"`
}

// Result is the outcome of a request: counts by status, and one result per event in request order.
type Result struct {
	Accepted   int           `json:"accepted"`
	Duplicates int           `json:"duplicates"`
	Rejected   int           `json:"rejected"`
	Failed     int           `json:"failed"`
	Results    []EventResult `json:"results"`
}

// Defaults of Options fields left at zero.
const (
	DefaultMaxEventBytes = 64 << 10
	DefaultMaxBatch      = 1000
	DefaultMaxLateness   = 7 * 24 * time.Hour
	DefaultMaxFutureSkew = 5 * time.Minute
	// MaxBodyCap caps MaxBodyBytes, whatever MaxBatch and MaxEventBytes allow.
	MaxBodyCap = 16 << 20
)

// Options configures a Service. Every field is optional.
type Options struct {
	// Clock tells the time: the received time, the default event time and the lateness checks.
	// Nil means the wall clock.
	Clock clock.Clock
	// MaxEventBytes bounds one event's JSON, as sent (default 64 KiB).
	MaxEventBytes int
	// MaxBatch bounds the events of one request (default 1000).
	MaxBatch int
	// MaxLateness refuses events whose time is older than this ("too_late"; default 7 days;
	// negative turns the check off).
	MaxLateness time.Duration
	// MaxFutureSkew refuses events whose time is later than now plus this ("in_future";
	// default 5 minutes; negative turns the check off).
	MaxFutureSkew time.Duration
	// Registerer registers the service's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger reports events the bus did not store (default slog.Default()).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.MaxEventBytes <= 0 {
		o.MaxEventBytes = DefaultMaxEventBytes
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.MaxLateness == 0 {
		o.MaxLateness = DefaultMaxLateness
	}
	if o.MaxFutureSkew == 0 {
		o.MaxFutureSkew = DefaultMaxFutureSkew
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}
