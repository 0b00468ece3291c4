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

func TestValueSumsTheMatchingSeries(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "perk_test_handled_total", Help: "h"},
		[]string{"consumer", "result"}))
	c.WithLabelValues("a", "ack").Add(3)
	c.WithLabelValues("a", "term").Add(1)
	c.WithLabelValues("b", "ack").Add(5)
	g := Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "perk_test_gauge", Help: "g"}))
	g.Set(7)
	h := Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Name: "perk_test_seconds", Help: "s"}))
	h.Observe(1)
	h.Observe(2)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"perk_test_handled_total", map[string]string{"consumer": "a", "result": "ack"}, 3},
		{"perk_test_handled_total", map[string]string{"consumer": "a"}, 4},
		{"perk_test_handled_total", nil, 9},
		{"perk_test_handled_total", map[string]string{"consumer": "c"}, 0},
		{"perk_test_gauge", nil, 7},
		{"perk_test_seconds", nil, 2},
		{"perk_missing_total", nil, 0},
	} {
		got, err := Value(reg, c.name, c.labels)
		require.NoError(t, err)
		require.Equal(t, c.want, got, "%s %v", c.name, c.labels)
	}
}
