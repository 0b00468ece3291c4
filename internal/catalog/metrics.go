package catalog

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// snapshotMetrics are a Snapshot's collectors. They always exist; they are registered only when a
// Registerer is given.
type snapshotMetrics struct {
	seq         prometheus.Gauge
	resources   prometheus.Gauge
	refreshes   *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	propagation prometheus.Histogram
}

func newSnapshotMetrics(reg prometheus.Registerer) (*snapshotMetrics, error) {
	m := &snapshotMetrics{
		seq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "perk_catalog_snapshot_seq",
			Help: "Last change-log seq applied to this node's config snapshot.",
		}),
		resources: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "perk_catalog_snapshot_resources",
			Help: "Published config resources held in this node's snapshot.",
		}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_catalog_snapshot_refreshes_total",
			Help: "Snapshot refreshes by mode (full, incremental) and result (ok, error).",
		}, []string{"mode", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "perk_catalog_snapshot_refresh_seconds",
			Help:    "Time taken by snapshot refreshes, by mode.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}, []string{"mode"}),
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "perk_catalog_change_propagation_seconds",
			Help:    "Time from a change's commit to its application in this node's snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.seq, m.resources, m.refreshes, m.duration, m.propagation} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("catalog: register snapshot metrics: %w", err)
		}
	}
	return m, nil
}
