package bus

import (
	"github.com/perkhq/perk/internal/platform/prom"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of handling a message, as the "result" label of perk_bus_handled_total.
const (
	resultAck       = "ack"       // handled and acknowledged
	resultRetry     = "retry"     // handler failed; redelivered later
	resultPanic     = "panic"     // handler panicked; redelivered later
	resultTerm      = "term"      // permanent failure or deliveries exhausted; not redelivered
	resultDuplicate = "duplicate" // ConsumeTx saw a message it had already processed
	resultStopped   = "stopped"   // handed back unprocessed because the consumer was stopping
	resultSkipped   = "skipped"   // not relevant to the consumer (ConsumerOptions.Relevant): acknowledged unhandled
)

type metrics struct {
	published  *prometheus.CounterVec
	duplicates *prometheus.CounterVec
	pubErrors  *prometheus.CounterVec
	handled    *prometheus.CounterVec
	handleTime *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		published: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_bus_published_total",
			Help: "Messages acknowledged by JetStream, by stream (duplicates excluded).",
		}, []string{"stream"})),
		duplicates: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_bus_publish_duplicates_total",
			Help: "Publishes JetStream acknowledged as duplicates of a Nats-Msg-Id inside the window.",
		}, []string{"stream"})),
		pubErrors: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_bus_publish_errors_total",
			Help: "Publishes that failed or were not acknowledged in time.",
		}, []string{"stream"})),
		handled: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_bus_handled_total",
			Help: "Messages handled by consumers, by consumer and result " +
				"(ack, retry, panic, term, duplicate, stopped, skipped).",
		}, []string{"consumer", "result"})),
		handleTime: prom.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "perk_bus_handle_seconds",
			Help:    "Time consumers spend handling one message, or one batch for the batched consumers.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}, []string{"consumer"})),
	}
}

func (m *metrics) countPublish(stream string, duplicate bool, err error) {
	switch {
	case err != nil:
		m.pubErrors.WithLabelValues(stream).Inc()
	case duplicate:
		m.duplicates.WithLabelValues(stream).Inc()
	default:
		m.published.WithLabelValues(stream).Inc()
	}
}
