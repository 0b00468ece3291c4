package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/platform/prom"
)

// metrics are the service's collectors; they are registered only when a Registerer is given.
type metrics struct {
	events    *prometheus.CounterVec
	batchSize prometheus.Histogram
	publish   prometheus.Histogram
	refused   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		events: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_ingest_events_total",
			Help: "Behaviour events received, by status (accepted, duplicate, rejected, failed) and reason.",
		}, []string{"status", "reason"})),
		batchSize: prom.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "perk_ingest_batch_size",
			Help:    "Events per request that could be read (single events count as 1).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		})),
		publish: prom.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "perk_ingest_publish_seconds",
			Help:    "Time to make one request's events durable on EVENTS (one pipelined batch publish).",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		})),
		refused: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_ingest_requests_refused_total",
			Help: "Requests refused as a whole (nothing accepted), by problem kind: unsupported-media, " +
				"bad-request, invalid, too-large, unavailable.",
		}, []string{"kind"})),
	}
}

// count adds a request's outcomes to the events counter, one Add per status and reason.
func (m *metrics) count(res Result) {
	type label struct {
		status Status
		reason string
	}
	counts := map[label]int{}
	for _, r := range res.Results {
		if r.Status != "" {
			counts[label{r.Status, r.Reason}]++
		}
	}
	for l, n := range counts {
		m.events.WithLabelValues(string(l.status), l.reason).Add(float64(n))
	}
}
