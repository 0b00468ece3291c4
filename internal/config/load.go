package config

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load builds the configuration: Default, then the YAML file at path (if
// path is not empty), then environment overrides read through lookupEnv
// (os.LookupEnv when nil), then Validate. It returns an *Error listing every
// problem found, or a plain error when the file cannot be read.
//
// The file is strict: an unknown key is an error. A key with an empty
// (null) value keeps its default. Every leaf has a variable PERK_<PATH>
// (e.g. PERK_DATABASE_URL) and PERK_<PATH>_FILE naming a file that holds
// the value, for secrets; setting both is an error.
func Load(path string, lookupEnv func(string) (string, bool)) (Config, error) {
	l, err := load(path, lookupEnv)
	if err != nil {
		return Config{}, err
	}
	if err := asError(append(l.problems, l.cfg.problems()...)); err != nil {
		return Config{}, err
	}
	return l.cfg, nil
}

// loaded is what load found before Validate.
type loaded struct {
	cfg      Config
	root     *yaml.Node // the file's YAML document; nil without a file
	problems []Problem  // from the file and the environment
}

// load reads the file and the environment into Default.
func load(path string, lookupEnv func(string) (string, bool)) (loaded, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	l := loaded{cfg: Default()}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return loaded{}, fmt.Errorf("config: %w", err)
		}
		l.root, l.problems = parseYAML(data)
		if l.root != nil {
			l.problems = decode(l.root, &l.cfg)
		}
	}
	l.problems = append(l.problems, applyEnv(&l.cfg, lookupEnv)...)
	return l, nil
}

// parseYAML returns the document's root node, nil for an empty document.
func parseYAML(data []byte) (*yaml.Node, []Problem) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, []Problem{{Message: err.Error()}}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// decode sets cfg from a YAML document, field by field, so that every
// problem carries its path.
func decode(root *yaml.Node, cfg *Config) []Problem {
	var d decoder
	d.node(root, reflect.ValueOf(cfg).Elem(), "")
	return d.problems
}

type decoder struct {
	problems []Problem
}

func (d *decoder) add(path, format string, args ...any) {
	d.problems = append(d.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (d *decoder) node(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value keeps the default
	}
	if !isSection(v.Type()) {
		if err := decodeLeaf(n, v); err != nil {
			d.add(path, "%v", err)
		}
		return
	}
	if n.Kind != yaml.MappingNode {
		d.add(path, "want a mapping of keys to values, got %s", describe(n))
		return
	}
	d.mapping(n, v, path)
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" {
			d.merge(val, v, path)
			continue
		}
		p := join(path, k.Value)
		if seen[k.Value] {
			d.add(p, "duplicate key")
			continue
		}
		seen[k.Value] = true
		f, ok := fieldByKey(v.Type(), k.Value)
		if !ok || k.Kind != yaml.ScalarNode {
			d.add(p, "unknown key")
			continue
		}
		d.node(val, v.Field(f), p)
	}
}

// merge applies a YAML merge key ("<<: *defaults").
func (d *decoder) merge(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.SequenceNode {
		for _, m := range n.Content {
			d.node(m, v, path)
		}
		return
	}
	d.node(n, v, path)
}

// decodeLeaf sets v from a YAML node.
func decodeLeaf(n *yaml.Node, v reflect.Value) error {
	want := describeType(v.Type())
	switch {
	case v.Type() == durationType:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			return fmt.Errorf("want %s, got %s", want, describe(n))
		}
		return v.Addr().Interface().(*Duration).UnmarshalText([]byte(n.Value))
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("want %s, got %s", want, describe(n))
		}
		list := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			if err := decodeLeaf(e, list.Index(i)); err != nil {
				return fmt.Errorf("item %d: %w", i+1, err)
			}
		}
		v.Set(list)
		return nil
	}
	tag := map[reflect.Kind]string{reflect.String: "!!str", reflect.Bool: "!!bool"}[v.Kind()]
	if v.CanInt() {
		tag = "!!int"
	}
	if n.Kind != yaml.ScalarNode || n.Tag != tag {
		return fmt.Errorf("want %s, got %s", want, describe(n))
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		return fmt.Errorf("want %s, got %s", want, describe(n))
	}
	return nil
}

// describe names what a YAML node holds, for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	kind := map[string]string{"!!int": "integer", "!!float": "number", "!!bool": "boolean", "!!str": "string"}[n.Tag]
	if kind == "" {
		kind = "value"
	}
	return fmt.Sprintf("%s %q", kind, n.Value)
}

// describeType names what a field wants, for messages.
func describeType(t reflect.Type) string {
	switch {
	case t == durationType:
		return `a duration such as "30s"`
	case t.Kind() == reflect.Slice:
		return "a list of strings"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.String:
		return "a string"
	}
	return "an integer"
}

// applyEnv applies the environment overrides to cfg.
func applyEnv(cfg *Config, lookupEnv func(string) (string, bool)) []Problem {
	var problems []Problem
	root := reflect.ValueOf(cfg).Elem()
	for _, l := range leaves {
		val, ok, err := envValue(l.env, lookupEnv)
		if err == nil && ok {
			err = setFromString(root.FieldByIndex(l.index), val)
			if err != nil {
				err = fmt.Errorf("%s: %w", l.env, err)
			}
		}
		if err != nil {
			problems = append(problems, Problem{Path: l.path, Message: err.Error()})
		}
	}
	return problems
}

// envValue reads the variable name, or the file its _FILE variant names.
func envValue(name string, lookupEnv func(string) (string, bool)) (string, bool, error) {
	val, ok := lookupEnv(name)
	file, fromFile := lookupEnv(name + FileSuffix)
	switch {
	case ok && fromFile:
		return "", false, fmt.Errorf("both %s and %s%s are set; set one", name, name, FileSuffix)
	case !fromFile:
		return val, ok, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", false, fmt.Errorf("%s%s: %w", name, FileSuffix, err)
	}
	s := strings.TrimSuffix(string(data), "\n")
	return strings.TrimSuffix(s, "\r"), true, nil
}

// setFromString sets a leaf from an environment value. Lists are
// comma-separated; an empty value sets a string or list to empty.
func setFromString(v reflect.Value, s string) error {
	switch {
	case v.Type() == durationType:
		return v.Addr().Interface().(*Duration).UnmarshalText([]byte(s))
	case v.Kind() == reflect.Slice:
		v.Set(reflect.ValueOf(splitList(s)).Convert(v.Type()))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b)
	case v.CanInt():
		i, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want an integer, got %q", s)
		}
		v.SetInt(i)
	default:
		return fmt.Errorf("unsupported field type %s", v.Type())
	}
	return nil
}

func splitList(s string) []string {
	out := []string{}
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
