package catalog

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/perkhq/perk/internal/platform/problem"
)

// KindSwitch is the built-in kind of kill switches.
const KindSwitch = "switch"

// maxReason bounds a switch's reason.
const maxReason = 500

// SwitchSpec is the spec of a kill switch. Target is "module:<name>" or "<kind>:<key>"; when Off
// is true the target is switched off for the switch's tenant, or for every tenant when the switch
// belongs to the Platform tenant.
type SwitchSpec struct {
	Target string `json:"target"`
	Off    bool   `json:"off"`
	Reason string `json:"reason,omitempty"`
}

// switchIndex is the set of targets switched off in one tenant.
type switchIndex map[string]bool

func (r *Registry) switchKind() Kind {
	return Kind{Name: KindSwitch, Validate: r.validateSwitch, Index: indexSwitches}
}

func (r *Registry) validateSwitch(_ context.Context, in ValidateInput) (json.RawMessage, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(in.Spec, &raw); err != nil {
		return nil, problem.Invalid("switch spec is not a JSON object").WithField("spec", err.Error())
	}
	var (
		fs   problem.Fields
		spec SwitchSpec
	)
	for name := range raw {
		if name != "target" && name != "off" && name != "reason" {
			fs.Add("spec."+name, "unknown field")
		}
	}
	if decodeField(&fs, raw, "target", &spec.Target, "a string", !in.Draft()) {
		r.checkTarget(&fs, spec.Target)
	}
	decodeField(&fs, raw, "off", &spec.Off, "a boolean", !in.Draft())
	if decodeField(&fs, raw, "reason", &spec.Reason, "a string", false) && len(spec.Reason) > maxReason {
		fs.Add("spec.reason", "must be at most %d bytes", maxReason)
	}
	if err := fs.Err("invalid kill switch"); err != nil {
		return nil, err
	}
	if in.Draft() {
		return in.Spec, nil
	}
	return json.Marshal(spec)
}

// decodeField decodes raw[name] into dst, recording a problem when it is missing (and required) or
// of the wrong type. It reports whether dst was set.
func decodeField(fs *problem.Fields, raw map[string]json.RawMessage, name string, dst any, what string, required bool) bool {
	v, ok := raw[name]
	if !ok || string(v) == "null" {
		if required {
			fs.Add("spec."+name, "is required")
		}
		return false
	}
	if err := json.Unmarshal(v, dst); err != nil {
		fs.Add("spec."+name, "must be %s", what)
		return false
	}
	return true
}

func (r *Registry) checkTarget(fs *problem.Fields, target string) {
	scope, name, ok := strings.Cut(target, ":")
	switch {
	case !ok || !keyPattern.MatchString(name):
		fs.Add("spec.target", `must be "module:<name>" or "<kind>:<key>" with a slug name`)
	case scope == "module":
	case scope == KindSwitch:
		fs.Add("spec.target", "a switch cannot target another switch")
	default:
		if _, known := r.Kind(scope); !known {
			fs.Add("spec.target", "unknown kind %q", scope)
		}
	}
}

func indexSwitches(items []Published) any {
	idx := switchIndex{}
	for _, it := range items {
		var s SwitchSpec
		if json.Unmarshal(it.Spec, &s) == nil && s.Off {
			idx[s.Target] = true
		}
	}
	return idx
}
