package app

import (
	"context"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/coupon"
	"github.com/perkhq/perk/internal/ingest"
	"github.com/perkhq/perk/internal/platform/sqldb"
	"github.com/perkhq/perk/internal/reward"
	"github.com/perkhq/perk/internal/task"
)

// buildBusiness makes the business modules: event intake and the task center (coupons are built
// with the rewards core, which issues through them).
func (a *App) buildBusiness(registry *catalog.Registry) error {
	ev := a.cfg.Events
	a.ingest = ingest.New(a.bus, ingest.Options{Clock: a.clock, MaxEventBytes: ev.MaxEventBytes, MaxBatch: ev.MaxBatch,
		MaxLateness: ev.MaxLateness.Std(), MaxFutureSkew: ev.MaxFutureSkew.Std(), Registerer: a.registry, Logger: a.log})
	if err := task.RegisterKinds(registry, a.rewards.Components()); err != nil {
		return err
	}
	tasks, err := task.New(a.db, task.Options{Snapshot: a.snapshot, Catalog: a.catalog, Rewards: a.rewards,
		Events: a.bus.EnqueueEvent, TimeZone: a.zones.lookup,
		Users: a.tenants.UserVars, SweepInterval: a.cfg.Tasks.SweepInterval.Std(),
		BatchSize: a.cfg.Tasks.BatchSize, Clock: a.clock, Registerer: a.registry, Logger: a.log})
	if err != nil {
		return err
	}
	a.tasks = tasks
	return nil
}

// buildCoupons makes the coupon module; the reward engine issues coupons through it.
func (a *App) buildCoupons(registry *catalog.Registry) error {
	if err := coupon.RegisterKinds(registry); err != nil {
		return err
	}
	c := a.cfg.Coupons
	svc, err := coupon.New(a.db, coupon.Options{Clock: a.clock, Catalog: a.catalog, Snapshot: a.snapshot, KV: a.kv,
		Events: a.bus.EnqueueEvent, Registerer: a.registry, Logger: a.log,
		RollbackPolicy: coupon.RollbackPolicy(c.RollbackPolicy), ArchiveAfter: c.ArchiveAfter.Std(),
		SweepInterval: c.SweepInterval.Std(), WalletCacheTTL: c.WalletCacheTTL.Std(), WalletCacheCoupons: c.WalletCacheCoupons})
	if err != nil {
		return err
	}
	a.coupons = svc
	return nil
}

// couponIssuer lets the reward engine's issue_coupon step issue through the coupon module (the
// two are on one layer and do not import each other).
type couponIssuer struct{ svc *coupon.Service }

// IssueTx implements reward.CouponIssuer.
func (c couponIssuer) IssueTx(ctx context.Context, tx *sqldb.Tx, p reward.IssueCouponParams) (string, error) {
	return c.svc.IssueTx(ctx, tx, coupon.TxIssueParams{TenantID: p.TenantID, UserID: p.UserID, Template: p.Template,
		BusinessKey: p.BusinessKey, SourceKind: p.SourceKind, SourceID: p.SourceID})
}
