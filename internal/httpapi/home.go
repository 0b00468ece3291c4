package httpapi

import (
	"html/template"
	"net/http"
)

var homePage = template.Must(template.New("home").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>perk</title>
<style>body{font:16px/1.6 system-ui,sans-serif;max-width:720px;margin:48px auto;padding:0 16px;color:#1f2328}
a{color:#0969da}code{background:#f6f8fa;padding:1px 4px}</style></head><body>
<h1>perk {{.Version}}</h1>
<p>User-growth and incentive platform: task centers, campaigns, coupons, points, levels and memberships.</p>
<ul>
<li><a href="/docs">API reference</a> (<a href="/openapi.json">openapi.json</a>)</li>
<li><a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a> · <a href="/metrics">/metrics</a></li>
</ul>
<p>The web console is not part of this build yet; everything it will do is available through the API
and the <code>perk</code> command. The demo merchant's credentials are in <code>&lt;data-dir&gt;/demo.json</code>.</p>
</body></html>`))

// home is the landing page at "/".
func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = homePage.Execute(w, map[string]string{"Version": s.deps.Version})
}
