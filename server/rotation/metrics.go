package rotation

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.pending); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		m.pending = are.ExistingCollector.(prometheus.Gauge)
	}
	if err := reg.Register(m.reencrypted); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		m.reencrypted = are.ExistingCollector.(prometheus.Counter)
	}
	return m, nil
}
