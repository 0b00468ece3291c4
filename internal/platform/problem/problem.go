// Package problem holds perk's typed domain errors. Modules return them; the HTTP edge translates them,
// in exactly one place, into RFC 9457 problem details. The text of any other error never reaches a client.
package problem

import (
	"errors"
	"fmt"
)

// Kind is the class of a domain error. The HTTP edge maps each kind to one status code.
type Kind string

// The kinds of domain error.
const (
	KindInvalid          Kind = "invalid"           // the request is well-formed but its values are wrong (422)
	KindBadRequest       Kind = "bad-request"       // the request cannot be read (400)
	KindUnauthenticated  Kind = "unauthenticated"   // no or bad credentials (401)
	KindForbidden        Kind = "forbidden"         // credentials lack the role (403)
	KindNotFound         Kind = "not-found"         // nothing there, or not visible to this tenant (404)
	KindConflict         Kind = "conflict"          // state or uniqueness conflict (409)
	KindTooLarge         Kind = "too-large"         // body or batch over its limit (413)
	KindUnsupportedMedia Kind = "unsupported-media" // wrong Content-Type (415)
	KindRateLimited      Kind = "rate-limited"      // too many requests (429)
	KindUnavailable      Kind = "unavailable"       // a dependency is down; retry later (503)
	KindInternal         Kind = "internal"          // a bug or an unexpected failure (500)
)

// Field is one problem with one input field.
type Field struct {
	// Path locates the field, e.g. "body.rewards[0].amount" or "query.limit".
	Path string `json:"path"`
	// Message says what is wrong with it.
	Message string `json:"message"`
}

// Error is a domain error. Code, when set, is a stable slug more specific than the kind
// (e.g. "insufficient-balance"); it becomes the problem's type.
type Error struct {
	Kind   Kind
	Code   string
	Detail string
	Fields []Field
	// Extensions are extra members of the problem document (e.g. "retry_after").
	Extensions map[string]any
	// Cause is kept for logs only.
	Cause error
}

// Error implements error.
func (e *Error) Error() string {
	msg := string(e.Kind) + ": " + e.Detail
	for _, f := range e.Fields {
		msg += "; " + f.Path + ": " + f.Message
	}
	return msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Slug is the problem's stable type slug: the code if set, else the kind.
func (e *Error) Slug() string {
	if e.Code != "" {
		return e.Code
	}
	return string(e.Kind)
}

// WithField adds a field problem and returns e.
func (e *Error) WithField(path, message string) *Error {
	e.Fields = append(e.Fields, Field{Path: path, Message: message})
	return e
}

// WithCode sets the stable code and returns e.
func (e *Error) WithCode(code string) *Error {
	e.Code = code
	return e
}

// With sets an extension member and returns e.
func (e *Error) With(key string, value any) *Error {
	if e.Extensions == nil {
		e.Extensions = map[string]any{}
	}
	e.Extensions[key] = value
	return e
}

// Wrap records cause (for logs) and returns e.
func (e *Error) Wrap(cause error) *Error {
	e.Cause = cause
	return e
}

// New returns an error of the given kind with a formatted detail.
func New(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// Invalid returns a KindInvalid error.
func Invalid(format string, args ...any) *Error { return New(KindInvalid, format, args...) }

// NotFound returns a KindNotFound error.
func NotFound(format string, args ...any) *Error { return New(KindNotFound, format, args...) }

// Conflict returns a KindConflict error.
func Conflict(format string, args ...any) *Error { return New(KindConflict, format, args...) }

// Forbidden returns a KindForbidden error.
func Forbidden(format string, args ...any) *Error { return New(KindForbidden, format, args...) }

// Unauthenticated returns a KindUnauthenticated error.
func Unauthenticated(format string, args ...any) *Error {
	return New(KindUnauthenticated, format, args...)
}

// Unavailable returns a KindUnavailable error.
func Unavailable(format string, args ...any) *Error { return New(KindUnavailable, format, args...) }

// Fields collects field problems and turns them into one KindInvalid error.
type Fields []Field

// Add records a problem with the field at path.
func (fs *Fields) Add(path, format string, args ...any) {
	*fs = append(*fs, Field{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Err returns nil when no problem was added, else a KindInvalid error listing them all.
func (fs Fields) Err(detail string) error {
	if len(fs) == 0 {
		return nil
	}
	return &Error{Kind: KindInvalid, Detail: detail, Fields: fs}
}

// As finds the first *Error in err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Is reports whether err is a domain error of the given kind.
func Is(err error, kind Kind) bool {
	e, ok := As(err)
	return ok && e.Kind == kind
}
