package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// Notifier tells the other nodes about a committed change (the composition root wires it to the
// bus's CONFIG stream). A failure is logged, not returned: every node's periodic refresh repairs a
// lost notice.
type Notifier interface {
	Notify(ctx context.Context, c Change) error
}

// Options configures a Service. Every field is optional.
type Options struct {
	// Registry holds the kinds; nil means only the built-in ones.
	Registry *Registry
	// Clock tells the time; nil means the wall clock.
	Clock clock.Clock
	// Notifier is told about each publish, rollback and archive after it commits; nil means nobody.
	Notifier Notifier
	// Logger logs notice failures; nil means slog.Default().
	Logger *slog.Logger
}

// Service edits, publishes and reads config resources. Every method is scoped to one tenant and
// returns problem errors for anything a client should see.
type Service struct {
	db       *sqldb.DB
	reg      *Registry
	clock    clock.Clock
	notifier Notifier
	log      *slog.Logger
}

// New returns a Service on db.
func New(db *sqldb.DB, opts Options) *Service {
	s := &Service{db: db, reg: opts.Registry, clock: opts.Clock, notifier: opts.Notifier, log: opts.Logger}
	if s.reg == nil {
		s.reg = NewRegistry()
	}
	if s.clock == nil {
		s.clock = clock.Real{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// CreateParams describes a new resource.
type CreateParams struct {
	TenantID string
	Kind     string
	Key      string
	Spec     json.RawMessage
	Actor    string
}

// Create saves a new resource as a draft (revision 1). The spec is validated at the draft stage.
// A key already used by the tenant for that kind is a Conflict.
func (s *Service) Create(ctx context.Context, p CreateParams) (Resource, error) {
	var fs problem.Fields
	checkCaller(&fs, p.TenantID, p.Actor)
	kind, known := s.reg.Kind(p.Kind)
	if !known {
		fs.Add("kind", "unknown kind %q", p.Kind)
	}
	if !keyPattern.MatchString(p.Key) {
		fs.Add("key", "must be a slug matching %s", keyPattern)
	}
	spec := checkSpec(&fs, p.Spec)
	if err := fs.Err("invalid config resource"); err != nil {
		return Resource{}, err
	}
	spec, err := s.validate(ctx, kind, ValidateInput{TenantID: p.TenantID, Kind: p.Kind, Key: p.Key,
		Spec: spec, Stage: StageDraft})
	if err != nil {
		return Resource{}, err
	}
	diff, err := diffSpecs(nil, spec)
	if err != nil {
		return Resource{}, err
	}
	now := s.now()
	r := Resource{ID: ids.New("cfg", now), TenantID: p.TenantID, Kind: p.Kind, Key: p.Key,
		State: StateDraft, Draft: spec, DraftRevision: 1, CreatedAt: now, UpdatedAt: now,
		CreatedBy: p.Actor, UpdatedBy: p.Actor}
	err = s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		if err := insertResource(ctx, tx, r); err != nil {
			if errors.Is(err, sqldb.ErrUnique) {
				return problem.Conflict("a %s with key %q already exists", p.Kind, p.Key).
					WithCode("config-duplicate-key").WithField("key", "already taken")
			}
			return err
		}
		return insertAudit(ctx, tx, s.audit(r, ActionCreate, 0, diff))
	})
	if err != nil {
		return Resource{}, wrap("create", err)
	}
	return r, nil
}

// UpdateDraftParams replaces a resource's draft. Revision is the draft revision being edited.
type UpdateDraftParams struct {
	TenantID string
	ID       string
	Revision int
	Spec     json.RawMessage
	Actor    string
}

// UpdateDraft replaces the draft (validated at the draft stage) and bumps its revision. A revision
// other than the current one is a Conflict. The live version, if any, keeps being served.
func (s *Service) UpdateDraft(ctx context.Context, p UpdateDraftParams) (Resource, error) {
	var fs problem.Fields
	checkCaller(&fs, p.TenantID, p.Actor)
	spec := checkSpec(&fs, p.Spec)
	if err := fs.Err("invalid draft"); err != nil {
		return Resource{}, err
	}
	was, err := loadResource(ctx, s.db.Reader(), p.TenantID, p.ID)
	if err != nil {
		return Resource{}, err
	}
	if p.Revision != was.DraftRevision {
		return Resource{}, revisionConflict(was, p.Revision)
	}
	kind, err := s.kindOf(was)
	if err != nil {
		return Resource{}, err
	}
	spec, err = s.validate(ctx, kind, s.input(was, spec, StageDraft))
	if err != nil {
		return Resource{}, err
	}
	diff, err := diffSpecs(was.Draft, spec)
	if err != nil {
		return Resource{}, err
	}
	r := was
	r.Draft, r.DraftRevision = spec, was.DraftRevision+1
	r.UpdatedAt, r.UpdatedBy = s.now(), p.Actor
	err = s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		if err := updateResource(ctx, tx, was, r); err != nil {
			return err
		}
		return insertAudit(ctx, tx, s.audit(r, ActionUpdate, r.PublishedVersion, diff))
	})
	if err != nil {
		return Resource{}, wrap("update draft", err)
	}
	return r, nil
}

// PublishParams publishes a resource's draft. Revision, when not 0, must be the current draft
// revision (so that what was reviewed is what goes live).
type PublishParams struct {
	TenantID string
	ID       string
	Revision int
	Actor    string
}

// Publish validates the draft fully (references included) and stores it as the next version,
// which becomes live. Publishing a draft equal to the live version is a Conflict; publishing an
// archived resource serves it again.
func (s *Service) Publish(ctx context.Context, p PublishParams) (Version, error) {
	var fs problem.Fields
	checkCaller(&fs, p.TenantID, p.Actor)
	if err := fs.Err("invalid publish"); err != nil {
		return Version{}, err
	}
	was, err := loadResource(ctx, s.db.Reader(), p.TenantID, p.ID)
	if err != nil {
		return Version{}, err
	}
	if p.Revision != 0 && p.Revision != was.DraftRevision {
		return Version{}, revisionConflict(was, p.Revision)
	}
	spec, err := s.validateLive(ctx, was, was.Draft)
	if err != nil {
		return Version{}, err
	}
	diff, err := s.diffLive(ctx, was, spec)
	if err != nil {
		return Version{}, err
	}
	if was.State == StatePublished && len(diff) == 0 {
		return Version{}, problem.Conflict("the draft equals the live version %d", was.PublishedVersion).
			WithCode("config-nothing-to-publish")
	}
	r := was
	r.PublishedRevision = was.DraftRevision
	return s.commitVersion(ctx, was, r, Version{Spec: spec, PublishedBy: p.Actor}, diff)
}

// RollbackParams re-publishes an old version.
type RollbackParams struct {
	TenantID string
	ID       string
	// To is the version to re-publish.
	To    int
	Actor string
}

// Rollback writes a new version n+1 whose spec is version To's (RolledBackFrom = To), after
// validating that spec again against today's references; it becomes live and replaces the draft.
func (s *Service) Rollback(ctx context.Context, p RollbackParams) (Version, error) {
	var fs problem.Fields
	checkCaller(&fs, p.TenantID, p.Actor)
	if err := fs.Err("invalid rollback"); err != nil {
		return Version{}, err
	}
	was, err := loadResource(ctx, s.db.Reader(), p.TenantID, p.ID)
	if err != nil {
		return Version{}, err
	}
	switch {
	case p.To < 1 || p.To > was.PublishedVersion:
		return Version{}, problem.Invalid("cannot roll back to version %d", p.To).
			WithField("to", fmt.Sprintf("must be a published version (1..%d)", was.PublishedVersion))
	case p.To == was.PublishedVersion && was.State == StatePublished:
		return Version{}, problem.Invalid("version %d is already live", p.To).WithField("to", "is the live version")
	}
	old, err := loadVersion(ctx, s.db.Reader(), was.ID, p.To)
	if err != nil {
		return Version{}, err
	}
	spec, err := s.validateLive(ctx, was, old.Spec)
	if err != nil {
		if pe, ok := problem.As(err); ok && pe.Kind == problem.KindInvalid {
			return Version{}, &problem.Error{Kind: problem.KindInvalid, Code: "config-rollback-invalid",
				Detail: fmt.Sprintf("version %d no longer validates: %s", p.To, pe.Detail), Fields: pe.Fields, Cause: pe}
		}
		return Version{}, err
	}
	diff, err := s.diffLive(ctx, was, spec)
	if err != nil {
		return Version{}, err
	}
	r := was
	r.Draft, r.DraftRevision = spec, was.DraftRevision+1
	r.PublishedRevision = r.DraftRevision
	return s.commitVersion(ctx, was, r, Version{Spec: spec, PublishedBy: p.Actor, RolledBackFrom: p.To}, diff)
}

// commitVersion makes v the next version of r, live, in one transaction with its audit entry and
// change-log row, then notifies.
func (s *Service) commitVersion(ctx context.Context, was, r Resource, v Version, diff []DiffEntry) (Version, error) {
	now := s.now()
	r.State, r.PublishedVersion = StatePublished, was.PublishedVersion+1
	r.UpdatedAt, r.UpdatedBy = now, v.PublishedBy
	v.ResourceID, v.Version, v.PublishedAt = r.ID, r.PublishedVersion, now
	action := ActionPublish
	if v.RolledBackFrom != 0 {
		action = ActionRollback
	}
	var change Change
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		if err := updateResource(ctx, tx, was, r); err != nil {
			return err
		}
		if err := insertVersion(ctx, tx, r.TenantID, v); err != nil {
			return err
		}
		if err := insertAudit(ctx, tx, s.audit(r, action, v.Version, diff)); err != nil {
			return err
		}
		var err error
		change, err = insertChange(ctx, tx, s.db.Dialect(), changeOf(r, action, now))
		return err
	})
	if err != nil {
		return Version{}, wrap(string(action), err)
	}
	s.notify(ctx, change)
	return v, nil
}

// ArchiveParams archives a resource.
type ArchiveParams struct {
	TenantID string
	ID       string
	Actor    string
}

// Archive stops serving a resource. Its versions stay; publishing or rolling back serves it again.
func (s *Service) Archive(ctx context.Context, p ArchiveParams) (Resource, error) {
	var fs problem.Fields
	checkCaller(&fs, p.TenantID, p.Actor)
	if err := fs.Err("invalid archive"); err != nil {
		return Resource{}, err
	}
	was, err := loadResource(ctx, s.db.Reader(), p.TenantID, p.ID)
	if err != nil {
		return Resource{}, err
	}
	if was.State == StateArchived {
		return Resource{}, problem.Conflict("config resource %q is already archived", p.ID).
			WithCode("config-already-archived")
	}
	now := s.now()
	r := was
	r.State, r.UpdatedAt, r.UpdatedBy = StateArchived, now, p.Actor
	var change Change
	err = s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		if err := updateResource(ctx, tx, was, r); err != nil {
			return err
		}
		if err := insertAudit(ctx, tx, s.audit(r, ActionArchive, r.PublishedVersion, []DiffEntry{})); err != nil {
			return err
		}
		var err error
		change, err = insertChange(ctx, tx, s.db.Dialect(), changeOf(r, ActionArchive, now))
		return err
	})
	if err != nil {
		return Resource{}, wrap("archive", err)
	}
	s.notify(ctx, change)
	return r, nil
}

// validateLive runs the publish-stage validation of spec for resource r.
func (s *Service) validateLive(ctx context.Context, r Resource, spec json.RawMessage) (json.RawMessage, error) {
	kind, err := s.kindOf(r)
	if err != nil {
		return nil, err
	}
	return s.validate(ctx, kind, s.input(r, spec, StagePublish))
}

// diffLive compares the live spec of r (or an empty object) with spec.
func (s *Service) diffLive(ctx context.Context, r Resource, spec json.RawMessage) ([]DiffEntry, error) {
	var live json.RawMessage
	if r.PublishedVersion > 0 {
		v, err := loadVersion(ctx, s.db.Reader(), r.ID, r.PublishedVersion)
		if err != nil {
			return nil, err
		}
		live = v.Spec
	}
	return diffSpecs(live, spec)
}

func (s *Service) input(r Resource, spec json.RawMessage, stage Stage) ValidateInput {
	return ValidateInput{TenantID: r.TenantID, Kind: r.Kind, Key: r.Key, Spec: spec, Stage: stage}
}

// validate runs the kind's validator with a Lookup for the input's tenant and checks its output.
func (s *Service) validate(ctx context.Context, kind Kind, in ValidateInput) (json.RawMessage, error) {
	in.Lookup = dbLookup{db: s.db, tenant: in.TenantID}
	out, err := kind.Validate(ctx, in)
	if err != nil {
		if _, ok := problem.As(err); ok {
			return nil, err
		}
		return nil, fmt.Errorf("catalog: validate %s: %w", kind.Name, err)
	}
	if out == nil {
		return in.Spec, nil
	}
	var fs problem.Fields
	norm := checkSpec(&fs, out)
	if len(fs) > 0 {
		return nil, fmt.Errorf("catalog: validator of %s returned a bad spec: %v", kind.Name, fs[0].Message)
	}
	return norm, nil
}

func (s *Service) kindOf(r Resource) (Kind, error) {
	kind, ok := s.reg.Kind(r.Kind)
	if !ok {
		return Kind{}, problem.Invalid("kind %q is not registered on this node", r.Kind).
			WithField("kind", "unknown kind")
	}
	return kind, nil
}

func (s *Service) audit(r Resource, action Action, version int, diff []DiffEntry) AuditEntry {
	return AuditEntry{ID: ids.New("aud", r.UpdatedAt), TenantID: r.TenantID, ResourceID: r.ID, Kind: r.Kind,
		Key: r.Key, Action: action, Actor: r.UpdatedBy, At: r.UpdatedAt, Version: version,
		Revision: r.DraftRevision, Diff: diff}
}

func (s *Service) notify(ctx context.Context, c Change) {
	if s.notifier == nil {
		return
	}
	if err := s.notifier.Notify(context.WithoutCancel(ctx), c); err != nil {
		s.log.Warn("catalog: change notice failed; nodes will catch up on their next refresh",
			"seq", c.Seq, "tenant", c.TenantID, "kind", c.Kind, "key", c.Key, "err", err)
	}
}

// now is the clock's time at the stored (microsecond) precision.
func (s *Service) now() time.Time { return sqldb.FromMicros(sqldb.Micros(s.clock.Now())) }

func changeOf(r Resource, action Action, at time.Time) Change {
	return Change{TenantID: r.TenantID, Kind: r.Kind, ResourceID: r.ID, Key: r.Key,
		Version: r.PublishedVersion, Action: action, At: at}
}

func revisionConflict(r Resource, got int) error {
	return problem.Conflict("draft revision %d is not the current revision %d", got, r.DraftRevision).
		WithCode("config-revision-mismatch").With("current_revision", r.DraftRevision)
}

func checkCaller(fs *problem.Fields, tenant, actor string) {
	if tenant == "" || len(tenant) > 64 {
		fs.Add("tenant_id", "must be 1 to 64 bytes")
	}
	if actor == "" || len(actor) > 200 {
		fs.Add("actor", "must be 1 to 200 bytes")
	}
}

// checkSpec returns spec compacted, recording a problem unless it is one JSON object of at most
// MaxSpecBytes.
func checkSpec(fs *problem.Fields, spec json.RawMessage) json.RawMessage {
	trimmed := bytes.TrimSpace(spec)
	switch {
	case len(trimmed) == 0:
		fs.Add("spec", "is required")
		return nil
	case len(trimmed) > MaxSpecBytes:
		fs.Add("spec", "must be at most %d bytes", MaxSpecBytes)
		return nil
	case trimmed[0] != '{' || !json.Valid(trimmed):
		fs.Add("spec", "must be a JSON object")
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, trimmed); err != nil {
		fs.Add("spec", "must be a JSON object")
		return nil
	}
	return buf.Bytes()
}

// wrap passes problem errors through and labels the others.
func wrap(op string, err error) error {
	if _, ok := problem.As(err); ok {
		return err
	}
	return fmt.Errorf("catalog: %s: %w", op, err)
}

// dbLookup resolves references against the database: the tenant's resources, then the platform's.
type dbLookup struct {
	db     *sqldb.DB
	tenant string
}

// Published implements Lookup.
func (l dbLookup) Published(ctx context.Context, kind, key string) (Published, bool, error) {
	p, ok, err := loadPublished(ctx, l.db.Reader(), l.tenant, kind, key)
	if err != nil || ok || l.tenant == Platform {
		return p, ok, err
	}
	return loadPublished(ctx, l.db.Reader(), Platform, kind, key)
}
