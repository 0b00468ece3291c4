package webhook

import (
	"errors"
	"fmt"

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
		deliveries: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_webhook_deliveries_total",
			Help: "Outcomes of delivery attempts, by result (delivered, retrying, dead, canceled).",
		}, []string{"result"})),
		latency: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "perk_webhook_attempt_seconds",
			Help:    "Time from sending a webhook request to reading its answer (or failing).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		})),
		pending: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "perk_webhook_pending_deliveries",
			Help: "Deliveries waiting for an attempt (pending or retrying).",
		})),
		disabled: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_webhook_endpoints_disabled_total",
			Help: "Endpoints disabled, by reason (gone: the receiver answered 410; manual).",
		}, []string{"reason"})),
	}
}

// register registers c, or returns the collector already registered under the same description, so
// several services on one registry (nodes in a test) share the series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("webhook: register metrics: %v", err))
}
