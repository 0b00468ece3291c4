package kv

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts operations by op and result; the backend is a constant label.
type metrics struct {
	ops *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, backend string) (*metrics, error) {
	ops := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "perk_kv_operations_total",
		Help:        "kv operations by op and result (ok, refused, hit, miss, error).",
		ConstLabels: prometheus.Labels{"backend": backend},
	}, []string{"op", "result"})
	if reg != nil {
		if err := reg.Register(ops); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return nil, err
			}
			ops = already.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return &metrics{ops: ops}, nil
}

// observe counts one operation: refused for an out-of-bounds add, a taken lock or a lost lock.
func (m *metrics) observe(op string, err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, ErrOutOfBounds), errors.Is(err, ErrLocked), errors.Is(err, ErrLockLost):
		result = "refused"
	default:
		result = "error"
	}
	m.ops.WithLabelValues(op, result).Inc()
}

// observeCache counts one cache read.
func (m *metrics) observeCache(hit bool, err error) {
	switch {
	case err != nil:
		m.ops.WithLabelValues("cache_get", "error").Inc()
	case hit:
		m.ops.WithLabelValues("cache_get", "hit").Inc()
	default:
		m.ops.WithLabelValues("cache_get", "miss").Inc()
	}
}
