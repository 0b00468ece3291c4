package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/tenant"
)

// TemplatePath is the {template_id} of coupon template routes: the template's config key.
type TemplatePath struct {
	TemplateID string `path:"template_id" doc:"The coupon template's key (config kind coupon_template)"`
}

// CouponPath is the {coupon_id} of coupon routes.
type CouponPath struct {
	CouponID string `path:"coupon_id" doc:"The coupon's id (cpn_…)"`
}

// RedemptionPath is the {redemption_id} of redemption routes.
type RedemptionPath struct {
	RedemptionID string `path:"redemption_id" doc:"The redemption's id (rdm_…)"`
}

type issueCouponsIn struct {
	TemplatePath
	Body struct {
		UserIDs []string `json:"user_ids" doc:"Users who get one coupon each (at most 10,000; a user listed twice gets one)"`
		// BusinessKey makes the batch idempotent: each user's coupon is keyed "<business_key>/<user_id>".
		BusinessKey string `json:"business_key,omitempty" doc:"Idempotency base: repeating the call with it issues nothing new and answers the same coupons"`
		SourceKind  string `json:"source_kind,omitempty" doc:"What issued the coupons (default api)"`
		SourceID    string `json:"source_id,omitempty" doc:"Which one (default the business key)"`
	}
}

type issuedOut struct{ Body coupon.Issued }

type listCouponsIn struct {
	UserPath
	ListQuery
	State          string    `query:"state" enum:"issued,locked,redeemed,expired,revoked," doc:"Only coupons in this state"`
	Template       string    `query:"template" doc:"Only coupons of this template key"`
	ExpiringBefore time.Time `query:"expiring_before" doc:"RFC 3339; only coupons that expire before it"`
}

type couponPageOut struct{ Body coupon.Page }

type couponOut struct{ Body coupon.Coupon }

type revokeIn struct {
	CouponPath
	Body *struct {
		Reason string `json:"reason,omitempty" maxLength:"200" doc:"Why the coupon is withdrawn"`
	}
}

type qualifyIn struct {
	UserPath
	Lang string `query:"lang" enum:"en,zh-CN," doc:"Language of the reasons (default en)"`
	// The body is a qualifyBody, read by the route's jsonBody: qualification is the hottest read.
	rawRequest
}

// qualifyBody is the body of POST /v1/users/{user_id}/coupons/qualify.
type qualifyBody struct {
	Cart qualify.Cart   `json:"cart" doc:"The cart; amounts in minor units"`
	User map[string]any `json:"user,omitempty" doc:"The user's attributes, for templates with a CEL condition"`
}

// complete reports whether every member the schema requires is there: the cart, its items, and
// each item's sku, unit_price and quantity. Empty values stand for absent ones here (their slow
// reading then names the member); ValidateCart refuses them all anyway, but for unit_price 0,
// which a free item has, and which only the slow path can tell from a missing one.
func (b *qualifyBody) complete() bool {
	if len(b.Cart.Items) == 0 {
		return false
	}
	for i := range b.Cart.Items {
		it := &b.Cart.Items[i]
		if it.SKU == "" || it.UnitPrice == 0 || it.Quantity == 0 {
			return false
		}
	}
	return true
}

type qualifyOut struct{ Body qualifyAnswer }

type lockIn struct {
	Lang string `query:"lang" enum:"en,zh-CN," doc:"Language of refusal reasons (default en)"`
	Body struct {
		UserID     string         `json:"user_id" doc:"The user whose coupons are used"`
		OrderID    string         `json:"order_id" doc:"Your order id: one redemption per order"`
		CouponIDs  []string       `json:"coupon_ids" doc:"The coupons to use together"`
		Cart       qualify.Cart   `json:"cart" doc:"The order's cart; amounts in minor units"`
		TTLSeconds int64          `json:"ttl_seconds,omitempty" doc:"How long the lock holds without a confirmation (default 900)"`
		User       map[string]any `json:"user,omitempty" doc:"The user's attributes, for templates with a CEL condition"`
	}
}

type redemptionOut struct {
	Status int
	Body   coupon.Redemption
}

type rollbackRedemptionIn struct {
	RedemptionPath
	Body *struct {
		Policy string `json:"policy,omitempty" enum:"restore_if_valid,never_restore," doc:"What happens to the coupons (default: coupons.rollback_policy)"`
	}
}

type couponStatsOut struct{ Body coupon.Stats }

type reconcileIn struct {
	TemplatePath
	Body *struct {
		UserIDs []string `json:"user_ids,omitempty" doc:"Also reset these users' per-user counters"`
	}
}

type reconciledOut struct{ Body coupon.Reconciled }

const qualifyPath = "/v1/users/{user_id}/coupons/qualify"

// couponBodyFields are the request body members of coupon writes, for locating problems.
var couponBodyFields = []string{"user_ids", "business_key", "source_kind", "source_id", "cart", "user", "user_id",
	"order_id", "coupon_ids", "ttl_seconds", "ttl", "reason", "policy"}

// registerCouponRoutes adds issuance, the wallet, qualification, redemptions and template stats.
// Templates and issue rules themselves are config resources (/v1/config/coupon_template/…).
func (s *Server) registerCouponRoutes(svc *coupon.Service) {
	tags := []string{"Coupons"}
	register(s, Op{Operation: huma.Operation{OperationID: "issue-coupons", Method: http.MethodPost,
		Path: "/v1/coupon-templates/{template_id}/issue", Summary: "Issue a template's coupons to users (batch, per-user results)",
		Tags: tags}, Access: AccessIntegrate},
		func(ctx context.Context, p tenant.Principal, in *issueCouponsIn) (*issuedOut, error) {
			b := in.Body
			res, err := svc.Issue(ctx, coupon.IssueParams{TenantID: p.TenantID, Template: in.TemplateID, UserIDs: b.UserIDs,
				BusinessKey: b.BusinessKey, SourceKind: b.SourceKind, SourceID: b.SourceID})
			return &issuedOut{Body: res}, locate(err, couponBodyFields...)
		})
	register(s, Op{Operation: huma.Operation{OperationID: "get-coupon-template-stats", Method: http.MethodGet,
		Path: "/v1/coupon-templates/{template_id}/stats", Summary: "A template's issued, redeemed, expired coupons and cost",
		Tags: tags}, Access: AccessRead},
		func(ctx context.Context, p tenant.Principal, in *TemplatePath) (*couponStatsOut, error) {
			st, err := svc.Stats(ctx, p.TenantID, in.TemplateID)
			return &couponStatsOut{Body: st}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "reconcile-coupon-template", Method: http.MethodPost,
		Path: "/v1/coupon-templates/{template_id}/reconcile", Summary: "Recount a template's issue counters from the wallet",
		Tags: tags}, Access: AccessWrite},
		func(ctx context.Context, p tenant.Principal, in *reconcileIn) (*reconciledOut, error) {
			params := coupon.ReconcileParams{TenantID: p.TenantID, Template: in.TemplateID}
			if in.Body != nil {
				params.UserIDs = in.Body.UserIDs
			}
			res, err := svc.Reconcile(ctx, params)
			return &reconciledOut{Body: res}, locate(err, couponBodyFields...)
		})
	s.registerWalletRoutes(svc, tags)
	s.registerRedemptionRoutes(svc, tags)
}

func (s *Server) registerWalletRoutes(svc *coupon.Service, tags []string) {
	qualifyBodies := newJSONBody(s.api, (*qualifyBody).complete)
	register(s, Op{Operation: huma.Operation{OperationID: "list-user-coupons", Method: http.MethodGet,
		Path: "/v1/users/{user_id}/coupons", Summary: "A user's coupons, newest first", Tags: tags}, Access: AccessUserRead},
		func(ctx context.Context, p tenant.Principal, in *listCouponsIn) (*couponPageOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			page, err := svc.List(ctx, coupon.ListParams{TenantID: p.TenantID, UserID: userID, State: coupon.State(in.State),
				Template: in.Template, ExpiringBefore: in.ExpiringBefore, Cursor: in.Cursor, Limit: in.Limit})
			return &couponPageOut{Body: page}, locate(err)
		})
	register(s, Op{Operation: huma.Operation{OperationID: "qualify-user-coupons", Method: http.MethodPost,
		Path: qualifyPath, Summary: "Which of a user's coupons apply to a cart, the best pick and why not the others",
		Tags: tags, Errors: []int{http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity}},
		Access: AccessUserRead},
		func(ctx context.Context, p tenant.Principal, in *qualifyIn) (*qualifyOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			var body qualifyBody
			if err := qualifyBodies.decode(in.contentType, in.RawBody, &body); err != nil {
				return nil, err
			}
			buf := qualifyBuffers.Get().(*qualify.Buffer)
			res, err := svc.Qualify(ctx, coupon.QualifyParams{TenantID: p.TenantID, UserID: userID, Cart: body.Cart,
				Lang: in.Lang, User: body.User, Buffer: buf})
			if err != nil {
				qualifyBuffers.Put(buf)
				return nil, locate(err, couponBodyFields...)
			}
			return &qualifyOut{Body: qualifyAnswer{Result: res, buf: buf}}, nil
		})
	qualifyBodies.document(http.MethodPost, qualifyPath, "The cart to qualify the wallet against, and the user's attributes.")
	register(s, Op{Operation: huma.Operation{OperationID: "get-coupon", Method: http.MethodGet,
		Path: "/v1/coupons/{coupon_id}", Summary: "Get a coupon (archived ones too)", Tags: tags}, Access: AccessRead},
		func(ctx context.Context, p tenant.Principal, in *CouponPath) (*couponOut, error) {
			c, err := svc.Get(ctx, p.TenantID, in.CouponID)
			return &couponOut{Body: c}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "revoke-coupon", Method: http.MethodPost,
		Path: "/v1/coupons/{coupon_id}/revoke", Summary: "Withdraw an issued coupon", Tags: tags}, Access: AccessWrite},
		func(ctx context.Context, p tenant.Principal, in *revokeIn) (*couponOut, error) {
			reason := ""
			if in.Body != nil {
				reason = in.Body.Reason
			}
			c, err := svc.Revoke(ctx, p.TenantID, in.CouponID, reason)
			return &couponOut{Body: c}, locate(err, couponBodyFields...)
		})
}

func (s *Server) registerRedemptionRoutes(svc *coupon.Service, tags []string) {
	register(s, Op{Operation: huma.Operation{OperationID: "lock-coupons", Method: http.MethodPost,
		Path: "/v1/redemptions", Summary: "Lock coupons for an order (all or none) and price them",
		DefaultStatus: http.StatusCreated, Tags: tags}, Access: AccessIntegrate},
		func(ctx context.Context, p tenant.Principal, in *lockIn) (*redemptionOut, error) {
			b := in.Body
			ttl := time.Duration(b.TTLSeconds) * time.Second
			if b.TTLSeconds < 0 || b.TTLSeconds > int64(coupon.MaxLockTTL/time.Second) {
				ttl = -1 // out of range: the module says so, with the field
			}
			r, err := svc.Lock(ctx, coupon.LockParams{TenantID: p.TenantID, UserID: b.UserID, OrderID: b.OrderID,
				CouponIDs: b.CouponIDs, Cart: b.Cart, TTL: ttl, Lang: in.Lang, User: b.User})
			// A repeat for the order answers the redemption as it is now, with the same 201.
			return &redemptionOut{Status: http.StatusCreated, Body: r}, locate(err, couponBodyFields...)
		})
	register(s, Op{Operation: huma.Operation{OperationID: "get-redemption", Method: http.MethodGet,
		Path: "/v1/redemptions/{redemption_id}", Summary: "Get a redemption", Tags: tags}, Access: AccessIntegrate},
		func(ctx context.Context, p tenant.Principal, in *RedemptionPath) (*redemptionOut, error) {
			r, err := svc.GetRedemption(ctx, p.TenantID, in.RedemptionID)
			return &redemptionOut{Status: http.StatusOK, Body: r}, err
		})
	for _, t := range []struct {
		id, action, summary string
		fn                  func(context.Context, string, string) (coupon.Redemption, error)
	}{
		{"confirm-redemption", "confirm", "Confirm a locked redemption: the coupons are redeemed", svc.Confirm},
		{"release-redemption", "release", "Release a locked redemption: the coupons go back to the wallet", svc.Release},
	} {
		register(s, Op{Operation: huma.Operation{OperationID: t.id, Method: http.MethodPost,
			Path: "/v1/redemptions/{redemption_id}/" + t.action, Summary: t.summary, Tags: tags}, Access: AccessIntegrate},
			func(ctx context.Context, p tenant.Principal, in *RedemptionPath) (*redemptionOut, error) {
				r, err := t.fn(ctx, p.TenantID, in.RedemptionID)
				return &redemptionOut{Status: http.StatusOK, Body: r}, err
			})
	}
	register(s, Op{Operation: huma.Operation{OperationID: "rollback-redemption", Method: http.MethodPost,
		Path: "/v1/redemptions/{redemption_id}/rollback", Summary: "Roll a confirmed redemption back (refund)",
		Tags: tags}, Access: AccessIntegrate},
		func(ctx context.Context, p tenant.Principal, in *rollbackRedemptionIn) (*redemptionOut, error) {
			params := coupon.RollbackParams{TenantID: p.TenantID, ID: in.RedemptionID}
			if in.Body != nil {
				params.Policy = coupon.RollbackPolicy(in.Body.Policy)
			}
			r, err := svc.Rollback(ctx, params)
			return &redemptionOut{Status: http.StatusOK, Body: r}, locate(err, couponBodyFields...)
		})
}
