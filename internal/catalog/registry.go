package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Stage tells a validator how much to demand of a spec.
type Stage string

// The validation stages.
const (
	// StageDraft: the spec is being saved as a draft. Check what is there (types, shapes, ranges)
	// but tolerate missing required fields and unresolved references.
	StageDraft Stage = "draft"
	// StagePublish: the spec is about to be served (publish or rollback). Check everything,
	// references included.
	StagePublish Stage = "publish"
)

// Lookup lets a validator check references to other published resources.
type Lookup interface {
	// Published returns the live version of the resource kind/key visible to the tenant being
	// validated: the tenant's own, else the platform's. Archived and never-published resources are
	// not found.
	Published(ctx context.Context, kind, key string) (Published, bool, error)
}

// ValidateInput is what a validator is given.
type ValidateInput struct {
	TenantID string
	Kind     string
	Key      string
	// Spec is a compact JSON object.
	Spec  json.RawMessage
	Stage Stage
	// Lookup resolves references to other published resources.
	Lookup Lookup
}

// Draft reports whether the spec is being saved as a draft (not published).
func (v ValidateInput) Draft() bool { return v.Stage == StageDraft }

// Kind is a type of config resource that a module registers.
type Kind struct {
	// Name is a slug, e.g. "task" or "coupon_template".
	Name string
	// Validate checks a spec and returns it normalised (nil means "unchanged"). A bad spec gets a
	// problem Invalid error with one field per problem, paths like "spec.rewards[0].amount".
	Validate func(ctx context.Context, v ValidateInput) (json.RawMessage, error)
	// Index, when set, builds the kind's index over one tenant's published items (sorted by key).
	// The Snapshot rebuilds it only for the (tenant, kind) pairs that changed and serves it through
	// Snapshot.Index. The result must not be modified after it is returned.
	Index func(items []Published) any
}

// Registry holds the kinds a node knows. It is safe for concurrent use; kinds are registered at
// start-up by the composition root.
type Registry struct {
	mu    sync.RWMutex
	kinds map[string]Kind
}

// NewRegistry returns a registry holding the built-in kinds (the kill switch).
func NewRegistry() *Registry {
	r := &Registry{kinds: map[string]Kind{}}
	r.kinds[KindSwitch] = r.switchKind()
	return r
}

// Register adds a kind. The name must be a slug and not yet taken; Validate is required.
func (r *Registry) Register(k Kind) error {
	if !keyPattern.MatchString(k.Name) {
		return fmt.Errorf("catalog: kind name %q must match %s", k.Name, keyPattern)
	}
	if k.Validate == nil {
		return errors.New("catalog: kind " + k.Name + " has no Validate")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, taken := r.kinds[k.Name]; taken {
		return fmt.Errorf("catalog: kind %q is already registered", k.Name)
	}
	r.kinds[k.Name] = k
	return nil
}

// Kind returns the registered kind of that name.
func (r *Registry) Kind(name string) (Kind, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k, ok := r.kinds[name]
	return k, ok
}

// Names lists the registered kinds, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.kinds))
	for n := range r.kinds {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
