package httpapi

import (
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// docOp is one operation as the docs page shows it.
type docOp struct {
	Method, Path, ID, Summary, Description string
	Params                                 []docParam
	Request                                string
	Responses                              []docResponse
}

type docParam struct{ Name, In, Type, Doc string }

type docResponse struct{ Status, Desc string }

type docTag struct {
	Name string
	Ops  []docOp
}

var docsPage = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} — reference</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1f2328;display:flex}
nav{width:260px;height:100vh;overflow:auto;position:sticky;top:0;background:#f6f8fa;padding:16px;box-sizing:border-box;font-size:13px}
nav a{display:block;color:#0969da;text-decoration:none;padding:2px 0}
main{flex:1;padding:24px 40px;max-width:960px}
.op{border:1px solid #d0d7de;border-radius:6px;margin:16px 0;padding:12px 16px}
.m{display:inline-block;min-width:56px;font-weight:700;font-family:monospace}
.GET{color:#1a7f37}.POST{color:#0969da}.PUT,.PATCH{color:#9a6700}.DELETE{color:#cf222e}
code,pre{font-family:ui-monospace,monospace;font-size:13px}pre{background:#f6f8fa;padding:8px;overflow:auto}
table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:2px 8px;text-align:left;font-size:13px}
</style></head><body>
<nav><strong>{{.Title}}</strong><br><a href="/openapi.json">openapi.json</a><a href="/openapi.yaml">openapi.yaml</a>
{{range .Tags}}<br><strong>{{.Name}}</strong>{{range .Ops}}<a href="#{{.ID}}">{{.Method}} {{.Path}}</a>{{end}}{{end}}</nav>
<main><h1>{{.Title}} {{.Version}}</h1><p>{{.Description}}</p>
<p>Authenticate with <code>Authorization: Bearer &lt;API key or user token&gt;</code>. Errors are
<code>application/problem+json</code> (RFC 9457). Writes accept <code>Idempotency-Key</code>.</p>
{{range .Tags}}<h2>{{.Name}}</h2>{{range .Ops}}
<div class="op" id="{{.ID}}"><span class="m {{.Method}}">{{.Method}}</span> <code>{{.Path}}</code>
<p><strong>{{.Summary}}</strong></p><p>{{.Description}}</p>
{{if .Params}}<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>{{range .Params}}
<tr><td><code>{{.Name}}</code></td><td>{{.In}}</td><td>{{.Type}}</td><td>{{.Doc}}</td></tr>{{end}}</table>{{end}}
{{if .Request}}<p>Request body:</p><pre>{{.Request}}</pre>{{end}}
<p>Responses: {{range .Responses}}<code>{{.Status}}</code> {{.Desc}}; {{end}}</p></div>{{end}}{{end}}
</main></body></html>`))

// docs serves a self-contained reference page built from the OpenAPI document (no CDN needed).
func (s *Server) docs(w http.ResponseWriter, _ *http.Request) {
	oapi := s.api.OpenAPI()
	byTag := map[string][]docOp{}
	for path, item := range oapi.Paths {
		for method, op := range map[string]*huma.Operation{"GET": item.Get, "POST": item.Post, "PUT": item.Put,
			"PATCH": item.Patch, "DELETE": item.Delete} {
			if op == nil {
				continue
			}
			tag := "Other"
			if len(op.Tags) > 0 {
				tag = op.Tags[0]
			}
			byTag[tag] = append(byTag[tag], describeOp(oapi, method, path, op))
		}
	}
	var tags []docTag
	for name, ops := range byTag {
		sort.Slice(ops, func(i, j int) bool { return ops[i].Path+ops[i].Method < ops[j].Path+ops[j].Method })
		tags = append(tags, docTag{Name: name, Ops: ops})
	}
	sort.Slice(tags, func(i, j int) bool { return tags[i].Name < tags[j].Name })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = docsPage.Execute(w, map[string]any{"Title": oapi.Info.Title, "Version": oapi.Info.Version,
		"Description": oapi.Info.Description, "Tags": tags})
}

func describeOp(oapi *huma.OpenAPI, method, path string, op *huma.Operation) docOp {
	d := docOp{Method: method, Path: path, ID: op.OperationID, Summary: op.Summary,
		Description: strings.TrimPrefix(op.Description, op.Summary)}
	for _, p := range op.Parameters {
		typ := ""
		if p.Schema != nil {
			typ = p.Schema.Type
		}
		d.Params = append(d.Params, docParam{Name: p.Name, In: p.In, Type: typ, Doc: p.Description})
	}
	if op.RequestBody != nil {
		for _, media := range op.RequestBody.Content {
			d.Request = schemaJSON(oapi, media.Schema)
		}
	}
	for status, resp := range op.Responses {
		d.Responses = append(d.Responses, docResponse{Status: status, Desc: resp.Description})
	}
	sort.Slice(d.Responses, func(i, j int) bool { return d.Responses[i].Status < d.Responses[j].Status })
	return d
}

// schemaJSON renders a schema, resolving a top-level $ref, as indented JSON.
func schemaJSON(oapi *huma.OpenAPI, schema *huma.Schema) string {
	if schema == nil {
		return ""
	}
	if schema.Ref != "" {
		schema = oapi.Components.Schemas.SchemaFromRef(schema.Ref)
	}
	b, err := json.MarshalIndent(schema, "", "  ")
	if err != nil {
		return ""
	}
	return string(b)
}
