package coupon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/coupon/qualify"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/rules"
)

// IssueRule is the spec of an issue_rule: when a behaviour event of EventType arrives for a user
// and Condition holds, the user gets a coupon of Template, once per event.
type IssueRule struct {
	// EventType is the behaviour event's type, e.g. "order.paid".
	EventType string `json:"event_type"`
	// Condition is an optional CEL expression over event (a map: id, type, source, time, data) and
	// user (a map: id) that must be true.
	Condition string `json:"condition,omitempty"`
	// Template is the key of a published coupon template of the same merchant.
	Template string `json:"template"`
	// Enabled turns the rule on (default true).
	Enabled *bool `json:"enabled,omitempty"`
}

// ruleEnv is the CEL environment of issue rule conditions.
var ruleEnv = rules.MustNewEnv("coupon.issue_rule",
	rules.Var{Name: "event", Type: rules.MapType},
	rules.Var{Name: "user", Type: rules.MapType})

// RegisterKinds registers the config kinds coupon_template (validated by qualify.Decode, indexed
// per tenant as a *qualify.Index of the live templates) and issue_rule (its condition type-checked,
// its template required to be published at publish time) on a catalog registry.
func RegisterKinds(reg *catalog.Registry) error {
	if err := reg.Register(catalog.Kind{Name: KindTemplate, Validate: validateTemplate, Index: indexTemplates}); err != nil {
		return err
	}
	return reg.Register(catalog.Kind{Name: KindIssueRule, Validate: validateIssueRule, Index: indexIssueRules})
}

// validateTemplate checks a coupon_template spec; a published one must also compile. The spec is
// stored as written (defaults are filled on every decode).
func validateTemplate(_ context.Context, in catalog.ValidateInput) (json.RawMessage, error) {
	if in.Draft() {
		_, err := qualify.Decode(in.Spec, true)
		return nil, err
	}
	if _, err := qualify.DecodeTemplate(in.Key, 1, in.Spec); err != nil {
		if _, ok := problem.As(err); ok {
			return nil, err
		}
		return nil, problem.Invalid("invalid coupon template").WithField("spec.condition", err.Error())
	}
	return nil, nil
}

// indexTemplates compiles a tenant's live templates into a qualify.Index. A version that no
// longer compiles is left out (issuance then reports the template as not found).
func indexTemplates(items []catalog.Published) any {
	ts := make([]*qualify.Template, 0, len(items))
	for _, p := range items {
		if t, err := qualify.DecodeTemplate(p.Key, p.Version, p.Spec); err == nil {
			ts = append(ts, t)
		}
	}
	return qualify.NewIndex(ts)
}

// validateIssueRule checks an issue_rule spec and returns it with enabled made explicit.
func validateIssueRule(ctx context.Context, in catalog.ValidateInput) (json.RawMessage, error) {
	var fs problem.Fields
	var r IssueRule
	if !decodeStrict(&fs, "spec", in.Spec, &r) {
		return nil, fs.Err("invalid issue rule")
	}
	switch {
	case r.EventType == "" && !in.Draft():
		fs.Add("spec.event_type", "is required")
	case r.EventType != "" && !bus.ValidBehaviourType(r.EventType):
		fs.Add("spec.event_type", "must be a dotted lower-case event type of at most %d characters, e.g. order.paid",
			bus.MaxBehaviourTypeLen)
	}
	if r.Condition != "" {
		if _, err := ruleEnv.Compile(r.Condition, rules.BoolType); err != nil {
			fs.Add("spec.condition", "%s", err.Error())
		}
	}
	switch {
	case r.Template == "" && !in.Draft():
		fs.Add("spec.template", "is required")
	case r.Template != "" && !keyPattern.MatchString(r.Template):
		fs.Add("spec.template", "must be a coupon template key (a slug)")
	case r.Template != "" && !in.Draft() && in.Lookup != nil:
		p, ok, err := in.Lookup.Published(ctx, KindTemplate, r.Template)
		if err != nil {
			return nil, fmt.Errorf("coupon: look up template %s: %w", r.Template, err)
		}
		if !ok || p.TenantID != in.TenantID {
			fs.Add("spec.template", "no published coupon template of this merchant has the key %q", r.Template)
		}
	}
	if err := fs.Err("invalid issue rule"); err != nil {
		return nil, err
	}
	if r.Enabled == nil {
		on := true
		r.Enabled = &on
	}
	return mustJSON(r), nil
}

// liveRule is an enabled issue rule as the index holds it.
type liveRule struct {
	Key        string
	ResourceID string
	Version    int
	Rule       IssueRule
}

// ruleIndex is a tenant's enabled issue rules by event type.
type ruleIndex map[string][]liveRule

func indexIssueRules(items []catalog.Published) any {
	idx := ruleIndex{}
	for _, p := range items {
		var r IssueRule
		if err := json.Unmarshal(p.Spec, &r); err != nil || (r.Enabled != nil && !*r.Enabled) {
			continue
		}
		idx[r.EventType] = append(idx[r.EventType], liveRule{Key: p.Key, ResourceID: p.ResourceID, Version: p.Version, Rule: r})
	}
	return idx
}

// decodeStrict decodes one JSON object into dst, refusing unknown fields; problems go to fs under
// path.
func decodeStrict(fs *problem.Fields, path string, raw json.RawMessage, dst any) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		fs.Add(path, "%s", jsonProblem(err))
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		fs.Add(path, "must hold one JSON object")
		return false
	}
	return true
}

// jsonProblem words a decoding error for a client, without Go type names.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("field %q has the wrong type (want %s)", typeErr.Field, typeErr.Type.Kind())
	}
	return err.Error()
}

// mustJSON marshals values that cannot fail to marshal.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("coupon: marshal %T: %v", v, err))
	}
	return b
}
