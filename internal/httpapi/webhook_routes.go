package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/perkhq/perk/internal/tenant"
	"github.com/perkhq/perk/internal/webhook"
)

// EndpointPath is the {endpoint_id} of webhook endpoint routes.
type EndpointPath struct {
	EndpointID string `path:"endpoint_id" doc:"Webhook endpoint id (whe_…)"`
}

// DeliveryPath is the {delivery_id} of webhook delivery routes.
type DeliveryPath struct {
	DeliveryID string `path:"delivery_id" doc:"Webhook delivery id (whd_…)"`
}

type createEndpointIn struct {
	Body struct {
		URL         string   `json:"url" doc:"Where deliveries are POSTed: an http or https URL" example:"https://shop.example.com/perk/webhooks"`
		Description string   `json:"description,omitempty" doc:"Free text, at most 500 characters"`
		EventTypes  []string `json:"event_types" doc:"Exact types (grant.succeeded), wildcards (grant.*) or * for all; at least one" example:"[\"grant.*\"]"`
		Disabled    bool     `json:"disabled,omitempty" doc:"Create it disabled: it receives nothing until enabled"`
	}
}

type updateEndpointIn struct {
	EndpointPath
	Body struct {
		URL            *string  `json:"url,omitempty"`
		Description    *string  `json:"description,omitempty"`
		EventTypes     []string `json:"event_types,omitempty" doc:"Replaces the filters"`
		Enabled        *bool    `json:"enabled,omitempty" doc:"false disables the endpoint and cancels its pending deliveries"`
		DisabledReason *string  `json:"disabled_reason,omitempty" doc:"Why it is disabled, recorded with it"`
	}
}

type rotateSecretIn struct {
	EndpointPath
	Body *struct {
		GraceSeconds *int64 `json:"grace_seconds,omitempty" doc:"How long the old secret keeps signing, next to the new one; default 86400, 0 stops it at once, at most 604800"`
	}
}

type sendTestIn struct {
	EndpointPath
	Body *struct {
		Data json.RawMessage `json:"data,omitempty" doc:"The test event's data, a JSON object; default a short message"`
	}
}

type listDeliveriesIn struct {
	EndpointPath
	ListQuery
	State []string `query:"state" doc:"Only these states (comma-separated): pending, retrying, delivered, dead, canceled"`
}

type newEndpointOut struct {
	Status int
	Body   webhook.NewEndpoint
}

type endpointOut struct{ Body webhook.Endpoint }

type endpointPageOut struct {
	Body webhook.Page[webhook.Endpoint]
}

type newSecretOut struct{ Body webhook.NewSecret }

type deliveryOut struct {
	Status int
	Body   webhook.Delivery
}

type deliveryDetailOut struct{ Body webhook.DeliveryDetail }

type deliveryPageOut struct {
	Body webhook.Page[webhook.Delivery]
}

// registerWebhookRoutes adds the outbound webhook routes: a merchant's endpoints (write keys change
// them, read keys list them), their deliveries with the attempt log, resend and test events.
func (s *Server) registerWebhookRoutes(svc *webhook.Service) {
	tags := []string{"Webhooks"}
	register(s, Op{Operation: huma.Operation{OperationID: "create-webhook-endpoint", Method: http.MethodPost,
		Path: "/v1/webhooks/endpoints", Summary: "Create a webhook endpoint; its signing secret is shown once",
		DefaultStatus: http.StatusCreated, Tags: tags}, Access: AccessWrite},
		func(ctx context.Context, p tenant.Principal, in *createEndpointIn) (*newEndpointOut, error) {
			ne, err := svc.CreateEndpoint(ctx, webhook.CreateEndpointParams{TenantID: p.TenantID, URL: in.Body.URL,
				Description: in.Body.Description, EventTypes: in.Body.EventTypes, Disabled: in.Body.Disabled})
			return &newEndpointOut{Status: http.StatusCreated, Body: ne}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "list-webhook-endpoints", Method: http.MethodGet,
		Path: "/v1/webhooks/endpoints", Summary: "List webhook endpoints", Tags: tags}, Access: AccessRead},
		func(ctx context.Context, p tenant.Principal, in *ListQuery) (*endpointPageOut, error) {
			page, err := svc.ListEndpoints(ctx, p.TenantID, webhook.ListParams{Cursor: in.Cursor, Limit: in.Limit})
			return &endpointPageOut{Body: page}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "get-webhook-endpoint", Method: http.MethodGet,
		Path: "/v1/webhooks/endpoints/{endpoint_id}", Summary: "Get a webhook endpoint", Tags: tags}, Access: AccessRead},
		func(ctx context.Context, p tenant.Principal, in *EndpointPath) (*endpointOut, error) {
			e, err := svc.GetEndpoint(ctx, p.TenantID, in.EndpointID)
			return &endpointOut{Body: e}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "update-webhook-endpoint", Method: http.MethodPatch,
		Path: "/v1/webhooks/endpoints/{endpoint_id}", Summary: "Change a webhook endpoint's URL, filters or state",
		Tags: tags}, Access: AccessWrite},
		func(ctx context.Context, p tenant.Principal, in *updateEndpointIn) (*endpointOut, error) {
			e, err := svc.UpdateEndpoint(ctx, webhook.UpdateEndpointParams{TenantID: p.TenantID, ID: in.EndpointID,
				URL: in.Body.URL, Description: in.Body.Description, EventTypes: in.Body.EventTypes,
				Enabled: in.Body.Enabled, DisabledReason: in.Body.DisabledReason})
			return &endpointOut{Body: e}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "delete-webhook-endpoint", Method: http.MethodDelete,
		Path: "/v1/webhooks/endpoints/{endpoint_id}", Summary: "Delete a webhook endpoint with its deliveries",
		DefaultStatus: http.StatusNoContent, Tags: tags}, Access: AccessWrite},
		func(ctx context.Context, p tenant.Principal, in *EndpointPath) (*struct{}, error) {
			return &struct{}{}, svc.DeleteEndpoint(ctx, p.TenantID, in.EndpointID)
		})
	s.registerWebhookActions(svc, tags)
}

func (s *Server) registerWebhookActions(svc *webhook.Service, tags []string) {
	register(s, Op{Operation: huma.Operation{OperationID: "rotate-webhook-secret", Method: http.MethodPost,
		Path:    "/v1/webhooks/endpoints/{endpoint_id}/rotate-secret",
		Summary: "Replace the signing secret; the old one keeps signing for a grace period", Tags: tags},
		Access: AccessWrite},
		func(ctx context.Context, p tenant.Principal, in *rotateSecretIn) (*newSecretOut, error) {
			params := webhook.RotateSecretParams{TenantID: p.TenantID, ID: in.EndpointID}
			if in.Body != nil && in.Body.GraceSeconds != nil {
				// Clamped only so the multiplication cannot overflow; the service checks the range.
				grace := time.Duration(min(max(*in.Body.GraceSeconds, -1), 100*365*24*3600)) * time.Second
				params.Grace = &grace
			}
			ns, err := svc.RotateSecret(ctx, params)
			return &newSecretOut{Body: ns}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "send-webhook-test", Method: http.MethodPost,
		Path: "/v1/webhooks/endpoints/{endpoint_id}/test", Summary: "Queue a webhook.test event for this endpoint",
		DefaultStatus: http.StatusAccepted, Tags: tags}, Access: AccessWrite},
		func(ctx context.Context, p tenant.Principal, in *sendTestIn) (*deliveryOut, error) {
			params := webhook.SendTestParams{TenantID: p.TenantID, EndpointID: in.EndpointID}
			if in.Body != nil {
				params.Data = in.Body.Data
			}
			d, err := svc.SendTest(ctx, params)
			return &deliveryOut{Status: http.StatusAccepted, Body: d}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "list-webhook-deliveries", Method: http.MethodGet,
		Path: "/v1/webhooks/endpoints/{endpoint_id}/deliveries", Summary: "List an endpoint's deliveries, newest first",
		Tags: tags}, Access: AccessRead},
		func(ctx context.Context, p tenant.Principal, in *listDeliveriesIn) (*deliveryPageOut, error) {
			states := make([]webhook.DeliveryState, 0, len(in.State))
			for _, st := range in.State {
				states = append(states, webhook.DeliveryState(st))
			}
			page, err := svc.ListDeliveries(ctx, webhook.ListDeliveriesParams{TenantID: p.TenantID,
				EndpointID: in.EndpointID, States: states, Cursor: in.Cursor, Limit: in.Limit})
			return &deliveryPageOut{Body: page}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "get-webhook-delivery", Method: http.MethodGet,
		Path: "/v1/webhooks/deliveries/{delivery_id}", Summary: "Get a delivery with its body and attempt log",
		Tags: tags}, Access: AccessRead},
		func(ctx context.Context, p tenant.Principal, in *DeliveryPath) (*deliveryDetailOut, error) {
			d, err := svc.GetDelivery(ctx, p.TenantID, in.DeliveryID)
			return &deliveryDetailOut{Body: d}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "resend-webhook-delivery", Method: http.MethodPost,
		Path: "/v1/webhooks/deliveries/{delivery_id}/resend", Summary: "Send a delivery again now, with the same webhook-id",
		DefaultStatus: http.StatusAccepted, Tags: tags}, Access: AccessWrite},
		func(ctx context.Context, p tenant.Principal, in *DeliveryPath) (*deliveryOut, error) {
			d, err := svc.Resend(ctx, p.TenantID, in.DeliveryID)
			return &deliveryOut{Status: http.StatusAccepted, Body: d}, err
		})
}
