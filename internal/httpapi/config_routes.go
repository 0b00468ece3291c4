package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/tenant"
)

// ConfigPath names a config resource by kind and key.
type ConfigPath struct {
	Kind string `path:"kind" doc:"Resource kind, e.g. task, coupon_template, flow, switch"`
	Key  string `path:"key" doc:"Resource key (slug), unique per merchant and kind"`
}

type listConfigIn struct {
	ListQuery
	Kind  string `query:"kind" doc:"Only this kind"`
	State string `query:"state" enum:"draft,published,archived," doc:"Only this state"`
}

type createConfigIn struct {
	Kind string `path:"kind" doc:"Resource kind"`
	Body struct {
		Key  string          `json:"key" doc:"Slug: a-z 0-9 _ -, at most 64"`
		Spec json.RawMessage `json:"spec" doc:"The kind's spec; see the kind's docs"`
	}
}

type updateDraftIn struct {
	ConfigPath
	Body struct {
		Revision int             `json:"revision" minimum:"1" doc:"The draft revision being edited (optimistic concurrency)"`
		Spec     json.RawMessage `json:"spec"`
	}
}

type publishIn struct {
	ConfigPath
	Body *struct {
		Revision int `json:"revision,omitempty" doc:"When set, must be the current draft revision"`
	}
}

type rollbackIn struct {
	ConfigPath
	Body struct {
		Version int `json:"version" minimum:"1" doc:"The version to publish again"`
	}
}

type versionIn struct {
	ConfigPath
	Version int `path:"version" minimum:"1"`
}

type versionsIn struct {
	ConfigPath
	ListQuery
}

type auditIn struct {
	ListQuery
	ResourceID string    `query:"resource_id"`
	Kind       string    `query:"kind"`
	Actor      string    `query:"actor"`
	From       time.Time `query:"from" doc:"RFC 3339; inclusive"`
	To         time.Time `query:"to" doc:"RFC 3339; exclusive"`
}

type resourceOut struct {
	Status int
	Body   catalog.Resource
}

type resourcePageOut struct {
	Body catalog.Page[catalog.Resource]
}

type versionOut struct{ Body catalog.Version }

type versionPageOut struct{ Body catalog.Page[catalog.Version] }

type auditPageOut struct {
	Body catalog.Page[catalog.AuditEntry]
}

// resourceID resolves kind/key to the resource id within the caller's tenant.
func (s *Server) resourceID(ctx context.Context, p tenant.Principal, path ConfigPath) (string, error) {
	r, err := s.deps.Catalog.Get(ctx, catalog.GetParams{TenantID: p.TenantID, Kind: path.Kind, Key: path.Key})
	return r.ID, err
}

func (s *Server) registerConfigRoutes() {
	if s.deps.Catalog == nil {
		return
	}
	tags := []string{"Config center"}
	register(s, Op{Operation: huma.Operation{OperationID: "list-config", Method: http.MethodGet, Path: "/v1/config",
		Summary: "List config resources", Tags: tags}, Access: AccessPlatformOrRead},
		func(ctx context.Context, p tenant.Principal, in *listConfigIn) (*resourcePageOut, error) {
			page, err := s.deps.Catalog.List(ctx, catalog.ListParams{TenantID: p.TenantID, Kind: in.Kind,
				State: catalog.State(in.State), Cursor: in.Cursor, Limit: in.Limit})
			return &resourcePageOut{Body: page}, locate(err, "key", "spec", "revision", "version")
		})
	register(s, Op{Operation: huma.Operation{OperationID: "create-config", Method: http.MethodPost,
		Path: "/v1/config/{kind}", Summary: "Create a config resource as a draft", DefaultStatus: http.StatusCreated,
		Tags: tags}, Access: AccessPlatformOrWrite},
		func(ctx context.Context, p tenant.Principal, in *createConfigIn) (*resourceOut, error) {
			r, err := s.deps.Catalog.Create(ctx, catalog.CreateParams{TenantID: p.TenantID, Kind: in.Kind,
				Key: in.Body.Key, Spec: in.Body.Spec, Actor: actor(p)})
			return &resourceOut{Status: http.StatusCreated, Body: r}, locate(err, "key", "spec", "revision", "version")
		})
	register(s, Op{Operation: huma.Operation{OperationID: "get-config", Method: http.MethodGet,
		Path: "/v1/config/{kind}/{key}", Summary: "Get a config resource with its draft", Tags: tags},
		Access: AccessPlatformOrRead},
		func(ctx context.Context, p tenant.Principal, in *ConfigPath) (*resourceOut, error) {
			r, err := s.deps.Catalog.Get(ctx, catalog.GetParams{TenantID: p.TenantID, Kind: in.Kind, Key: in.Key})
			return &resourceOut{Status: http.StatusOK, Body: r}, locate(err, "key", "spec", "revision", "version")
		})
	register(s, Op{Operation: huma.Operation{OperationID: "update-config-draft", Method: http.MethodPut,
		Path: "/v1/config/{kind}/{key}/draft", Summary: "Replace the draft (name the revision you edit)", Tags: tags},
		Access: AccessPlatformOrWrite},
		func(ctx context.Context, p tenant.Principal, in *updateDraftIn) (*resourceOut, error) {
			id, err := s.resourceID(ctx, p, in.ConfigPath)
			if err != nil {
				return nil, err
			}
			r, err := s.deps.Catalog.UpdateDraft(ctx, catalog.UpdateDraftParams{TenantID: p.TenantID, ID: id,
				Revision: in.Body.Revision, Spec: in.Body.Spec, Actor: actor(p)})
			return &resourceOut{Status: http.StatusOK, Body: r}, locate(err, "key", "spec", "revision", "version")
		})
	s.registerConfigLifecycle(tags)
}

func (s *Server) registerConfigLifecycle(tags []string) {
	register(s, Op{Operation: huma.Operation{OperationID: "publish-config", Method: http.MethodPost,
		Path: "/v1/config/{kind}/{key}/publish", Summary: "Validate the draft and publish it as the next version",
		Tags: tags}, Access: AccessPlatformOrWrite},
		func(ctx context.Context, p tenant.Principal, in *publishIn) (*versionOut, error) {
			id, err := s.resourceID(ctx, p, in.ConfigPath)
			if err != nil {
				return nil, err
			}
			params := catalog.PublishParams{TenantID: p.TenantID, ID: id, Actor: actor(p)}
			if in.Body != nil {
				params.Revision = in.Body.Revision
			}
			v, err := s.deps.Catalog.Publish(ctx, params)
			return &versionOut{Body: v}, locate(err, "key", "spec", "revision", "version")
		})
	register(s, Op{Operation: huma.Operation{OperationID: "rollback-config", Method: http.MethodPost,
		Path: "/v1/config/{kind}/{key}/rollback", Summary: "Publish an old version again, as a new version",
		Tags: tags}, Access: AccessPlatformOrWrite},
		func(ctx context.Context, p tenant.Principal, in *rollbackIn) (*versionOut, error) {
			id, err := s.resourceID(ctx, p, in.ConfigPath)
			if err != nil {
				return nil, err
			}
			v, err := s.deps.Catalog.Rollback(ctx, catalog.RollbackParams{TenantID: p.TenantID, ID: id,
				To: in.Body.Version, Actor: actor(p)})
			return &versionOut{Body: v}, locate(err, "key", "spec", "revision", "version")
		})
	register(s, Op{Operation: huma.Operation{OperationID: "archive-config", Method: http.MethodPost,
		Path: "/v1/config/{kind}/{key}/archive", Summary: "Stop serving a resource (its versions stay)", Tags: tags},
		Access: AccessPlatformOrWrite},
		func(ctx context.Context, p tenant.Principal, in *ConfigPath) (*resourceOut, error) {
			id, err := s.resourceID(ctx, p, *in)
			if err != nil {
				return nil, err
			}
			r, err := s.deps.Catalog.Archive(ctx, catalog.ArchiveParams{TenantID: p.TenantID, ID: id, Actor: actor(p)})
			return &resourceOut{Status: http.StatusOK, Body: r}, locate(err, "key", "spec", "revision", "version")
		})
	s.registerConfigHistory(tags)
}

func (s *Server) registerConfigHistory(tags []string) {
	register(s, Op{Operation: huma.Operation{OperationID: "list-config-versions", Method: http.MethodGet,
		Path: "/v1/config/{kind}/{key}/versions", Summary: "List published versions, newest first", Tags: tags},
		Access: AccessPlatformOrRead},
		func(ctx context.Context, p tenant.Principal, in *versionsIn) (*versionPageOut, error) {
			id, err := s.resourceID(ctx, p, in.ConfigPath)
			if err != nil {
				return nil, err
			}
			page, err := s.deps.Catalog.Versions(ctx, catalog.VersionsParams{TenantID: p.TenantID, ID: id,
				Cursor: in.Cursor, Limit: in.Limit})
			return &versionPageOut{Body: page}, locate(err, "key", "spec", "revision", "version")
		})
	register(s, Op{Operation: huma.Operation{OperationID: "get-config-version", Method: http.MethodGet,
		Path: "/v1/config/{kind}/{key}/versions/{version}", Summary: "Get one published version", Tags: tags},
		Access: AccessPlatformOrRead},
		func(ctx context.Context, p tenant.Principal, in *versionIn) (*versionOut, error) {
			id, err := s.resourceID(ctx, p, in.ConfigPath)
			if err != nil {
				return nil, err
			}
			v, err := s.deps.Catalog.Version(ctx, catalog.VersionParams{TenantID: p.TenantID, ID: id, Version: in.Version})
			return &versionOut{Body: v}, locate(err, "key", "spec", "revision", "version")
		})
	register(s, Op{Operation: huma.Operation{OperationID: "list-config-audit", Method: http.MethodGet,
		Path: "/v1/config-audit", Summary: "The audit trail: who changed what, when, with a diff", Tags: tags},
		Access: AccessPlatformOrRead},
		func(ctx context.Context, p tenant.Principal, in *auditIn) (*auditPageOut, error) {
			page, err := s.deps.Catalog.Audit(ctx, catalog.AuditParams{TenantID: p.TenantID, ResourceID: in.ResourceID,
				Kind: in.Kind, Actor: in.Actor, From: in.From, To: in.To, Cursor: in.Cursor, Limit: in.Limit})
			return &auditPageOut{Body: page}, locate(err, "key", "spec", "revision", "version")
		})
}

// locate prefixes the field paths of a module's validation error with where they are in the request:
// body fields get "body.", the rest (filters, paging) "query.".
func locate(err error, bodyFields ...string) error {
	e, ok := problem.As(err)
	if !ok {
		return err
	}
	for i, f := range e.Fields {
		root := f.Path
		if cut := strings.IndexAny(root, ".["); cut >= 0 {
			root = root[:cut]
		}
		switch {
		case strings.HasPrefix(f.Path, "body.") || strings.HasPrefix(f.Path, "query.") || strings.HasPrefix(f.Path, "path."):
		case slices.Contains(bodyFields, root):
			e.Fields[i].Path = "body." + f.Path
		default:
			e.Fields[i].Path = "query." + f.Path
		}
	}
	return err
}
