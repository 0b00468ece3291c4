package app

import (
	"context"
	"fmt"

	"github.com/perkhq/perk/internal/activity"
	"github.com/perkhq/perk/internal/platform/bus"
	"github.com/perkhq/perk/internal/webhook"
)

// buildRewardsCore makes the modules of the rewards core that hang off the DOMAIN stream.
func (a *App) buildRewardsCore() {
	a.webhooks = webhook.New(a.db, webhook.Options{Clock: a.clock, Logger: a.log, Registerer: a.registry})
	a.dispatcher = a.webhooks.NewDispatcher(webhook.DispatcherOptions{
		AllowPrivateNetworks: a.cfg.Webhooks.AllowPrivateNetworks, Timeout: a.cfg.Webhooks.Timeout.Std(),
		PollInterval: a.cfg.Webhooks.PollInterval.Std(), Node: a.node, UserAgent: "perk-webhooks/" + Version})
	a.activity = activity.New(a.db, a.bus, activity.Options{Retention: a.cfg.Activity.Retention.Std(),
		PruneInterval: a.cfg.Activity.PruneInterval.Std(), Clock: a.clock, Logger: a.log, Registerer: a.registry})
}

// startConsumers subscribes the modules that react to domain events.
func (a *App) startConsumers(ctx context.Context) error {
	stop, err := a.webhooks.Consume(ctx, a.bus, bus.ConsumerOptions{})
	if err != nil {
		return fmt.Errorf("start webhook fan-out: %w", err)
	}
	a.onClose(func() error { stop(); return nil })
	return nil
}
