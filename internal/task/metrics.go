package task

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/platform/prom"
)

// The results of perk_task_events_total.
const (
	resultApplied = "applied" // the event moved at least one user task
	resultIgnored = "ignored" // no task it triggers counted it
	resultBad     = "malformed"
)

type metrics struct {
	events      *prometheus.CounterVec
	completions prometheus.Counter
	transitions *prometheus.CounterVec
	batch       prometheus.Histogram
	refused     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_task_events_total",
			Help: "Behaviour events handed to the task center, by result (applied, ignored, malformed).",
		}, []string{"result"})),
		completions: prom.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "perk_task_stage_completions_total",
			Help: "Task stages completed (each creates a grant).",
		})),
		transitions: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_task_transitions_total",
			Help: "User tasks entering each state (claimed on creation).",
		}, []string{"state"})),
		batch: prom.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "perk_task_batch_events",
			Help:    "Behaviour events applied in one transaction (ApplyBatch).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		})),
		refused: prom.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "perk_task_refused_total",
			Help: "Completions refused because the task's budget is spent.",
		})),
	}
	for _, r := range []string{resultApplied, resultIgnored, resultBad} {
		m.events.WithLabelValues(r)
	}
	return m
}
