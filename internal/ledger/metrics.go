package ledger

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the service's collectors. They always exist; they are registered only when a
// Registerer is given.
type metrics struct {
	entries   *prometheus.CounterVec
	batchSize prometheus.Histogram
	commit    prometheus.Histogram
	expired   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_ledger_entries_posted_total",
			Help: "Ledger entries posted (committed or part of a caller's transaction), by kind.",
		}, []string{"kind"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "perk_ledger_grant_batch_size",
			Help:    "Grants coalesced into one group-commit transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "perk_ledger_grant_commit_seconds",
			Help:    "Duration of one group-commit transaction, from begin to durable commit.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "perk_ledger_expired_amount_total",
			Help: "Value expired by the expiry sweep, summed over assets.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.entries, m.batchSize, m.commit, m.expired} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ledger: register metrics: %w", err)
		}
	}
	return m, nil
}
