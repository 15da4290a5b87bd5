package auth

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vectabase/vectabase/server"
)

type metrics struct {
	logins        *prometheus.CounterVec
	refreshes     *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	auditFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var m metrics
	var err error
	if m.logins, err = server.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vectabase_auth_logins_total", Help: "Logins by result.",
	}, []string{"result"})); err != nil {
		return nil, err
	}
	if m.refreshes, err = server.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vectabase_auth_refreshes_total", Help: "Refresh-token exchanges by outcome (rotated, grace, reuse, refused).",
	}, []string{"result"})); err != nil {
		return nil, err
	}
	if m.rejected, err = server.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		// Not vectabase_ratelimit_rejected_total: that one belongs to the
		// API-key limiter, and a second registration with other labels fails.
		Name: "vectabase_auth_throttled_total", Help: "Login and register calls refused by throttling, by limit.",
	}, []string{"limit"})); err != nil {
		return nil, err
	}
	if m.auditFailures, err = server.Register(reg, prometheus.Counter(prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vectabase_auth_audit_failures_total", Help: "Audit rows auth could not write (the operation failed closed).",
	}))); err != nil {
		return nil, err
	}
	return &m, nil
}
