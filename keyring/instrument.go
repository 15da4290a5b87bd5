package keyring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// kekMetrics are vectabase_kek_operations_total{backend,op,result} and
// vectabase_kek_operation_duration_seconds{backend,op}, shared by every
// instrumented KEK of a registry.
type kekMetrics struct {
	ops *prometheus.CounterVec
	dur *prometheus.HistogramVec
}

func registerKEKMetrics(reg prometheus.Registerer) (*kekMetrics, error) {
	m := &kekMetrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vectabase_kek_operations_total",
			Help: "KEK operations (wrap, unwrap, health) by backend and result (ok, auth_failure: the key did not make the ciphertext, error: the KEK was unusable).",
		}, []string{"backend", "op", "result"}),
		dur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vectabase_kek_operation_duration_seconds",
			Help:    "Latency of KEK operations by backend and operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"backend", "op"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.ops); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("keyring: register KEK metrics: %w", err)
		}
		m.ops = are.ExistingCollector.(*prometheus.CounterVec)
	}
	if err := reg.Register(m.dur); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("keyring: register KEK metrics: %w", err)
		}
		m.dur = are.ExistingCollector.(*prometheus.HistogramVec)
	}
	return m, nil
}

// Instrumented is a KEK whose calls are counted and timed per backend. It
// passes describing, in-place rotation, health checks and Close through.
type Instrumented struct {
	kek     KEK
	backend string
	m       *kekMetrics
}

var _ KEK = (*Instrumented)(nil)
var _ KEKDescriber = (*Instrumented)(nil)

// Instrument wraps kek so that its operations are counted on reg as
// vectabase_kek_operations_total{backend,op,result} and timed as
// vectabase_kek_operation_duration_seconds{backend,op}. Labels hold the
// backend's name only, never a key id.
func Instrument(kek KEK, reg prometheus.Registerer) (*Instrumented, error) {
	m, err := registerKEKMetrics(reg)
	if err != nil {
		return nil, err
	}
	backend, _ := describe(kek)
	return &Instrumented{kek: kek, backend: backend, m: m}, nil
}

func (i *Instrumented) observe(op string, start time.Time, err error) {
	i.m.dur.WithLabelValues(i.backend, op).Observe(time.Since(start).Seconds())
	result := "ok"
	switch {
	case err == nil:
	case isAuthFailure(err):
		result = "auth_failure"
	default:
		result = "error"
	}
	i.m.ops.WithLabelValues(i.backend, op, result).Inc()
}

// Encrypt is the inner KEK's, counted as op "wrap".
func (i *Instrumented) Encrypt(ctx context.Context, pt, ad []byte) ([]byte, error) {
	start := time.Now()
	ct, err := i.kek.Encrypt(ctx, pt, ad)
	i.observe("wrap", start, err)
	return ct, err
}

// Decrypt is the inner KEK's, counted as op "unwrap".
func (i *Instrumented) Decrypt(ctx context.Context, ct, ad []byte) ([]byte, error) {
	start := time.Now()
	pt, err := i.kek.Decrypt(ctx, ct, ad)
	i.observe("unwrap", start, err)
	return pt, err
}

// CheckHealth is CheckHealth of the inner KEK, counted as op "health".
func (i *Instrumented) CheckHealth(ctx context.Context) error {
	start := time.Now()
	err := CheckHealth(ctx, i.kek)
	i.observe("health", start, err)
	return err
}

// RotateKey rotates the inner KEK in place when its backend can.
func (i *Instrumented) RotateKey(ctx context.Context) error {
	r, ok := i.kek.(KEKRotator)
	if !ok {
		return fmt.Errorf("keyring: the %s KEK cannot rotate in place", i.backend)
	}
	start := time.Now()
	err := r.RotateKey(ctx)
	i.observe("rotate", start, err)
	return err
}

// CanRotateKey reports whether the inner KEK rotates in place.
func (i *Instrumented) CanRotateKey() bool { _, ok := i.kek.(KEKRotator); return ok }

// KEKBackend is the inner KEK's.
func (i *Instrumented) KEKBackend() string { return i.backend }

// KEKKeyID is the inner KEK's.
func (i *Instrumented) KEKKeyID() string { _, id := describe(i.kek); return id }

// Unwrap returns the inner KEK.
func (i *Instrumented) Unwrap() KEK { return i.kek }

// Close closes the inner KEK when it holds resources.
func (i *Instrumented) Close() error {
	if c, ok := i.kek.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// String is the inner KEK's description.
func (i *Instrumented) String() string { return fmt.Sprint(i.kek) }
