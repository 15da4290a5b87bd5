package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A backup made with the CLI beside a running server shows in the server's
// vectabase_backup_last_success_timestamp_seconds at the next scrape.
func TestServeMetricShowsACLIBackup(t *testing.T) {
	t.Parallel()
	dir, env := backupEnv(t)
	s := startServe(t, env)
	scrape := func() float64 {
		t.Helper()
		resp, err := http.Get("http://" + s.metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, "vectabase_backup_last_success_timestamp_seconds "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("metric line %q: %v", line, err)
				}
				return f
			}
		}
		t.Fatalf("/metrics has no vectabase_backup_last_success_timestamp_seconds:\n%s", raw)
		return 0
	}
	if got := scrape(); got != 0 {
		t.Fatalf("before any backup the metric = %v, want 0", got)
	}
	r := run(t, dir, env, "backup", "create", "--json")
	if r.code != 0 {
		t.Fatalf("backup create: exit %d, stderr %q", r.code, r.stderr)
	}
	var b struct{ CreatedAt time.Time }
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil || b.CreatedAt.IsZero() {
		t.Fatalf("backup create --json printed %q (%v)", r.stdout, err)
	}
	if got := scrape(); got != float64(b.CreatedAt.Unix()) {
		t.Errorf("after the CLI's backup the metric = %v, want %d", got, b.CreatedAt.Unix())
	}
}
