package config

import (
	"reflect"
	"slices"
	"strings"
)

// leaf is a configurable value in Config: anything that is not a section.
type leaf struct {
	path  string // dotted yaml path, e.g. "database.sqlite.busy_timeout"
	env   string // e.g. "PERK_DATABASE_SQLITE_BUSY_TIMEOUT"
	index []int  // reflect field index from Config
	typ   reflect.Type
}

var (
	durationType = reflect.TypeFor[Duration]()
	leaves       = collectLeaves(reflect.TypeFor[Config](), "", nil)
)

// EnvPrefix starts every environment variable's name.
const EnvPrefix = "PERK_"

// FileSuffix, added to a variable's name, names a variable that holds the
// path of a file with the value.
const FileSuffix = "_FILE"

func collectLeaves(t reflect.Type, path string, index []int) []leaf {
	var out []leaf
	for i := range t.NumField() {
		f := t.Field(i)
		p := join(path, key(f))
		idx := append(slices.Clone(index), i)
		if isSection(f.Type) {
			out = append(out, collectLeaves(f.Type, p, idx)...)
			continue
		}
		env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(p, ".", "_"))
		out = append(out, leaf{path: p, env: env, index: idx, typ: f.Type})
	}
	return out
}

// key is a field's name in YAML and JSON.
func key(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func isSection(t reflect.Type) bool { return t.Kind() == reflect.Struct }

// fieldByKey finds the field of section type t with YAML key name.
func fieldByKey(t reflect.Type, name string) (int, bool) {
	for i := range t.NumField() {
		if key(t.Field(i)) == name {
			return i, true
		}
	}
	return 0, false
}

// EnvNames lists the environment variable of every leaf field, in the
// order of Config's fields. Each also has a FileSuffix variant.
func EnvNames() []string {
	out := make([]string, len(leaves))
	for i, l := range leaves {
		out[i] = l.env
	}
	return out
}
