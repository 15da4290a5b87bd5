package store

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	slowQueries prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		slowQueries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vectabase_db_slow_queries_total",
			Help: "Statements slower than SLOW_QUERY_MS.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.slowQueries)
	}
	return m
}

func (m *metrics) registerPool(reg prometheus.Registerer, pool *pgxpool.Pool) {
	if reg != nil {
		reg.MustRegister(poolCollector{pool: pool})
	}
}

// poolCollector exports pgxpool.Stat as gauges and counters at scrape time.
type poolCollector struct{ pool *pgxpool.Pool }

var (
	poolAcquired     = prometheus.NewDesc("pgxpool_acquired_conns", "Connections currently in use.", nil, nil)
	poolIdle         = prometheus.NewDesc("pgxpool_idle_conns", "Idle connections.", nil, nil)
	poolTotal        = prometheus.NewDesc("pgxpool_total_conns", "Open connections.", nil, nil)
	poolMax          = prometheus.NewDesc("pgxpool_max_conns", "Maximum pool size.", nil, nil)
	poolConstructing = prometheus.NewDesc("pgxpool_constructing_conns", "Connections being opened.", nil, nil)
	poolAcquires     = prometheus.NewDesc("pgxpool_acquire_total", "Successful acquires.", nil, nil)
	poolEmptyAcq     = prometheus.NewDesc("pgxpool_empty_acquire_total", "Acquires that had to wait for a connection.", nil, nil)
	poolCanceledAcq  = prometheus.NewDesc("pgxpool_canceled_acquire_total", "Acquires canceled by their context.", nil, nil)
	poolAcquireSecs  = prometheus.NewDesc("pgxpool_acquire_duration_seconds_total", "Time spent acquiring connections.", nil, nil)
)

func (poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolAcquired, poolIdle, poolTotal, poolMax, poolConstructing, poolAcquires, poolEmptyAcq, poolCanceledAcq, poolAcquireSecs} {
		ch <- d
	}
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(poolAcquired, prometheus.GaugeValue, float64(s.AcquiredConns()))
	ch <- prometheus.MustNewConstMetric(poolIdle, prometheus.GaugeValue, float64(s.IdleConns()))
	ch <- prometheus.MustNewConstMetric(poolTotal, prometheus.GaugeValue, float64(s.TotalConns()))
	ch <- prometheus.MustNewConstMetric(poolMax, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(poolConstructing, prometheus.GaugeValue, float64(s.ConstructingConns()))
	ch <- prometheus.MustNewConstMetric(poolAcquires, prometheus.CounterValue, float64(s.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolEmptyAcq, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolCanceledAcq, prometheus.CounterValue, float64(s.CanceledAcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolAcquireSecs, prometheus.CounterValue, s.AcquireDuration().Seconds())
}
