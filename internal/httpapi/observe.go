package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
)

// requestKey keys the requestInfo in a request's context.
type requestKey struct{}

// requestInfo is what problems quote of their request, its id and path, and the pattern of the
// route that serves it (see patternOf).
type requestInfo struct {
	id, path, pattern string
	matched           bool
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestOf returns the requestInfo of the request ctx is of (an empty one outside a request).
func requestOf(ctx context.Context) *requestInfo {
	if info, ok := ctx.Value(requestKey{}).(*requestInfo); ok {
		return info
	}
	return &requestInfo{}
}

// statusRecorder remembers the status and size of a response.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "perk_http_request_duration_seconds", Help: "HTTP request latency by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"method", "route"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "perk_http_requests_in_flight", Help: "HTTP requests being served.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.inflight)
	}
	return m
}

// observe gives each request an id, recovers panics, logs it and counts it.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !requestIDPattern.MatchString(id) {
			id = ids.New("req", start)
		}
		w.Header().Set("X-Request-Id", id)
		info := &requestInfo{id: id, path: r.URL.Path}
		r = r.WithContext(context.WithValue(r.Context(), requestKey{}, info))
		rec := &statusRecorder{ResponseWriter: w}
		s.metrics.inflight.Inc()
		defer func() {
			s.metrics.inflight.Dec()
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "panic serving request", "panic", v, "request_id", id)
				if rec.status == 0 {
					writeProblem(rec, r, toProblem(r.Context(), s.log, problem.New(problem.KindInternal, "internal error")))
				}
			}
			s.finish(r, rec, start, info)
		}()
		next.ServeHTTP(rec, r)
	})
}

func (s *Server) finish(r *http.Request, rec *statusRecorder, start time.Time, info *requestInfo) {
	elapsed := time.Since(start)
	route := s.routeOf(r)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	s.metrics.requests.WithLabelValues(r.Method, route, strconv.Itoa(status)).Inc()
	s.metrics.duration.WithLabelValues(r.Method, route).Observe(elapsed.Seconds())
	if route == "/metrics" || route == "/healthz" || route == "/readyz" {
		return
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	if !s.log.Enabled(r.Context(), level) {
		return
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "route", route, "status", status,
		"bytes", rec.bytes, "duration_ms", float64(elapsed.Microseconds()) / 1000, "request_id", info.id}
	if p, ok := principalFrom(r.Context()); ok {
		attrs = append(attrs, "tenant", p.TenantID)
	}
	s.log.Log(r.Context(), level, "http request", attrs...)
}

// routeOf returns the route pattern that serves r, or "unmatched", to keep metric labels bounded.
func (s *Server) routeOf(r *http.Request) string {
	pattern := s.patternOf(r)
	if pattern == "" {
		return "unmatched"
	}
	if _, path, ok := strings.Cut(pattern, " "); ok {
		return path
	}
	return pattern
}

// patternOf returns the mux pattern that serves r ("" when none). The idempotency layer, the
// router and the metrics all ask; the mux is asked once per request.
func (s *Server) patternOf(r *http.Request) string {
	info := requestOf(r.Context())
	if !info.matched {
		_, info.pattern = s.mux.Handler(r)
		info.matched = true
	}
	return info.pattern
}
