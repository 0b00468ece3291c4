package config

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"gopkg.in/yaml.v3"
)

//go:embed schema.json
var schemaJSON []byte

// Schema returns the JSON Schema (draft 2020-12) of the configuration file.
func Schema() []byte { return bytes.Clone(schemaJSON) }

const schemaURL = "perk-config.schema.json"

var compiledSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
	return c.Compile(schemaURL)
})

var printer = message.NewPrinter(language.English)

// schemaProblems validates a YAML document against the schema. Keys with
// an empty (null) value are left out, as the decoder ignores them too.
func schemaProblems(root *yaml.Node) []Problem {
	sch, err := compiledSchema()
	if err != nil {
		return []Problem{{Message: fmt.Sprintf("schema: %v", err)}}
	}
	raw, err := json.Marshal(plain(root))
	if err != nil {
		return []Problem{{Message: fmt.Sprintf("converting to JSON: %v", err)}}
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return []Problem{{Message: fmt.Sprintf("converting to JSON: %v", err)}}
	}
	err = sch.Validate(inst)
	if err == nil {
		return nil
	}
	verr, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return []Problem{{Message: err.Error()}}
	}
	return leafErrors(verr, nil)
}

// leafErrors flattens a validation error tree into problems.
func leafErrors(e *jsonschema.ValidationError, out []Problem) []Problem {
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			out = leafErrors(c, out)
		}
		return out
	}
	path := strings.Join(e.InstanceLocation, ".")
	if ap, ok := e.ErrorKind.(*kind.AdditionalProperties); ok {
		for _, p := range ap.Properties {
			out = append(out, Problem{Path: join(path, p), Message: "unknown key"})
		}
		return out
	}
	return append(out, Problem{Path: path, Message: e.ErrorKind.LocalizedString(printer)})
}

// plain converts a YAML node to the values encoding/json understands,
// dropping null-valued keys.
func plain(n *yaml.Node) any {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				mergeInto(m, v)
				continue
			}
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				continue
			}
			m[k.Value] = plain(v)
		}
		return m
	case yaml.SequenceNode:
		l := make([]any, len(n.Content))
		for i, e := range n.Content {
			l[i] = plain(e)
		}
		return l
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return n.Value
	}
	return v
}

func mergeInto(m map[string]any, n *yaml.Node) {
	srcs := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		srcs = n.Content
	}
	for _, s := range srcs {
		if sm, ok := plain(s).(map[string]any); ok {
			for k, v := range sm {
				if _, set := m[k]; !set {
					m[k] = v
				}
			}
		}
	}
}
