package app

import (
	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/ingest"
)

// buildBusiness makes the business modules: event intake, the task center and coupons.
func (a *App) buildBusiness(_ *catalog.Registry) error {
	ev := a.cfg.Events
	a.ingest = ingest.New(a.bus, ingest.Options{Clock: a.clock, MaxEventBytes: ev.MaxEventBytes, MaxBatch: ev.MaxBatch,
		MaxLateness: ev.MaxLateness.Std(), MaxFutureSkew: ev.MaxFutureSkew.Std(), Registerer: a.registry, Logger: a.log})
	return nil
}
