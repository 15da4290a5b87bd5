package main

import (
	"testing"
	"time"
)

// The variables of the hostile-traffic work parse, with their defaults
// when unset (retention periods accept whole days).
func TestHostileRefusalVariables(t *testing.T) {
	t.Parallel()
	cfg, err := parseConfig(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	if time.Duration(cfg.Retention.APIRequestLogs) != 30*day || time.Duration(cfg.Retention.StripeEvents) != 90*day ||
		cfg.Retention.Interval != time.Hour || cfg.Audit.EnqueueTimeout != 2*time.Second ||
		cfg.Server.Refusals.LimitPerMinute != 120 {
		t.Errorf("defaults = retention %+v, audit %+v, refusals %+v", cfg.Retention, cfg.Audit, cfg.Server.Refusals)
	}
	cfg, err = parseConfig(map[string]string{"API_REQUEST_LOG_RETENTION": "7d", "STRIPE_EVENT_RETENTION": "36h",
		"RETENTION_INTERVAL": "10m", "AUDIT_ENQUEUE_TIMEOUT": "500ms", "REFUSAL_LIMIT_PER_MINUTE": "10"})
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(cfg.Retention.APIRequestLogs) != 7*day || time.Duration(cfg.Retention.StripeEvents) != 36*time.Hour ||
		cfg.Retention.Interval != 10*time.Minute || cfg.Audit.EnqueueTimeout != 500*time.Millisecond ||
		cfg.Server.Refusals.LimitPerMinute != 10 {
		t.Errorf("set = retention %+v, audit %+v, refusals %+v", cfg.Retention, cfg.Audit, cfg.Server.Refusals)
	}
	if _, err := parseConfig(map[string]string{"API_REQUEST_LOG_RETENTION": "a month"}); err == nil {
		t.Error("API_REQUEST_LOG_RETENTION=a month parsed, want an error")
	}
}
