package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/danielgtaylor/huma/v2"

	"github.com/perkhq/perk/internal/platform/problem"
)

// ProblemTypeBase prefixes every problem type; docs/errors.md describes each one.
const ProblemTypeBase = "https://perk.dev/problems/"

// kindStatus is the one place where domain error kinds become HTTP statuses.
var kindStatus = map[problem.Kind]int{
	problem.KindInvalid:          http.StatusUnprocessableEntity,
	problem.KindBadRequest:       http.StatusBadRequest,
	problem.KindUnauthenticated:  http.StatusUnauthorized,
	problem.KindForbidden:        http.StatusForbidden,
	problem.KindNotFound:         http.StatusNotFound,
	problem.KindConflict:         http.StatusConflict,
	problem.KindTooLarge:         http.StatusRequestEntityTooLarge,
	problem.KindUnsupportedMedia: http.StatusUnsupportedMediaType,
	problem.KindRateLimited:      http.StatusTooManyRequests,
	problem.KindUnavailable:      http.StatusServiceUnavailable,
	problem.KindInternal:         http.StatusInternalServerError,
}

// statusSlug names the problem type of errors the HTTP layer raises itself.
var statusSlug = map[int]string{
	http.StatusBadRequest:            "bad-request",
	http.StatusUnauthorized:          "unauthenticated",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not-found",
	http.StatusMethodNotAllowed:      "method-not-allowed",
	http.StatusNotAcceptable:         "not-acceptable",
	http.StatusConflict:              "conflict",
	http.StatusRequestEntityTooLarge: "too-large",
	http.StatusUnsupportedMediaType:  "unsupported-media",
	http.StatusUnprocessableEntity:   "invalid",
	http.StatusTooManyRequests:       "rate-limited",
	http.StatusServiceUnavailable:    "unavailable",
}

// FieldError is one problem with one input field.
type FieldError struct {
	Location string `json:"location" doc:"Where the problem is, e.g. body.name or query.limit"`
	Message  string `json:"message" doc:"What is wrong"`
}

// Problem is an RFC 9457 problem details document.
type Problem struct {
	Type       string         `json:"type" doc:"Stable URI naming the kind of problem"`
	Title      string         `json:"title" doc:"Short summary of the problem type"`
	Status     int            `json:"status" doc:"HTTP status code"`
	Detail     string         `json:"detail,omitempty" doc:"Explanation specific to this occurrence"`
	Instance   string         `json:"instance,omitempty" doc:"The request path"`
	RequestID  string         `json:"request_id,omitempty" doc:"The request id, to quote to support"`
	Errors     []FieldError   `json:"errors,omitempty" doc:"Per-field problems"`
	Extensions map[string]any `json:"-"`
	headers    http.Header
}

// Error implements error.
func (p *Problem) Error() string { return p.Detail }

// GetStatus implements huma.StatusError.
func (p *Problem) GetStatus() int { return p.Status }

// GetHeaders implements huma.HeadersError.
func (p *Problem) GetHeaders() http.Header { return p.headers }

// ContentType makes huma send application/problem+json.
func (p *Problem) ContentType(string) string { return "application/problem+json" }

// MarshalJSON writes the extension members next to the standard ones.
func (p *Problem) MarshalJSON() ([]byte, error) {
	type plain Problem
	base, err := json.Marshal((*plain)(p))
	if err != nil || len(p.Extensions) == 0 {
		return base, err
	}
	merged := map[string]any{}
	if err := json.Unmarshal(base, &merged); err != nil {
		return nil, err
	}
	for k, v := range p.Extensions {
		if _, taken := merged[k]; !taken {
			merged[k] = v
		}
	}
	return json.Marshal(merged)
}

func newProblem(status int, slug, detail string) *Problem {
	if slug == "" {
		slug = statusSlug[status]
	}
	if slug == "" {
		slug = "internal"
	}
	return &Problem{Type: ProblemTypeBase + slug, Title: http.StatusText(status), Status: status, Detail: detail}
}

func init() {
	// Errors huma raises itself (validation, malformed bodies, limits) come out as our problems.
	huma.NewErrorWithContext = func(hctx huma.Context, status int, msg string, errs ...error) huma.StatusError {
		p := newProblem(status, "", msg)
		for _, err := range errs {
			var d huma.ErrorDetailer
			if errors.As(err, &d) {
				detail := d.ErrorDetail()
				p.Errors = append(p.Errors, FieldError{Location: detail.Location, Message: detail.Message})
			} else if err != nil {
				p.Errors = append(p.Errors, FieldError{Message: err.Error()})
			}
		}
		if hctx != nil {
			p.Instance = hctx.URL().Path
			p.RequestID = requestOf(hctx.Context()).id
		}
		return p
	}
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		return huma.NewErrorWithContext(nil, status, msg, errs...)
	}
}

// toProblem translates any error from a module into a problem quoting its request. Domain errors
// keep their kind, code, detail and fields; anything else is logged and answered as a bare 500.
func toProblem(ctx context.Context, log *slog.Logger, err error) *Problem {
	p := translate(ctx, log, err)
	p.quote(ctx)
	return p
}

// quote sets the problem's instance and request id, when not set, from its request's context.
func (p *Problem) quote(ctx context.Context) {
	info := requestOf(ctx)
	if p.Instance == "" {
		p.Instance = info.path
	}
	if p.RequestID == "" {
		p.RequestID = info.id
	}
}

func translate(ctx context.Context, log *slog.Logger, err error) *Problem {
	var already *Problem
	if errors.As(err, &already) {
		return already
	}
	if e, ok := problem.As(err); ok {
		status, known := kindStatus[e.Kind]
		if !known {
			status = http.StatusInternalServerError
		}
		p := newProblem(status, e.Slug(), e.Detail)
		for _, f := range e.Fields {
			p.Errors = append(p.Errors, FieldError{Location: f.Path, Message: f.Message})
		}
		p.Extensions = e.Extensions
		if status >= 500 && e.Cause != nil {
			log.ErrorContext(ctx, "request failed", "err", e.Cause, "request_id", requestOf(ctx).id)
		}
		return p
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return newProblem(http.StatusServiceUnavailable, "unavailable", "the request was canceled or timed out")
	}
	log.ErrorContext(ctx, "request failed", "err", err, "request_id", requestOf(ctx).id)
	return newProblem(http.StatusInternalServerError, "internal", "an internal error occurred; quote the request id to support")
}

// writeProblem writes a problem on a plain net/http response (outside huma).
func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	p.quote(r.Context())
	if p.Instance == "" { // a request that did not pass through observe
		p.Instance = r.URL.Path
	}
	for k, vs := range p.headers {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// humanBytes renders a byte count for messages: 1048576 → "1 MiB".
func humanBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}
