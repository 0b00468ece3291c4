package activity

import (
	"github.com/perkhq/perk/internal/platform/prom"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a message adds no record, as the "reason" label of perk_activity_skipped_total.
const (
	reasonUndecodable = "undecodable" // not an event envelope; the message is terminated
	reasonMalformed   = "malformed"   // an envelope with a bad field; acknowledged and dropped
	reasonExpired     = "expired"     // older than the retention on arrival
	reasonDuplicate   = "duplicate"   // its record exists already (a redelivery)
)

type metrics struct {
	written prometheus.Counter
	skipped *prometheus.CounterVec
	lag     prometheus.Gauge
	pruned  prometheus.Counter
	batch   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		written: prom.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "perk_activity_records_written_total",
			Help: "Activity records written.",
		})),
		skipped: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_activity_skipped_total",
			Help: "Messages that added no activity record, by reason (undecodable, malformed, expired, duplicate).",
		}, []string{"reason"})),
		lag: prom.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "perk_activity_lag_seconds",
			Help: "Time from the event to its record, for the last record written.",
		})),
		pruned: prom.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "perk_activity_pruned_total",
			Help: "Activity records deleted by retention.",
		})),
		batch: prom.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "perk_activity_batch_records",
			Help:    "Records offered to one write transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		})),
	}
	for _, r := range []string{reasonUndecodable, reasonMalformed, reasonExpired, reasonDuplicate} {
		m.skipped.WithLabelValues(r)
	}
	return m
}
