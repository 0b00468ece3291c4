package config_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/config"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(config.Schema()))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("config.json", doc))
	sch, err := c.Compile("config.json")
	require.NoError(t, err)
	return sch
}

func validateJSON(t *testing.T, sch *jsonschema.Schema, raw string) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(raw))
	require.NoError(t, err)
	return sch.Validate(inst)
}

func TestSchemaAcceptsDefaults(t *testing.T) {
	t.Parallel()
	raw, err := json.Marshal(config.Default())
	require.NoError(t, err)
	require.NoError(t, validateJSON(t, compileSchema(t), string(raw)))
}

func TestSchemaAcceptsAndRejects(t *testing.T) {
	t.Parallel()
	sch := compileSchema(t)
	for _, ok := range []string{
		`{}`,
		`{"server":{"addr":":8080","base_url":"https://x.example/p","read_timeout":"1m30s"}}`,
		`{"server":{"addr":"[::1]:8080","shutdown_timeout":"1.5h"},"auth":{"token_leeway":"0"}}`,
		`{"database":{"url":"postgresql://db/perk","read_url":"postgres://r/perk"}}`,
		`{"bus":{"url":"nats://a:4222, nats://b:4222","prefix":"t_1-x"}}`,
		`{"redis":{"url":"rediss://cache:6380/0","cluster_addrs":[]}}`,
		`{"idempotency":{"storage":"sql","default_policy":"duplicate","ttl":"90m"}}`,
		`{"outbox":{"poll_interval":"500us","batch_size":10000}}`,
	} {
		require.NoError(t, validateJSON(t, sch, ok), ok)
	}
	for _, bad := range []string{
		`{"server":{"adr":":8080"}}`,
		`{"sever":{}}`,
		`{"server":{"addr":"localhost"}}`,
		`{"server":{"base_url":"ftp://x"}}`,
		`{"server":{"read_timeout":"30"}}`,
		`{"server":{"read_timeout":30}}`,
		`{"server":{"max_body_bytes":"1MiB"}}`,
		`{"database":{"url":"mysql://db"}}`,
		`{"database":{"sqlite":{"read_conns":0}}}`,
		`{"bus":{"url":"tls://a:4222"}}`,
		`{"bus":{"prefix":"a.b"}}`,
		`{"redis":{"cluster_addrs":"a:1"}}`,
		`{"redis":{"cluster_addrs":["a"]}}`,
		`{"redis":{"key_prefix":"{p}"}}`,
		`{"idempotency":{"storage":"memory"}}`,
		`{"outbox":{"batch_size":0}}`,
		`{"outbox":{"batch_size":10001}}`,
		`{"log":{"level":"trace"}}`,
		`{"log":{"format":"xml"}}`,
		`{"metrics":{"enabled":"yes"}}`,
		`{"demo":{"enabled":true,"seed":1}}`,
		`{"data_dir":""}`,
	} {
		require.Error(t, validateJSON(t, sch, bad), bad)
	}
}

// TestSchemaMatchesStruct walks the Go struct and the schema and requires
// the same keys with matching types, additionalProperties false on every
// object, and schema defaults equal to Default().
func TestSchemaMatchesStruct(t *testing.T) {
	t.Parallel()
	var schema map[string]any
	require.NoError(t, json.Unmarshal(config.Schema(), &schema))
	defs := schema["$defs"].(map[string]any)

	fromSchema := map[string]string{}
	defaults := map[string]any{}
	walkSchema(t, schema, "", defs, fromSchema, defaults)

	fromStruct := map[string]string{}
	walkStruct(reflect.TypeFor[config.Config](), "", fromStruct)
	require.Equal(t, fromStruct, fromSchema)

	raw, err := json.Marshal(config.Default())
	require.NoError(t, err)
	var def map[string]any
	require.NoError(t, json.Unmarshal(raw, &def))
	for path, want := range defaults {
		require.Equal(t, want, lookup(def, path), "default of %s", path)
	}
	for path, typ := range fromStruct {
		if typ != "object" {
			require.Contains(t, defaults, path, "schema has no default for %s", path)
		}
	}
}

func walkSchema(t *testing.T, s map[string]any, path string, defs map[string]any, types map[string]string, defaults map[string]any) {
	t.Helper()
	if d, ok := s["default"]; ok {
		defaults[path] = d
	}
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/$defs/")
		require.Contains(t, defs, name, ref)
		types[path] = name
		return
	}
	typ, _ := s["type"].(string)
	require.NotEmpty(t, typ, "schema for %q has no type", path)
	if path != "" {
		types[path] = typ
	}
	if typ != "object" {
		return
	}
	require.Equal(t, false, s["additionalProperties"], "%q allows additional properties", path)
	for k, sub := range s["properties"].(map[string]any) {
		walkSchema(t, sub.(map[string]any), join(path, k), defs, types, defaults)
	}
}

func walkStruct(typ reflect.Type, path string, types map[string]string) {
	for i := range typ.NumField() {
		f := typ.Field(i)
		yamlKey, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		jsonKey, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if yamlKey != jsonKey {
			panic("yaml and json keys differ for " + f.Name)
		}
		p := join(path, yamlKey)
		switch {
		case f.Type == reflect.TypeFor[config.Duration]():
			types[p] = "duration"
		case f.Type.Kind() == reflect.Struct:
			types[p] = "object"
			walkStruct(f.Type, p, types)
		case f.Type.Kind() == reflect.Slice:
			types[p] = "array"
		case f.Type.Kind() == reflect.Bool:
			types[p] = "boolean"
		case f.Type.Kind() == reflect.String:
			types[p] = "string"
		default:
			types[p] = "integer"
		}
	}
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func lookup(m map[string]any, path string) any {
	var cur any = m
	for part := range strings.SplitSeq(path, ".") {
		cur = cur.(map[string]any)[part]
	}
	return cur
}
