package idem

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net/http"

	"github.com/perkhq/perk/internal/platform/problem"
)

// DefaultMaxBody bounds the request body the middleware buffers when MiddlewareOptions.MaxBody is 0.
const DefaultMaxBody = 1 << 20

// MiddlewareOptions configures Middleware.
type MiddlewareOptions struct {
	// Operation names the request's operation; "" leaves the request alone (e.g. GET).
	Operation func(*http.Request) string
	// Identity returns the request's tenant and scope (credential id); ok = false leaves the
	// request alone.
	Identity func(*http.Request) (tenant, scope string, ok bool)
	// MaxBody bounds the buffered request body (default DefaultMaxBody); larger bodies get 413.
	MaxBody int64
	// WriteError answers a refusal (a *problem.Error, or another error for a 500). It is
	// required: the HTTP layer passes its problem writer, the one place where domain errors become
	// RFC 9457 documents, so every problem looks the same.
	WriteError func(w http.ResponseWriter, r *http.Request, err error)
}

// Middleware makes the wrapped handler idempotent. For a managed request it takes the key (from
// the operation's KeyExpr, else the Idempotency-Key header), buffers the body (r.Body is restored
// for the handler), fingerprints method, path, query and body, and runs the handler through
// Service.Do with a response recorder: completed responses (status < 500) are stored and later
// replayed with "Idempotent-Replayed: true"; refusals are RFC 9457 problem documents. The
// handler's response is buffered, so streaming (Flush, Hijack) is not available behind it.
func Middleware(svc *Service, opts MiddlewareOptions) func(http.Handler) http.Handler {
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.WriteError == nil {
		panic("idem: MiddlewareOptions.WriteError is required")
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			op := ""
			if opts.Operation != nil {
				op = opts.Operation(r)
			}
			tenant, scope, ok := "", "", false
			if op != "" && opts.Identity != nil {
				tenant, scope, ok = opts.Identity(r)
			}
			if !ok {
				next.ServeHTTP(w, r)
				return
			}
			m := managed{svc: svc, opts: opts, next: next, op: op, tenant: tenant, scope: scope}
			m.serve(w, r)
		})
	}
}

// managed is one request the middleware handles.
type managed struct {
	svc               *Service
	opts              MiddlewareOptions
	next              http.Handler
	op, tenant, scope string
}

func (m managed) serve(w http.ResponseWriter, r *http.Request) {
	cfg := m.svc.source.Operation(m.tenant, m.op)
	header := r.Header.Get(KeyHeader)
	if cfg.KeyExpr == "" && header == "" && !cfg.Required {
		m.svc.outcomes.WithLabelValues(m.op, string(OutcomeNone)).Inc()
		m.next.ServeHTTP(w, r)
		return
	}
	body, err := readBody(r, m.opts.MaxBody)
	if err != nil {
		m.opts.WriteError(w, r, err)
		return
	}
	key, err := m.key(cfg, header, r, body)
	if err != nil {
		out := OutcomeError
		if problem.Is(err, problem.KindBadRequest) {
			out = OutcomeBadKey
		}
		m.svc.outcomes.WithLabelValues(m.op, string(out)).Inc()
		m.opts.WriteError(w, r, err)
		return
	}
	call := Call{Tenant: m.tenant, Scope: m.scope, Operation: m.op, Key: key, Fingerprint: requestFingerprint(r, body)}
	resp, out, err := m.svc.do(r.Context(), call, cfg, func(ctx context.Context) (Response, error) {
		rec := &recorder{header: http.Header{}}
		m.next.ServeHTTP(rec, r.WithContext(ctx))
		return rec.response(), nil
	})
	switch {
	case err != nil:
		m.opts.WriteError(w, r, err)
	case out == OutcomeReplayed:
		writeResponse(w, resp, true)
	default:
		writeResponse(w, resp, false)
	}
}

// key takes the request's key from the operation's expression, else from the header.
func (m managed) key(cfg OperationConfig, header string, r *http.Request, body []byte) (string, error) {
	if cfg.KeyExpr != "" {
		key, err := m.svc.keys.eval(cfg.KeyExpr, r, body)
		if err != nil {
			return "", err // a broken expression is a configuration error: 500
		}
		return key, nil
	}
	if header == "" {
		return "", nil
	}
	return ParseKeyHeader(header)
}

// readBody buffers the body, up to max bytes, and puts it back on r.
func readBody(r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	_ = r.Body.Close()
	if err != nil {
		return nil, problem.New(problem.KindBadRequest, "the request body could not be read").Wrap(err)
	}
	if int64(len(body)) > max {
		return nil, problem.New(problem.KindTooLarge, "the request body is larger than %d bytes", max).WithCode(CodeBodyTooBig)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// requestFingerprint is sha256 over method, path, query and body.
func requestFingerprint(r *http.Request, body []byte) []byte {
	h := sha256.New()
	for _, part := range []string{r.Method, r.URL.EscapedPath(), r.URL.RawQuery} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(body)
	return h.Sum(nil)
}

// recorder buffers a handler's response.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (rec *recorder) Header() http.Header { return rec.header }

func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 && status >= 200 {
		rec.status = status
	}
}

func (rec *recorder) Write(b []byte) (int, error) {
	rec.WriteHeader(http.StatusOK)
	return rec.body.Write(b)
}

func (rec *recorder) response() Response {
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	return Response{Status: status, Header: rec.header, Body: rec.body.Bytes()}
}

func writeResponse(w http.ResponseWriter, resp Response, replayed bool) {
	for name, vs := range resp.Header {
		w.Header()[name] = vs
	}
	if replayed {
		w.Header().Set(ReplayedHeader, "true")
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(resp.Body)
}
