package app

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/platform/idem"
	"github.com/perkhq/perk/internal/platform/problem"
)

// KindIdempotency is the config kind that sets idempotency per operation at run time. Its key is an
// operation id (e.g. "create-merchant") or "default"; a merchant's resource overrides the platform's,
// which overrides the config file.
const KindIdempotency = "idempotency"

// IdempotencySpec is the spec of an idempotency resource. Unset fields inherit.
type IdempotencySpec struct {
	Policy     idem.Policy `json:"policy,omitempty"`
	Storage    string      `json:"storage,omitempty"`
	Required   *bool       `json:"required,omitempty"`
	KeyExpr    string      `json:"key_expr,omitempty"`
	TTLSeconds int         `json:"ttl_seconds,omitempty"`
}

func registerKinds(reg *catalog.Registry) error {
	return reg.Register(catalog.Kind{Name: KindIdempotency, Validate: validateIdempotency})
}

func validateIdempotency(_ context.Context, in catalog.ValidateInput) (json.RawMessage, error) {
	var spec IdempotencySpec
	dec := json.NewDecoder(bytes.NewReader(in.Spec))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return nil, problem.Invalid("the idempotency spec cannot be read: %v", err).WithField("spec", err.Error())
	}
	var fs problem.Fields
	if spec.Policy != "" && !spec.Policy.Valid() {
		fs.Add("spec.policy", "must be replay, duplicate or fail")
	}
	if spec.Storage != "" && spec.Storage != idem.StorageRedis && spec.Storage != idem.StorageSQL {
		fs.Add("spec.storage", "must be redis or sql")
	}
	if spec.KeyExpr != "" {
		if err := idem.CheckKeyExpr(spec.KeyExpr); err != nil {
			fs.Add("spec.key_expr", "%v", err)
		}
	}
	if spec.TTLSeconds != 0 && (spec.TTLSeconds < 60 || spec.TTLSeconds > 30*24*3600) {
		fs.Add("spec.ttl_seconds", "must be between 60 and %d", 30*24*3600)
	}
	if err := fs.Err("the idempotency spec is invalid"); err != nil {
		return nil, err
	}
	return json.Marshal(spec)
}

// snapshotSource reads each operation's idempotency settings from the config snapshot, so a publish
// changes them on every node within seconds.
type snapshotSource struct {
	snap *catalog.Snapshot
	base idem.OperationConfig
}

// Operation implements idem.OperationSource.
func (s snapshotSource) Operation(tenantID, operation string) idem.OperationConfig {
	cfg := s.base
	for _, where := range [][2]string{{catalog.Platform, "default"}, {catalog.Platform, operation},
		{tenantID, "default"}, {tenantID, operation}} {
		p, ok := s.snap.Get(where[0], KindIdempotency, where[1])
		if !ok {
			continue
		}
		var spec IdempotencySpec
		if json.Unmarshal(p.Spec, &spec) != nil {
			continue
		}
		cfg = overlay(cfg, spec)
	}
	return cfg
}

func overlay(cfg idem.OperationConfig, spec IdempotencySpec) idem.OperationConfig {
	if spec.Policy != "" {
		cfg.Policy = spec.Policy
	}
	if spec.Storage != "" {
		cfg.Storage = spec.Storage
	}
	if spec.Required != nil {
		cfg.Required = *spec.Required
	}
	if spec.KeyExpr != "" {
		cfg.KeyExpr = spec.KeyExpr
	}
	if spec.TTLSeconds > 0 {
		cfg.TTL = time.Duration(spec.TTLSeconds) * time.Second
	}
	return cfg
}

// buildIdem makes the idempotency service: SQL storage always, Redis too when configured.
func (a *App) buildIdem() error {
	a.idemSQL = idem.NewSQLStorage(a.db, a.clock)
	storages := map[string]idem.Storage{idem.StorageSQL: a.idemSQL}
	if a.redis != nil {
		storages[idem.StorageRedis] = idem.NewRedisStorage(a.redis, a.cfg.Redis.KeyPrefix)
	}
	def := string(a.cfg.Idempotency.Storage)
	if def == "auto" {
		def = ""
	}
	base := idem.OperationConfig{Policy: idem.Policy(a.cfg.Idempotency.DefaultPolicy)}
	svc, err := idem.NewService(idem.ServiceOptions{Storages: storages, Default: def,
		Source: snapshotSource{snap: a.snapshot, base: base}, TTL: a.cfg.Idempotency.TTL.Std(),
		Registerer: a.registry, Logger: a.log})
	a.idem = svc
	return err
}

// idemPurgeInterval is how often expired idempotency records are deleted from SQL (Redis expires
// its own).
const idemPurgeInterval = 5 * time.Minute

// purgeIdempotency deletes expired SQL idempotency records in small batches, every interval, until
// ctx ends. Every node may run it: deleting an expired row twice is harmless.
func (a *App) purgeIdempotency(ctx context.Context) error {
	return every(ctx, idemPurgeInterval, a.purgeExpiredIdempotency)
}

// purgeExpiredIdempotency is one purge pass: batches of 500 until none is left.
func (a *App) purgeExpiredIdempotency(ctx context.Context) {
	for {
		n, err := a.idemSQL.Purge(ctx, 500)
		if err != nil && ctx.Err() == nil {
			a.log.Warn("purge idempotency records", "err", err)
		}
		if err != nil || n < 500 {
			return
		}
	}
}

// every runs fn at once and then every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, fn func(context.Context)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		fn(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
