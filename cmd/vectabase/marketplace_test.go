package main

import (
	"bytes"
	"context"
	"encoding/json"
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

// TestServeFlushesRequestLogsOnShutdown runs `vectabase serve` with a
// request-log flush interval longer than the test, makes API-key calls,
// stops it with Ctrl-C, and finds every call's api_request_logs row: the
// shutdown flush alone wrote them.
func TestServeFlushesRequestLogsOnShutdown(t *testing.T) {
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
		fmt.Sprintf("METRICS_ADDR=127.0.0.1:%d", metricsPort), "API_REQUEST_LOG_FLUSH=1h")
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
	deadline := time.Now().Add(2 * time.Minute) // generous: a busy machine starts slowly
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready within 2 minutes; stderr:\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	call := func(method, path, header, value string, body any, want int) map[string]any {
		t.Helper()
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		if header != "" {
			req.Header.Set(header, value)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, out, want)
		}
		var m map[string]any
		_ = json.Unmarshal(out, &m)
		return m
	}
	creds := map[string]string{"email": "dev@example.com", "password": "a long password"}
	call("POST", "/api/auth/register", "", "", creds, 201)
	token := call("POST", "/api/auth/login", "", "", creds, 200)["token"].(string)
	key := call("POST", "/api/developer/keys", "Authorization", "Bearer "+token, map[string]any{"name": "k", "rateLimitPerMinute": 3}, 201)["key"].(string)
	for i := 0; i < 5; i++ {
		want := 200
		if i >= 3 {
			want = 429
		}
		call("POST", "/api/developer/verify", "X-API-Key", key, map[string]any{}, want)
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
	db := pgtest.Open(t, url)
	var n, limited int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE status_code = 429) FROM api_request_logs`).Scan(&n, &limited); err != nil {
		t.Fatal(err)
	}
	if n != 5 || limited != 2 {
		t.Fatalf("api_request_logs after shutdown: %d rows (%d with 429), want 5 (2)", n, limited)
	}
	if strings.Contains(stderr.String(), key) {
		t.Fatal("the API key appears in the server's log")
	}
}
