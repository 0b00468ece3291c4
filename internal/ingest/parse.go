package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/tenant"
)

// shape is what a content type says the body holds.
type shape int

const (
	shapeEvent shape = iota + 1 // one event
	shapeBatch                  // an array of events
	shapeAny                    // application/json: either
)

// Attribute limits.
const (
	maxIDLen     = 128
	maxSourceLen = 256
)

// shapeOf reads the request's content type. Parameters (charset) are ignored; a missing content
// type is read as application/json, as everywhere else in the API.
func shapeOf(contentType string) (shape, error) {
	if strings.TrimSpace(contentType) == "" {
		return shapeAny, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	switch {
	case err != nil:
	case mt == ContentTypeEvent:
		return shapeEvent, nil
	case mt == ContentTypeBatch:
		return shapeBatch, nil
	case mt == ContentTypeJSON:
		return shapeAny, nil
	}
	return 0, problem.New(problem.KindUnsupportedMedia,
		"events are read as %s, %s or %s, not %q", ContentTypeEvent, ContentTypeBatch, ContentTypeJSON, contentType)
}

// split reads the body into its events' JSON, as sent. single is true when the body is one event
// (an object). A body that cannot be read as a whole is refused with a problem.
func (s *Service) split(sh shape, body []byte) (raws []json.RawMessage, single bool, err error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, false, problem.New(problem.KindBadRequest, "the body is empty; send a CloudEvent or an array of them")
	}
	switch first := trimmed[0]; {
	case first == '{' && sh != shapeBatch:
		if !json.Valid(trimmed) {
			return nil, false, notJSON(trimmed)
		}
		return []json.RawMessage{trimmed}, true, nil
	case first == '[' && sh != shapeEvent:
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, false, notJSON(trimmed)
		}
	case !json.Valid(trimmed):
		return nil, false, notJSON(trimmed)
	case sh == shapeEvent:
		return nil, false, problem.Invalid("%s carries one event, a JSON object; send a batch as %s",
			ContentTypeEvent, ContentTypeBatch).WithField("body", "must be a JSON object").With("reason", ReasonMalformed)
	case sh == shapeBatch:
		return nil, false, problem.Invalid("%s carries a JSON array of events", ContentTypeBatch).
			WithField("body", "must be a JSON array")
	default:
		return nil, false, problem.Invalid("the body must be a CloudEvent (a JSON object) or an array of them").
			WithField("body", "must be a JSON object or array").With("reason", ReasonMalformed)
	}
	switch {
	case len(raws) == 0:
		return nil, false, problem.Invalid("the batch is empty").WithField("body", "must hold at least one event")
	case len(raws) > s.opts.MaxBatch:
		return nil, false, problem.New(problem.KindTooLarge, "the batch has %d events; the limit is %d, send it in parts",
			len(raws), s.opts.MaxBatch)
	}
	return raws, false, nil
}

// notJSON is the problem of a body that is not JSON, locating the first syntax error.
func notJSON(body []byte) error {
	var v any
	err := json.Unmarshal(body, &v)
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return problem.New(problem.KindBadRequest, "the body is not valid JSON: %s (at byte %d)", syn.Error(), syn.Offset)
	}
	return problem.New(problem.KindBadRequest, "the body is not valid JSON")
}

// wireEvent is a CloudEvent in JSON (structured mode) as far as ingestion reads it. Other
// attributes (dataschema, extensions) are allowed and not carried.
type wireEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            *string         `json:"time"`
	DataContentType *string         `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      json.RawMessage `json:"data_base64"`
}

// issue is one thing wrong with an event.
type issue struct {
	attr   string // the attribute, "" for the whole event
	reason string
	msg    string
}

// rejection says why an event is refused: its issues, the first one leading.
type rejection []issue

func (r *rejection) add(attr, reason, format string, args ...any) {
	*r = append(*r, issue{attr: attr, reason: reason, msg: fmt.Sprintf(format, args...)})
}

// reason is the leading issue's reason.
func (r rejection) reason() string { return r[0].reason }

// detail joins the issues for a human: "subject: must be a user id; time: must be RFC 3339".
func (r rejection) detail() string {
	parts := make([]string, len(r))
	for i, is := range r {
		if is.attr == "" {
			parts[i] = is.msg
		} else {
			parts[i] = is.attr + ": " + is.msg
		}
	}
	return strings.Join(parts, "; ")
}

// problem is the rejection of a single-event request: invalid, a field per issue.
func (r rejection) problem() error {
	e := problem.Invalid("the event was rejected: %s", r.detail()).With("reason", r.reason())
	for _, is := range r {
		path := "body"
		if is.attr != "" {
			path += "." + is.attr
		}
		e.WithField(path, is.msg)
	}
	return e
}

// decode validates one event's JSON and builds its envelope, or says why it is rejected. id is
// the event's id when it is valid (for the result), whatever else is wrong.
func (s *Service) decode(tenantID string, raw json.RawMessage, now time.Time) (ev bus.Behaviour, id string, rej rejection) {
	if len(raw) > s.opts.MaxEventBytes {
		rej.add("", ReasonTooLarge, "the event is %d bytes; the limit is %d", len(raw), s.opts.MaxEventBytes)
		return ev, "", rej
	}
	if raw = bytes.TrimSpace(raw); len(raw) == 0 || raw[0] != '{' {
		rej.add("", ReasonMalformed, "an event must be a JSON object")
		return ev, "", rej
	}
	var w wireEvent
	if err := json.Unmarshal(raw, &w); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) && typ.Field != "" {
			rej.add(typ.Field, ReasonInvalidAttribute, "must be a string, not a JSON %s", typ.Value)
		} else {
			rej.add("", ReasonMalformed, "the event is not a valid JSON object")
		}
		return ev, "", rej
	}
	if checkID(w.ID, &rej) {
		id = w.ID
	}
	checkRequired(w, &rej)
	at := s.checkTime(w.Time, now, &rej)
	data := checkData(w, &rej)
	if len(rej) > 0 {
		return ev, id, rej
	}
	return bus.Behaviour{TenantID: tenantID, ID: w.ID, Source: w.Source, Type: w.Type, UserID: w.Subject,
		Time: at, ReceivedAt: now, Data: data}, id, nil
}

// checkID checks the id attribute: 1 to 128 printable characters.
func checkID(id string, rej *rejection) bool {
	switch {
	case id == "":
		rej.add("id", ReasonMissingAttribute, "is required")
	case len(id) > maxIDLen:
		rej.add("id", ReasonInvalidAttribute, "must be at most %d bytes", maxIDLen)
	case !printable(id):
		rej.add("id", ReasonInvalidAttribute, "must be printable text (no control characters)")
	default:
		return true
	}
	return false
}

// checkRequired checks specversion, source, type and subject.
func checkRequired(w wireEvent, rej *rejection) {
	switch {
	case w.SpecVersion == "":
		rej.add("specversion", ReasonMissingAttribute, "is required (\"1.0\")")
	case w.SpecVersion != "1.0":
		rej.add("specversion", ReasonInvalidAttribute, "must be \"1.0\"")
	}
	switch {
	case w.Source == "":
		rej.add("source", ReasonMissingAttribute, "is required")
	case len(w.Source) > maxSourceLen:
		rej.add("source", ReasonInvalidAttribute, "must be at most %d bytes", maxSourceLen)
	case !validSource(w.Source):
		rej.add("source", ReasonInvalidAttribute, "must be a URI reference, e.g. /shop/orders or https://shop.example/orders")
	}
	switch {
	case w.Type == "":
		rej.add("type", ReasonMissingAttribute, "is required")
	case !bus.ValidBehaviourType(w.Type):
		rej.add("type", ReasonInvalidAttribute,
			"must be a dotted lower-case name of at most %d characters, e.g. checkin or order.paid", bus.MaxBehaviourTypeLen)
	}
	switch {
	case w.Subject == "":
		rej.add("subject", ReasonMissingAttribute, "is required: the user id")
	case !tenant.ValidUserID(w.Subject):
		rej.add("subject", ReasonInvalidAttribute, "must be a user id: 1 to 128 characters of A-Z a-z 0-9 _ . : @ -, "+
			"starting with a letter or digit")
	}
}

// checkTime reads the time attribute (now when absent) and checks it against the lateness and
// future-skew limits.
func (s *Service) checkTime(raw *string, now time.Time, rej *rejection) time.Time {
	if raw == nil {
		return now
	}
	at, err := time.Parse(time.RFC3339Nano, *raw)
	if err != nil {
		rej.add("time", ReasonInvalidAttribute, "must be an RFC 3339 timestamp, e.g. 2026-03-10T09:00:00Z")
		return now
	}
	at = at.UTC()
	switch {
	case s.opts.MaxLateness > 0 && now.Sub(at) > s.opts.MaxLateness:
		rej.add("time", ReasonTooLate, "%s is older than the accepted lateness of %s", *raw, s.opts.MaxLateness)
	case s.opts.MaxFutureSkew > 0 && at.Sub(now) > s.opts.MaxFutureSkew:
		rej.add("time", ReasonInFuture, "%s is more than %s in the future", *raw, s.opts.MaxFutureSkew)
	}
	return at
}

// checkData checks datacontenttype, data and data_base64, and returns data (nil when absent).
func checkData(w wireEvent, rej *rejection) json.RawMessage {
	if w.DataContentType != nil {
		mt, _, err := mime.ParseMediaType(*w.DataContentType)
		if err != nil || mt != ContentTypeJSON {
			rej.add("datacontenttype", ReasonInvalidData, "must be %s (or absent)", ContentTypeJSON)
		}
	}
	if len(w.DataBase64) > 0 && !isNull(w.DataBase64) {
		rej.add("data_base64", ReasonInvalidData, "is not supported: send data as a JSON object")
	}
	if len(w.Data) == 0 || isNull(w.Data) {
		return nil
	}
	if w.Data[0] != '{' {
		rej.add("data", ReasonInvalidData, "must be a JSON object")
		return nil
	}
	return w.Data
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		} else if c >= utf8.RuneSelf {
			return printableUnicode(s[i:])
		}
	}
	return true
}

func printableUnicode(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}

// validSource reports whether s is a URI reference: printable ASCII without spaces that parses.
func validSource(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	_, err := url.Parse(s)
	return err == nil
}
