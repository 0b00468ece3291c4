// Package catalog is perk's config center: versioned config resources per tenant (task definitions,
// coupon templates, flows, campaigns, plans, kill switches …), each moving draft → published
// (version n) → archived, with an audit trail, a change log and an in-memory snapshot of the
// published set on every node.
//
// Modules register a Kind (a validator and, optionally, an index) on a Registry; the Service edits
// and publishes resources; every node keeps a Snapshot that readers query without blocking.
package catalog

import (
	"encoding/json"
	"regexp"
	"time"
)

// Platform is the reserved tenant id of platform-wide resources. A platform kill switch applies to
// every tenant.
const Platform = "platform"

// MaxSpecBytes bounds the size of one spec.
const MaxSpecBytes = 1 << 20

// keyPattern is what a resource key (and a kind name) looks like.
var keyPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// State is where a resource is in its lifecycle.
type State string

// The states of a resource.
const (
	// StateDraft: never published (or re-published); not served.
	StateDraft State = "draft"
	// StatePublished: its current version is served. Its draft may still be edited.
	StatePublished State = "published"
	// StateArchived: no longer served; it can be published again.
	StateArchived State = "archived"
)

func (s State) valid() bool {
	return s == StateDraft || s == StatePublished || s == StateArchived
}

// Action names what happened to a resource, in the audit trail and the change log.
type Action string

// The actions on a resource.
const (
	ActionCreate   Action = "create"
	ActionUpdate   Action = "update"
	ActionPublish  Action = "publish"
	ActionRollback Action = "rollback"
	ActionArchive  Action = "archive"
)

// Resource is one config resource of one tenant: its editable draft and where it stands.
type Resource struct {
	// ID is "cfg_<ulid>".
	ID       string `json:"id"`
	TenantID string `json:"tenant_id"`
	Kind     string `json:"kind"`
	// Key is a slug, unique per tenant and kind, fixed at creation.
	Key   string `json:"key"`
	State State  `json:"state"`
	// Draft is the editable spec.
	Draft json.RawMessage `json:"draft"`
	// DraftRevision counts edits of the draft; an update must name the revision it edits.
	DraftRevision int `json:"draft_revision"`
	// PublishedVersion is the current version (0 = never published).
	PublishedVersion int `json:"published_version"`
	// PublishedRevision is the draft revision the current version was made from; when it differs
	// from DraftRevision the draft has unpublished edits.
	PublishedRevision int       `json:"published_revision"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
	CreatedBy         string    `json:"created_by"`
	UpdatedBy         string    `json:"updated_by"`
}

// Pending reports whether the draft has edits that are not published.
func (r Resource) Pending() bool { return r.DraftRevision != r.PublishedRevision }

// Version is one published version of a resource. Versions are never changed once written.
type Version struct {
	ResourceID  string          `json:"resource_id"`
	Version     int             `json:"version"`
	Spec        json.RawMessage `json:"spec"`
	PublishedAt time.Time       `json:"published_at"`
	PublishedBy string          `json:"published_by"`
	// RolledBackFrom is the version this one re-publishes (0 for an ordinary publish).
	RolledBackFrom int `json:"rolled_back_from,omitempty"`
}

// AuditEntry records one action on a resource.
type AuditEntry struct {
	// Seq orders the trail: it increases with every entry written to the database.
	Seq        int64     `json:"seq"`
	ID         string    `json:"id"`
	TenantID   string    `json:"tenant_id"`
	ResourceID string    `json:"resource_id"`
	Kind       string    `json:"kind"`
	Key        string    `json:"key"`
	Action     Action    `json:"action"`
	Actor      string    `json:"actor"`
	At         time.Time `json:"at"`
	// Version is the published version the action produced or concerned (0 for draft edits of a
	// never-published resource).
	Version int `json:"version"`
	// Revision is the draft revision after the action.
	Revision int `json:"revision"`
	// Diff lists the changed paths between the previous and the new spec: the previous draft for
	// create/update, the previous live version for publish/rollback; empty for archive.
	Diff []DiffEntry `json:"diff"`
}

// Change is one entry of the change log: a publish, rollback or archive. It is what the Notifier
// sends to the other nodes and what Snapshot listeners receive.
type Change struct {
	// Seq is the change's position in the log (monotonic). Changes a Snapshot synthesises when a
	// full refresh repairs a difference carry the seq of that refresh.
	Seq        int64     `json:"seq"`
	TenantID   string    `json:"tenant_id"`
	Kind       string    `json:"kind"`
	ResourceID string    `json:"resource_id"`
	Key        string    `json:"key"`
	Version    int       `json:"version"`
	Action     Action    `json:"action"`
	At         time.Time `json:"at"`
}

// Published is the live version of a resource, as served by the Snapshot.
type Published struct {
	ResourceID string          `json:"resource_id"`
	TenantID   string          `json:"tenant_id"`
	Kind       string          `json:"kind"`
	Key        string          `json:"key"`
	Version    int             `json:"version"`
	Spec       json.RawMessage `json:"spec"`
	// PublishedAt is when this version was published.
	PublishedAt time.Time `json:"published_at"`
}

// Page is one page of a list, with the cursor of the next page ("" on the last page).
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next_cursor,omitempty"`
}
