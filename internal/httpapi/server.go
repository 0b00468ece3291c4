// Package httpapi is perk's REST API: plain net/http with huma for OpenAPI 3.1, RFC 9457 problems,
// bearer authentication by API key or user token, idempotent writes, metrics and access logs.
// It holds no business rules: each handler decodes, calls a module and encodes.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/perkhq/perk/internal/activity"
	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/ingest"
	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/idem"
	"github.com/perkhq/perk/internal/reward"
	"github.com/perkhq/perk/internal/task"
	"github.com/perkhq/perk/internal/tenant"
	"github.com/perkhq/perk/internal/webhook"
)

// Deps are the modules and settings the API serves.
type Deps struct {
	Tenants *tenant.Service
	// Catalog is the config center; nil leaves its routes out.
	Catalog *catalog.Service
	// Webhooks manages outbound webhook endpoints and deliveries; nil leaves its routes out.
	Webhooks *webhook.Service
	// Activity is the activity log; nil leaves its routes out.
	Activity *activity.Service
	// Ledger is the points and growth ledger; nil leaves its routes out.
	Ledger *ledger.Service
	// Rewards runs grants and reward flows; nil leaves its routes out.
	Rewards *reward.Service
	// Ingest takes behaviour events in (POST /v1/events); nil leaves its route out.
	Ingest *ingest.Service
	// Tasks runs the task center; nil leaves its routes out.
	Tasks *task.Service
	// Coupons runs issuance, wallets, qualification and redemptions; nil leaves its routes out.
	Coupons *coupon.Service
	// Idem makes writes idempotent; nil turns the middleware off.
	Idem *idem.Service
	// Ready lists the readiness checks run by /readyz, by name.
	Ready map[string]func(context.Context) error
	// Info adds facts to /healthz (e.g. the config snapshot version).
	Info func() map[string]any
	// Registry collects metrics and serves /metrics; nil serves no metrics.
	Registry     *prometheus.Registry
	Logger       *slog.Logger
	MaxBodyBytes int64
	Version      string
}

// Server is the HTTP API.
type Server struct {
	deps Deps
	log  *slog.Logger
	mux  *http.ServeMux
	api  huma.API
	ops  []Op
	// opByPattern maps a mux pattern ("POST /v1/merchants") to its operation id.
	opByPattern map[string]string
	metrics     *httpMetrics
	handler     http.Handler
	// bodyLimits are the routes ("POST /v1/events") allowed a larger body than Deps.MaxBodyBytes.
	bodyLimits map[string]int64
}

// New builds the API with every route registered.
func New(deps Deps) *Server {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.MaxBodyBytes <= 0 {
		deps.MaxBodyBytes = 1 << 20
	}
	s := &Server{deps: deps, log: deps.Logger, mux: http.NewServeMux(), opByPattern: map[string]string{},
		bodyLimits: map[string]int64{}}
	var reg prometheus.Registerer
	if deps.Registry != nil {
		reg = deps.Registry
	}
	s.metrics = newHTTPMetrics(reg)
	s.api = humago.New(s.mux, s.humaConfig())
	s.registerSystem()
	s.registerTenantRoutes()
	s.registerUserRoutes()
	s.registerConfigRoutes()
	if deps.Webhooks != nil {
		s.registerWebhookRoutes(deps.Webhooks)
	}
	if deps.Activity != nil {
		s.registerActivityRoutes(deps.Activity)
	}
	if deps.Ledger != nil {
		s.registerLedgerRoutes(deps.Ledger)
		s.registerAssetRoutes(deps.Ledger)
	}
	if deps.Rewards != nil {
		s.registerRewardRoutes(deps.Rewards)
	}
	if deps.Ingest != nil {
		s.registerEventRoutes(deps.Ingest)
	}
	if deps.Coupons != nil {
		s.registerCouponRoutes(deps.Coupons)
	}
	if deps.Tasks != nil {
		s.registerTaskRoutes(deps.Tasks)
	}
	s.handler = s.observe(s.limitBody(s.authenticate(s.idempotent(http.HandlerFunc(s.route)))))
	return s
}

func (s *Server) humaConfig() huma.Config {
	cfg := huma.DefaultConfig("perk API", s.deps.Version)
	cfg.Components.Schemas = huma.NewMapRegistry("#/components/schemas/", schemaName)
	cfg.CreateHooks = nil // no $schema links in bodies
	cfg.Formats = jsonFormats()
	cfg.DocsPath = "" // /docs is ours: self-contained, no CDN
	cfg.SchemasPath = ""
	cfg.OpenAPIPath = "/openapi"
	cfg.Info.Description = "perk is a user-growth and incentive platform: task centers, campaigns, coupons, " +
		"points, growth levels and paid memberships. Errors are RFC 9457 problem details; writes accept an " +
		"Idempotency-Key header; lists use cursor pagination."
	cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer", Description: "An API key (perk_…) or a C-end user token (JWT)."},
	}
	return cfg
}

// Handler returns the API's root handler.
func (s *Server) Handler() http.Handler { return s.handler }

// API exposes the huma API, e.g. for the OpenAPI document.
func (s *Server) API() huma.API { return s.api }

// Operations lists every registered operation with its access level.
func (s *Server) Operations() []Op { return s.ops }

// limitBody caps every request body; huma answers 413 when a handler's body goes over.
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := s.bodyLimit(r)
		if r.ContentLength > limit {
			writeProblem(w, r, newProblem(http.StatusRequestEntityTooLarge, "",
				"the request body is larger than the limit of "+humanBytes(limit)))
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		next.ServeHTTP(w, r)
	})
}

// bodyLimit is the largest body the request's route accepts.
func (s *Server) bodyLimit(r *http.Request) int64 {
	if limit, ok := s.bodyLimits[r.Method+" "+r.URL.Path]; ok {
		return limit
	}
	return s.deps.MaxBodyBytes
}

// largestBodyLimit is the largest body any route accepts: limitBody has already held each request
// to its route's limit when the idempotency layer buffers it.
func (s *Server) largestBodyLimit() int64 {
	largest := s.deps.MaxBodyBytes
	for _, limit := range s.bodyLimits {
		largest = max(largest, limit)
	}
	return largest
}

// idempotent puts the idempotency component in front of every write made with a credential. The
// operation is named by its OpenAPI operation id, which is what idempotency config is keyed by.
func (s *Server) idempotent(next http.Handler) http.Handler {
	if s.deps.Idem == nil {
		return next
	}
	return idem.Middleware(s.deps.Idem, idem.MiddlewareOptions{
		Operation: s.operationID,
		Identity: func(r *http.Request) (string, string, bool) {
			p, ok := principalFrom(r.Context())
			return p.TenantID, p.CredentialID(), ok
		},
		MaxBody: s.largestBodyLimit(),
		WriteError: func(w http.ResponseWriter, r *http.Request, err error) {
			writeProblem(w, r, toProblem(r.Context(), s.log, err))
		},
	})(next)
}

// operationID names the operation a write request will run, or "" for reads and unmatched routes.
func (s *Server) operationID(r *http.Request) string {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return ""
	}
	return s.opByPattern[s.patternOf(r)]
}

// route serves matched routes and answers unmatched ones with 404 or 405 problems.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if s.patternOf(r) != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	h, _ := s.mux.Handler(r)
	probe := &headerProbe{header: http.Header{}}
	h.ServeHTTP(probe, r)
	switch probe.status {
	case http.StatusMethodNotAllowed:
		p := newProblem(http.StatusMethodNotAllowed, "", r.Method+" is not allowed on "+r.URL.Path)
		p.headers = http.Header{"Allow": probe.header.Values("Allow")}
		writeProblem(w, r, p)
	case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		s.mux.ServeHTTP(w, r)
	default:
		writeProblem(w, r, newProblem(http.StatusNotFound, "", "no route matches "+r.Method+" "+r.URL.Path))
	}
}

// headerProbe captures what the mux's fallback handler would answer, without sending it.
type headerProbe struct {
	header http.Header
	status int
}

func (p *headerProbe) Header() http.Header         { return p.header }
func (p *headerProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *headerProbe) WriteHeader(status int)      { p.status = status }

func (s *Server) metricsHandler() http.Handler {
	if s.deps.Registry == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(s.deps.Registry, promhttp.HandlerOpts{Registry: s.deps.Registry})
}
