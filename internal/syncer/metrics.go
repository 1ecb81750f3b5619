package syncer

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the per-syncer Prometheus metrics.
type Metrics struct {
	queueDepth   *prometheus.GaugeVec
	syncDuration *prometheus.HistogramVec
	syncErrors   *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sublet_syncer_queue_depth", Help: "Keys waiting in a syncer's queue.",
		}, []string{"syncer"}),
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sublet_syncer_sync_duration_seconds", Help: "Time to reconcile one object.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"syncer"}),
		syncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sublet_syncer_sync_errors_total", Help: "Reconciles that failed and were retried.",
		}, []string{"syncer"}),
	}
	if reg != nil {
		reg.MustRegister(m.queueDepth, m.syncDuration, m.syncErrors)
	}
	return m
}
