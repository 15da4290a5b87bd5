package keyring

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts keyring operations. The hot-path counters are resolved
// once, so Encrypt and Decrypt pay one atomic add, not a label lookup.
type metrics struct {
	ops                          *prometheus.CounterVec
	encOK, encErr, decOK, decErr prometheus.Counter
	idxOK, idxErr, macOK, macErr prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	ops := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vectabase_keyring_ops_total",
		Help: "Keyring operations by operation and result.",
	}, []string{"op", "result"})
	if reg != nil {
		if err := reg.Register(ops); err != nil {
			// A second keyring in one process (tests, a re-open) shares
			// the counter already registered.
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("keyring: register metrics: %w", err)
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, fmt.Errorf("keyring: register metrics: %w", err)
			}
			ops = existing
		}
	}
	return &metrics{
		ops:    ops,
		encOK:  ops.WithLabelValues("encrypt", "ok"),
		encErr: ops.WithLabelValues("encrypt", "error"),
		decOK:  ops.WithLabelValues("decrypt", "ok"),
		decErr: ops.WithLabelValues("decrypt", "error"),
		idxOK:  ops.WithLabelValues("blind_index", "ok"),
		idxErr: ops.WithLabelValues("blind_index", "error"),
		macOK:  ops.WithLabelValues("mac", "ok"),
		macErr: ops.WithLabelValues("mac", "error"),
	}, nil
}
