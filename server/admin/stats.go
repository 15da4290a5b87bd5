package admin

import (
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
)

// Stats is GET /api/admin/stats: the counters of the metrics registry an
// admin console needs, without opening METRICS_ADDR to browsers. The
// console turns two readings into a request rate.
type Stats struct {
	At time.Time `json:"at"`
	// Requests is http_requests_total summed over every label.
	Requests float64 `json:"requests"`
	// Status429 is http_requests_total{status="429"}: every answer of 429,
	// whatever refused it.
	Status429 float64 `json:"status429"`
	// Status5xx is http_requests_total with a 5xx status.
	Status5xx float64 `json:"status5xx"`
	// APIKeyRateLimited is vectabase_ratelimit_rejected_total: API-key
	// requests over their key's per-minute limit.
	APIKeyRateLimited float64 `json:"apiKeyRateLimited"`
	// BackupLastSuccess is vectabase_backup_last_success_timestamp_seconds
	// as a time, nil when no backup has succeeded.
	BackupLastSuccess *time.Time `json:"backupLastSuccess"`
	// AuditWriteFailures is vectabase_audit_write_failures_total.
	AuditWriteFailures float64 `json:"auditWriteFailures"`
}

// StatsRoutes is GET /api/admin/stats for administrators, read from g (the
// registry /metrics serves).
func StatsRoutes(g prometheus.Gatherer, requireAdmin fiber.Handler) []server.Route {
	return []server.Route{
		{Method: fiber.MethodGet, Path: "/api/admin/stats", Auth: requireAdmin, BodyLimit: 4 << 10, Timeout: 10 * time.Second, Handler: func(c *fiber.Ctx) error {
			st, err := ReadStats(g)
			if err != nil {
				return err
			}
			c.Set(fiber.HeaderCacheControl, "no-store")
			return c.JSON(st)
		}},
	}
}

// ReadStats gathers g once and sums the series Stats names.
func ReadStats(g prometheus.Gatherer) (Stats, error) {
	st := Stats{At: time.Now().UTC()}
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return st, vectabase.WrapError(vectabase.EINTERNAL, "internal error", err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "http_requests_total":
				v := value(m)
				st.Requests += v
				status := label(m, "status")
				if status == "429" {
					st.Status429 += v
				}
				if len(status) == 3 && status[0] == '5' {
					st.Status5xx += v
				}
			case "vectabase_ratelimit_rejected_total":
				st.APIKeyRateLimited += value(m)
			case "vectabase_audit_write_failures_total":
				st.AuditWriteFailures += value(m)
			case "vectabase_backup_last_success_timestamp_seconds":
				if v := value(m); v > 0 {
					t := time.Unix(int64(v), int64((v-float64(int64(v)))*1e9)).UTC()
					if st.BackupLastSuccess == nil || t.After(*st.BackupLastSuccess) {
						st.BackupLastSuccess = &t
					}
				}
			}
		}
	}
	return st, nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
