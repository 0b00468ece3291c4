package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/perkhq/perk/internal/ingest"
	"github.com/perkhq/perk/internal/tenant"
)

// eventsPath is the route of behaviour events.
const eventsPath = "/v1/events"

// CloudEvent documents one behaviour event as sent: a CloudEvent 1.0 in JSON (structured mode).
// The ingest module reads the bytes itself; this type only describes them in the OpenAPI document.
type CloudEvent struct {
	_           struct{} `json:"-" additionalProperties:"true"` // other attributes (extensions) are allowed and not kept
	SpecVersion string   `json:"specversion" enum:"1.0" doc:"CloudEvents version: 1.0"`
	ID          string   `json:"id" minLength:"1" maxLength:"128" doc:"Your id of the event; (source, id) identifies it: a resend is a duplicate"`
	Source      string   `json:"source" minLength:"1" maxLength:"256" doc:"URI reference of where it happened, e.g. /shop/orders"`
	Type        string   `json:"type" maxLength:"64" pattern:"^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)*$" doc:"What happened: a dotted lower-case name, e.g. checkin or order.paid"`
	Subject     string   `json:"subject" pattern:"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$" doc:"The user who did it (your user id)"`
	// Time is when it happened; the event counts in the period of this time.
	Time            *time.Time     `json:"time,omitempty" doc:"RFC 3339; when it happened (default: when received). Older than the lateness limit (default 7 days) or later than now plus the allowed skew (default 5 minutes) is rejected"`
	DataContentType string         `json:"datacontenttype,omitempty" enum:"application/json" doc:"application/json, or absent"`
	Data            map[string]any `json:"data,omitempty" doc:"The event's fields, a JSON object (task filters and metrics read them, e.g. data.amount)"`
}

// rawRequest is the body of a route that reads it itself, and the Content-Type that says how:
// huma documents such a body as bytes, so the route describes it in the OpenAPI document.
type rawRequest struct {
	RawBody     []byte
	contentType string
}

// Resolve keeps the request's Content-Type.
func (in *rawRequest) Resolve(ctx huma.Context) []error {
	in.contentType = ctx.Header("Content-Type")
	return nil
}

// eventsIn is read by the ingest module, per content type.
type eventsIn struct{ rawRequest }

type eventsOut struct {
	Status int
	Body   ingest.Result
}

const eventsDescription = "Send users' behaviour events: one CloudEvent (`application/cloudevents+json`), a batch " +
	"(`application/cloudevents-batch+json`), or either as `application/json` (an object is one event, an array a batch). " +
	"At most %d events of at most %s each.\n\n" +
	"The answer, `202`, comes once every accepted event is durable, with a result per event in request order: " +
	"`accepted`, `duplicate` (same source and id as an earlier event of the batch, or resent inside the de-duplication " +
	"window), `rejected` with a `reason` (`malformed`, `too_large`, `missing_attribute`, `invalid_attribute`, " +
	"`invalid_data`, `too_late`, `in_future`: do not resend), or `failed` (`unavailable`: resend it). A batch is " +
	"accepted in part: bad events are rejected and the others accepted. A single event that does not validate is " +
	"refused with a problem (422, `reason` extension); a body that is not JSON (400), an empty batch (422) or one " +
	"over the limit (413) is refused whole; when the bus stores none of the events the answer is 503 and nothing " +
	"was accepted: retry the request."

// registerEventRoutes adds POST /v1/events, whose bodies may be as large as the ingest module's
// limit (a full batch), larger than Deps.MaxBodyBytes.
func (s *Server) registerEventRoutes(svc *ingest.Service) {
	limit := svc.MaxBodyBytes()
	register(s, Op{Operation: huma.Operation{OperationID: "send-events", Method: http.MethodPost, Path: eventsPath,
		Summary:     "Send behaviour events (CloudEvents, single or batch)",
		Description: fmt.Sprintf(eventsDescription, svc.MaxBatch(), humanBytes(int64(svc.MaxEventBytes()))),
		Tags:        []string{"Events"}, DefaultStatus: http.StatusAccepted, MaxBodyBytes: limit,
		Errors: []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType,
			http.StatusUnprocessableEntity, http.StatusServiceUnavailable}},
		Access: AccessIntegrate},
		func(ctx context.Context, p tenant.Principal, in *eventsIn) (*eventsOut, error) {
			res, err := svc.Accept(ctx, p.TenantID, in.contentType, in.RawBody)
			if err != nil {
				return nil, err
			}
			return &eventsOut{Status: http.StatusAccepted, Body: res}, nil
		})
	s.documentEventsBody(svc.MaxBatch())
}

// documentEventsBody describes the request body in the OpenAPI document: huma documents a raw
// body as bytes of one content type; these are CloudEvents in three.
func (s *Server) documentEventsBody(maxBatch int) {
	oapi := s.api.OpenAPI()
	item := oapi.Paths[eventsPath]
	if item == nil || item.Post == nil {
		return
	}
	one := oapi.Components.Schemas.Schema(reflect.TypeFor[CloudEvent](), true, "")
	many := &huma.Schema{Type: huma.TypeArray, Items: one, MinItems: new(1), MaxItems: new(maxBatch)}
	item.Post.RequestBody = &huma.RequestBody{Required: true,
		Description: "One CloudEvent, or a JSON array of them (CloudEvents 1.0, JSON format, structured mode).",
		Content: map[string]*huma.MediaType{
			ingest.ContentTypeEvent: {Schema: one},
			ingest.ContentTypeBatch: {Schema: many},
			ingest.ContentTypeJSON:  {Schema: &huma.Schema{OneOf: []*huma.Schema{one, many}}},
		}}
}
