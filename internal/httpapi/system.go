package httpapi

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/perkhq/perk/internal/tenant"
)

// HealthBody is the answer of /healthz.
type HealthBody struct {
	Status  string         `json:"status" example:"ok"`
	Version string         `json:"version"`
	Info    map[string]any `json:"info,omitempty" doc:"Node facts, e.g. config_snapshot_version"`
}

// ReadyBody is the answer of /readyz.
type ReadyBody struct {
	Status string            `json:"status" example:"ready"`
	Checks map[string]string `json:"checks" doc:"Each check: ok, or what is wrong"`
}

type healthOut struct{ Body HealthBody }

type readyOut struct {
	Status int
	Body   ReadyBody
}

// WhoAmIBody describes the caller.
type WhoAmIBody struct {
	Principal tenant.Principal `json:"principal"`
}

type whoAmIOut struct{ Body WhoAmIBody }

func (s *Server) registerSystem() {
	register(s, Op{Operation: huma.Operation{OperationID: "health", Method: http.MethodGet, Path: "/healthz",
		Summary: "Liveness and node facts", Tags: []string{"System"}}, Access: AccessPublic},
		func(ctx context.Context, _ tenant.Principal, _ *struct{}) (*healthOut, error) {
			out := &healthOut{Body: HealthBody{Status: "ok", Version: s.deps.Version}}
			if s.deps.Info != nil {
				out.Body.Info = s.deps.Info()
			}
			return out, nil
		})
	register(s, Op{Operation: huma.Operation{OperationID: "ready", Method: http.MethodGet, Path: "/readyz",
		Summary: "Readiness: database, bus and migrations", Tags: []string{"System"}}, Access: AccessPublic},
		func(ctx context.Context, _ tenant.Principal, _ *struct{}) (*readyOut, error) {
			return s.ready(ctx), nil
		})
	register(s, Op{Operation: huma.Operation{OperationID: "whoami", Method: http.MethodGet, Path: "/v1/me",
		Summary: "Describe the calling credential", Tags: []string{"System"}}, Access: AccessAnyKey},
		func(ctx context.Context, p tenant.Principal, _ *struct{}) (*whoAmIOut, error) {
			return &whoAmIOut{Body: WhoAmIBody{Principal: p}}, nil
		})
	s.mux.Handle("GET /metrics", s.metricsHandler())
	s.mux.HandleFunc("GET /docs", s.docs)
	s.mux.HandleFunc("GET /{$}", s.home)
}

// ready runs every readiness check concurrently, each bounded by a short timeout.
func (s *Server) ready(ctx context.Context) *readyOut {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out := &readyOut{Status: http.StatusOK, Body: ReadyBody{Status: "ready", Checks: map[string]string{}}}
	names := make([]string, 0, len(s.deps.Ready))
	for name := range s.deps.Ready {
		names = append(names, name)
	}
	sort.Strings(names)
	results := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.deps.Ready[name](ctx)
		}()
	}
	wg.Wait()
	for i, name := range names {
		out.Body.Checks[name] = "ok"
		if results[i] != nil {
			out.Body.Checks[name] = results[i].Error()
			out.Status, out.Body.Status = http.StatusServiceUnavailable, "not ready"
		}
	}
	return out
}
