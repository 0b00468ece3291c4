package prom

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestRegisterSharesTheSeries(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "perk_test_total", Help: "test"}
	a := Register(reg, prometheus.NewCounter(opts))
	b := Register(reg, prometheus.NewCounter(opts))
	require.Same(t, a, b, "the second registration returns the first collector")
	require.NotNil(t, Register[prometheus.Counter](nil, prometheus.NewCounter(opts)))
	require.Panics(t, func() {
		Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "perk_test_total", Help: "other help"}))
	})
}
