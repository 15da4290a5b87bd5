package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgcluster"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TestServeAggregatesAnonymousRefusals runs `vectabase serve`, sends it
// 10,000 anonymous refusals over loopback (a 1000-character secret name
// without a token, a bad bearer token, keyless and unknown-key developer
// verify calls), stops it with Ctrl-C, and finds no api_request_logs row
// and at most a handful of audit rows: the per-address, per-minute
// aggregates, whose counts add up to 10,000.
func TestServeAggregatesAnonymousRefusals(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	url := pgtest.URL(t)
	if err := local.GenerateKeyFile(dir + "/master.key"); err != nil {
		t.Fatal(err)
	}
	httpPort, _ := pgcluster.FreePort()
	metricsPort, _ := pgcluster.FreePort()
	addr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	cmd := exec.Command(binary, "serve")
	cmd.Dir = dir
	cmd.Env = baseEnv("DATABASE_URL="+url, "KEYRING_MASTER_KEY_FILE="+dir+"/master.key", "HTTP_ADDR="+addr,
		fmt.Sprintf("METRICS_ADDR=127.0.0.1:%d", metricsPort), "RETENTION_INTERVAL=0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-done
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready within 15 s; stderr:\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// What serve audits by itself (keys made at start, its own secret
	// reads) is not the flood's.
	db := pgtest.Open(t, url)
	var before int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	const total = 10000
	long := base + "/api/secrets/" + strings.Repeat("n", 1000)
	statuses := map[int]int{}
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range total {
		var req *http.Request
		switch i % 4 {
		case 0:
			req, _ = http.NewRequest("GET", long, nil)
		case 1:
			req, _ = http.NewRequest("GET", long, nil)
			req.Header.Set("Authorization", "Bearer not-a-token")
		case 2:
			req, _ = http.NewRequest("POST", base+"/api/developer/verify", strings.NewReader("{}"))
		case 3:
			req, _ = http.NewRequest("POST", base+"/api/developer/verify", strings.NewReader("{}"))
			req.Header.Set("X-API-Key", "vb_live_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses[resp.StatusCode]++
	}
	if statuses[401]+statuses[429] != total {
		t.Fatalf("statuses = %v, want only 401 and 429", statuses)
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		stopped = true
		if err != nil {
			t.Fatalf("serve exited with %v after Ctrl-C; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop within 40 s of Ctrl-C")
	}
	var logs, audits, aggregates, counted int
	err := db.Pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM api_request_logs), (SELECT count(*) FROM audit_logs),
		count(*), coalesce(sum((details->>'count')::int), 0) FROM audit_logs WHERE action = 'request.refused'`).Scan(&logs, &audits, &aggregates, &counted)
	if err != nil {
		t.Fatal(err)
	}
	audits -= before
	t.Logf("statuses %v; %d audit rows, %d aggregates counting %d", statuses, audits, aggregates, counted)
	if logs != 0 {
		t.Errorf("%d anonymous refusals left %d api_request_logs rows, want 0", total, logs)
	}
	if audits > 5 || counted != total {
		t.Errorf("%d anonymous refusals left %d audit rows (%d aggregates counting %d), want at most 5 counting %d", total, audits, aggregates, counted, total)
	}
}
