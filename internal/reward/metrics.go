package reward

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	transitions *prometheus.CounterVec
	steps       *prometheus.HistogramVec
	claimed     prometheus.Counter
	batch       prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_reward_grant_transitions_total",
			Help: "Grants entering each state (pending on creation, park and retry; running on claim).",
		}, []string{"state"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "perk_reward_step_duration_seconds",
			Help:    "Time to run one step of a grant, by component and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"component", "outcome"}),
		claimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "perk_reward_sweeper_claims_total",
			Help: "Grants the replay sweeper claimed (due retries, stale leases, rechecks).",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "perk_reward_fast_batch_size",
			Help:    "Grants per fast-path transaction (group commit of concurrent Creates).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.transitions, m.steps, m.claimed, m.batch} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("reward: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) transition(to State) { m.transitions.WithLabelValues(string(to)).Inc() }

func (m *metrics) step(component string, outcome StepState, start time.Time) {
	m.steps.WithLabelValues(component, string(outcome)).Observe(time.Since(start).Seconds())
}
