package coupon

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/perkhq/perk/internal/platform/prom"
)

// metrics are the service's collectors. They always exist; they are registered only when a
// Registerer is given (several services on one registry share them).
type metrics struct {
	issued      *prometheus.CounterVec
	refused     *prometheus.CounterVec
	redemptions *prometheus.CounterVec
	qualify     prometheus.Histogram
	swept       *prometheus.CounterVec
	walletCache *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		issued: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_coupon_issued_total",
			Help: "Coupons issued into wallets (committed), by source kind.",
		}, []string{"source"})),
		refused: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_coupon_issue_refused_total",
			Help: "Coupon issuances refused by a limit, by reason (coupon-sold-out, coupon-limit-reached).",
		}, []string{"reason"})),
		redemptions: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_coupon_redemptions_total",
			Help: "Redemption transitions and refused locks, by result (locked, refused, confirmed, released, expired, rolled_back).",
		}, []string{"result"})),
		qualify: prom.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "perk_coupon_qualify_duration_seconds",
			Help:    "Time to qualify a cart against a wallet: wallet read, template resolution and the engine.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		})),
		swept: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_coupon_swept_total",
			Help: "Rows changed by the lifecycle sweeps, by job (expired, released, archived).",
		}, []string{"job"})),
		walletCache: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "perk_coupon_wallet_cache_total",
			Help: "Wallet reads of qualification, by result (hit: served from memory, miss: read from the database).",
		}, []string{"result"})),
	}
}
