package httpapi

import (
	"errors"
	"mime"
	"net/http"
	"reflect"

	"github.com/danielgtaylor/huma/v2"
	jsonv2 "github.com/go-json-experiment/json"
)

// jsonBody reads the JSON body of a hot route in one strict pass, where huma reads every body
// three times (into any, to validate it against the schema, then into the struct), which is a
// sixth of the CPU a qualification costs. A body the strict pass does not accept is read again
// the way huma reads it, so a bad body gets exactly the errors every other route gives.
//
// The strict pass (github.com/go-json-experiment/json, the proposed encoding/json/v2) is as strict
// as the schema in what it checks: member names match case-sensitively; unknown and duplicate
// members, invalid UTF-8 and wrong types are refused. What it reads otherwise than huma is a
// required member left out or null (the zero value, where huma refuses it), and the route's
// complete function sends a body with a zero value in a required member to the slow path. (An
// optional member set to null is absent for both.)
type jsonBody[T any] struct {
	api    huma.API
	schema *huma.Schema
	// complete reports whether every member the schema requires was present.
	complete func(*T) bool
}

// newJSONBody prepares the reading of bodies of type T for a route of api, against T's schema in
// api's registry.
func newJSONBody[T any](api huma.API, complete func(*T) bool) *jsonBody[T] {
	schema := api.OpenAPI().Components.Schemas.Schema(reflect.TypeFor[T](), true, "")
	return &jsonBody[T]{api: api, schema: schema, complete: complete}
}

// document describes the body in the OpenAPI document of the operation at method and path: huma
// documents a raw body as bytes.
func (b *jsonBody[T]) document(method, path, description string) {
	item := b.api.OpenAPI().Paths[path]
	if item == nil {
		return
	}
	var op *huma.Operation
	switch method {
	case http.MethodPost:
		op = item.Post
	case http.MethodPut:
		op = item.Put
	case http.MethodPatch:
		op = item.Patch
	}
	if op == nil {
		return
	}
	op.RequestBody = &huma.RequestBody{Required: true, Description: description,
		Content: map[string]*huma.MediaType{"application/json": {Schema: b.schema}}}
}

// decode fills v from a body sent with contentType. A body that cannot be read is huma's
// validation error: 400 when it is empty or not JSON, 415 for a content type huma does not read,
// 422 when it does not match the schema.
func (b *jsonBody[T]) decode(contentType string, raw []byte, v *T) error {
	if plainJSON(contentType) && strictJSON(raw, v) == nil && b.complete(v) {
		return nil
	}
	var zero T
	*v = zero
	return b.slow(contentType, raw, v)
}

// slow reads a body as huma does: parsed into any, validated against the schema, then parsed into
// v.
func (b *jsonBody[T]) slow(contentType string, raw []byte, v *T) error {
	if len(raw) == 0 {
		return huma.NewError(http.StatusBadRequest, "request body is required")
	}
	if contentType == "" {
		contentType = "application/json"
	}
	var parsed any
	if err := b.api.Unmarshal(contentType, raw, &parsed); err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, huma.ErrUnknownContentType) {
			status = http.StatusUnsupportedMediaType
		}
		return huma.NewError(status, "validation failed", &huma.ErrorDetail{Location: "body", Message: err.Error()})
	}
	res := &huma.ValidateResult{}
	pb := huma.NewPathBuffer(make([]byte, 0, 128), 0)
	pb.Push("body")
	huma.Validate(b.api.OpenAPI().Components.Schemas, b.schema, pb, huma.ModeWriteToServer, parsed, res)
	if len(res.Errors) > 0 {
		return huma.NewError(http.StatusUnprocessableEntity, "validation failed", res.Errors...)
	}
	if err := b.api.Unmarshal(contentType, raw, v); err != nil {
		return huma.NewError(http.StatusUnprocessableEntity, "validation failed", &huma.ErrorDetail{Location: "body", Message: err.Error()})
	}
	return nil
}

// strictJSON is the strict pass: json/v2's defaults (names match case-sensitively; duplicate
// names and invalid UTF-8 are errors) and unknown members refused.
func strictJSON(raw []byte, v any) error {
	return jsonv2.Unmarshal(raw, v, jsonv2.RejectUnknownMembers(true))
}

// plainJSON reports whether a request's content type is JSON as the strict pass reads it: absent
// (huma takes JSON then), or application/json with parameters at most.
func plainJSON(contentType string) bool {
	if contentType == "" || contentType == "application/json" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}
