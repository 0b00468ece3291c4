package app

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/perkhq/perk/internal/activity"
	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/reward"
	"github.com/perkhq/perk/internal/webhook"
)

// buildRewardsCore makes the ledger, the reward engine, webhooks and the activity log.
func (a *App) buildRewardsCore(registry *catalog.Registry) error {
	led, err := ledger.New(a.db, ledger.Options{Clock: a.clock, Events: a.bus.EnqueueEvent,
		Registerer: a.registry, MaxBatch: a.cfg.Ledger.MaxBatch})
	if err != nil {
		return err
	}
	a.ledger = led
	a.onClose(led.Close)
	if err := a.buildCoupons(registry); err != nil {
		return err
	}
	rewards, err := reward.New(a.db, reward.Options{Clock: a.clock, Ledger: led, TimeZone: a.zones.lookup,
		Coupons: couponIssuer{a.coupons},
		Events:  a.bus.EnqueueEvent, Flows: reward.CatalogFlows{Catalog: a.catalog, Snapshot: a.snapshot},
		Node: a.node, SweepInterval: a.cfg.Rewards.SweepInterval.Std(), MaxBatch: a.cfg.Rewards.MaxBatch,
		Registerer: a.registry, Logger: a.log})
	if err != nil {
		return err
	}
	a.rewards = rewards
	a.onClose(func() error { rewards.Close(); return nil })
	if err := reward.RegisterKinds(registry, rewards.Components()); err != nil {
		return err
	}
	a.webhooks = webhook.New(a.db, webhook.Options{Clock: a.clock, Logger: a.log, Registerer: a.registry})
	a.dispatcher = a.webhooks.NewDispatcher(webhook.DispatcherOptions{
		AllowPrivateNetworks: a.cfg.Webhooks.AllowPrivateNetworks, Timeout: a.cfg.Webhooks.Timeout.Std(),
		PollInterval: a.cfg.Webhooks.PollInterval.Std(), Node: a.node, UserAgent: "perk-webhooks/" + Version})
	a.activity = activity.New(a.db, a.bus, activity.Options{Retention: a.cfg.Activity.Retention.Std(),
		PruneInterval: a.cfg.Activity.PruneInterval.Std(), Clock: a.clock, Logger: a.log, Registerer: a.registry})
	return nil
}

// startConsumers subscribes the modules that react to domain events.
func (a *App) startConsumers(ctx context.Context) error {
	for name, start := range map[string]func() (func(), error){
		"webhook fan-out":     func() (func(), error) { return a.webhooks.Consume(ctx, a.bus, bus.ConsumerOptions{}) },
		"grant executor":      func() (func(), error) { return a.rewards.Consume(ctx, a.bus) },
		"coupon issue rules":  func() (func(), error) { return a.coupons.Consume(ctx, a.bus) },
		"coupon wallet cache": func() (func(), error) { return a.coupons.WatchWallets(ctx, a.bus) },
		"task progress":       func() (func(), error) { return a.tasks.Consume(ctx, a.bus, a.db) },
		"task grant outcomes": func() (func(), error) { return a.tasks.ConsumeGrants(ctx, a.bus) },
	} {
		stop, err := start()
		if err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		a.onClose(func() error { stop(); return nil })
	}
	return nil
}

// sweepLedger expires due points lots and releases expired holds, every interval, until ctx ends.
func (a *App) sweepLedger(ctx context.Context) error {
	return every(ctx, a.cfg.Ledger.SweepInterval.Std(), func(ctx context.Context) {
		for _, sweep := range []func(context.Context, int) (int, error){a.ledger.ExpireDue, a.ledger.ReleaseExpiredHolds} {
			for {
				n, err := sweep(ctx, 500)
				if err != nil && ctx.Err() == nil {
					a.log.Warn("ledger sweep", "err", err)
				}
				if err != nil || n < 500 {
					break
				}
			}
		}
	})
}

// zoneCache answers tenants' time zones for period arithmetic without a query per grant.
type zoneCache struct {
	clock clock.Clock
	load  func(ctx context.Context, tenantID string) (*time.Location, error)
	mu    sync.Mutex
	m     map[string]zoneEntry
}

type zoneEntry struct {
	loc *time.Location
	at  time.Time
}

// zoneTTL bounds how long a merchant's time-zone change takes to reach period arithmetic.
const zoneTTL = time.Minute

func (z *zoneCache) lookup(tenantID string) *time.Location {
	z.mu.Lock()
	e, ok := z.m[tenantID]
	z.mu.Unlock()
	if ok && z.clock.Now().Sub(e.at) < zoneTTL {
		return e.loc
	}
	loc, err := z.load(context.Background(), tenantID)
	if err != nil {
		return time.UTC
	}
	z.mu.Lock()
	if z.m == nil {
		z.m = map[string]zoneEntry{}
	}
	z.m[tenantID] = zoneEntry{loc: loc, at: z.clock.Now()}
	z.mu.Unlock()
	return loc
}
