package admin_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vectabase/vectabase/server/admin"
)

// ReadStats sums the request counter over its labels, picks out 429 and
// 5xx, and reads the rate-limit, audit and backup series.
func TestReadStats(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total"}, []string{"method", "route", "status"})
	limited := prometheus.NewCounter(prometheus.CounterOpts{Name: "vectabase_ratelimit_rejected_total"})
	backup := prometheus.NewGauge(prometheus.GaugeOpts{Name: "vectabase_backup_last_success_timestamp_seconds"})
	reg.MustRegister(reqs, limited, backup)
	if st, err := admin.ReadStats(reg); err != nil || st.Requests != 0 || st.BackupLastSuccess != nil {
		t.Fatalf("empty registry: %+v, %v", st, err)
	}
	reqs.WithLabelValues("GET", "/a", "200").Add(5)
	reqs.WithLabelValues("POST", "/b", "429").Add(2)
	reqs.WithLabelValues("GET", "/a", "429").Add(1)
	reqs.WithLabelValues("GET", "/c", "503").Add(1)
	limited.Add(2)
	when := time.Date(2026, 1, 9, 12, 0, 0, 0, time.UTC)
	backup.Set(float64(when.Unix()))
	st, err := admin.ReadStats(reg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests != 9 || st.Status429 != 3 || st.Status5xx != 1 || st.APIKeyRateLimited != 2 || st.BackupLastSuccess == nil || !st.BackupLastSuccess.Equal(when) {
		t.Errorf("ReadStats = %+v", st)
	}
}
