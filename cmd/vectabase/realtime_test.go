package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgcluster"
	"github.com/vectabase/vectabase/store/pgtest"
)

// serveRun is a running `vectabase serve`.
type serveRun struct {
	cmd     *exec.Cmd
	addr    string
	metrics string
	done    chan struct{}
	err     error
}

func startServe(t *testing.T, env []string) *serveRun {
	t.Helper()
	httpPort, _ := pgcluster.FreePort()
	metricsPort, _ := pgcluster.FreePort()
	s := &serveRun{addr: fmt.Sprintf("127.0.0.1:%d", httpPort), metrics: fmt.Sprintf("127.0.0.1:%d", metricsPort), done: make(chan struct{})}
	s.cmd = exec.Command(binary, "serve")
	s.cmd.Dir = tempDir(t)
	s.cmd.Env = append(env, "HTTP_ADDR="+s.addr, "METRICS_ADDR="+s.metrics)
	var stderr bytes.Buffer
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(2 * time.Minute) // generous: a busy machine starts slowly
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + s.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		select {
		case <-s.done:
			t.Fatalf("serve exited: %v\n%s", s.err, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("serve not ready within 2 minutes")
	return nil
}

// Two `vectabase serve` processes on one database: a user logged in on A
// connects to B's /api/realtime, a change committed in the database reaches
// them, B's metrics count the socket, and both stop cleanly on Ctrl-C with
// the socket still open.
func TestServeRealtimeAcrossProcesses(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	keyFile := filepath.Join(tempDir(t), "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	env := baseEnv("DATABASE_URL="+dbURL, "KEYRING_MASTER_KEY_FILE="+keyFile,
		"ADMIN_EMAIL=owner@example.com", "ADMIN_PASSWORD=correct horse battery staple")
	a := startServe(t, env)
	b := startServe(t, env)

	body := strings.NewReader(`{"email":"owner@example.com","password":"correct horse battery staple"}`)
	resp, err := http.Post("http://"+a.addr+"/api/auth/login", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var login struct {
		Token string
		User  struct{ ID string }
	}
	if resp.StatusCode != 200 || json.Unmarshal(raw, &login) != nil || login.Token == "" {
		t.Fatalf("login on A = %d %s", resp.StatusCode, raw)
	}

	ws, _, err := websocket.DefaultDialer.Dial("ws://"+b.addr+"/api/realtime?access_token="+url.QueryEscape(login.Token), nil)
	if err != nil {
		t.Fatalf("dial B: %v", err)
	}
	defer ws.Close()
	read := func() map[string]any {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(time.Minute))
		var m map[string]any
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatalf("read: %v", err)
		}
		return m
	}
	if m := read(); m["type"] != "authenticated" {
		t.Fatalf("got %v, want authenticated", m)
	}
	if err := ws.WriteJSON(map[string]string{"type": "subscribe", "topic": "stores"}); err != nil {
		t.Fatal(err)
	}
	if m := read(); m["type"] != "subscribed" {
		t.Fatalf("got %v, want subscribed", m)
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var storeID string
	if err := conn.QueryRow(ctx, `INSERT INTO stores (owner_id, name, slug) VALUES ($1, 'Shop', 'shop-cmd') RETURNING id`, login.User.ID).Scan(&storeID); err != nil {
		t.Fatal(err)
	}
	if m := read(); m["type"] != "change" || m["id"] != storeID || m["action"] != "insert" {
		t.Fatalf("got %v, want the insert of store %s", m, storeID)
	}

	mresp, err := http.Get("http://" + b.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(string(metrics), "\nvectabase_realtime_connections 1\n") {
		t.Errorf("B's /metrics lacks vectabase_realtime_connections 1")
	}

	for name, s := range map[string]*serveRun{"A": a, "B": b} {
		if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.done:
			if s.err != nil {
				t.Errorf("serve %s exited with %v after Ctrl-C, want 0", name, s.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("serve %s did not stop within 30 s of Ctrl-C with a socket open", name)
		}
	}
}
