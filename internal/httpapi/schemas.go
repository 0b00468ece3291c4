package httpapi

import (
	"reflect"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

const modulePrefix = "github.com/perkhq/perk/internal/"

// schemaName names OpenAPI schemas after their module as well as their type ("RewardPage",
// "ActivityPage"), so two modules' types of the same name never collide in the document. The HTTP
// layer's own types and anonymous bodies keep huma's names.
func schemaName(t reflect.Type, hint string) string {
	name := huma.DefaultSchemaNamer(t, hint)
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	module, ok := strings.CutPrefix(t.PkgPath(), modulePrefix)
	if !ok || t.Name() == "" {
		return name
	}
	if i := strings.LastIndex(module, "/"); i >= 0 {
		module = module[i+1:]
	}
	if module == "httpapi" {
		return name
	}
	prefix := strings.ToUpper(module[:1]) + module[1:]
	if strings.HasPrefix(name, prefix) {
		return name
	}
	return prefix + name
}
