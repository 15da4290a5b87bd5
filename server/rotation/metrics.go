package rotation

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vectabase/vectabase/server"
)

type metrics struct {
	pending     prometheus.Gauge
	reencrypted prometheus.Counter
}

// newMetrics registers vectabase_rotation_pending_values and
// vectabase_rotation_reencrypted_total on reg (nil: unregistered). A second
// Service on the same registry shares the already registered collectors.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vectabase_rotation_pending_values",
			Help: "Stored values of the running DEK rotation not yet re-encrypted to the new primary key (an estimate from the job's start count).",
		}),
		reencrypted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vectabase_rotation_reencrypted_total",
			Help: "Stored values re-encrypted to a new primary data key by this instance.",
		}),
	}
	var err error
	if m.pending, err = server.Register(reg, m.pending); err != nil {
		return nil, err
	}
	if m.reencrypted, err = server.Register(reg, m.reencrypted); err != nil {
		return nil, err
	}
	return m, nil
}
