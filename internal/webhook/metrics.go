package webhook

import (
	"github.com/perkhq/perk/internal/platform/prom"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	deliveries *prometheus.CounterVec
	latency    prometheus.Histogram
	pending    prometheus.Gauge
	disabled   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		deliveries: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_webhook_deliveries_total",
			Help: "Outcomes of delivery attempts, by result (delivered, retrying, dead, canceled).",
		}, []string{"result"})),
		latency: prom.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "perk_webhook_attempt_seconds",
			Help:    "Time from sending a webhook request to reading its answer (or failing).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		})),
		pending: prom.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "perk_webhook_pending_deliveries",
			Help: "Deliveries waiting for an attempt (pending or retrying).",
		})),
		disabled: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_webhook_endpoints_disabled_total",
			Help: "Endpoints disabled, by reason (gone: the receiver answered 410; manual).",
		}, []string{"reason"})),
	}
}
