package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgcluster"
	"github.com/vectabase/vectabase/store/pgtest"
)

// restartInstance is the rehearsal's stand-in for `systemctl restart
// vectabase@N`: it stops the instance's process (SIGTERM, as systemd does,
// waiting for the drain) and starts the installed binary again with the
// shared and the instance's environment files, as the unit does.
const restartInstance = `#!/bin/sh
set -eu
i=${1#vectabase@}
root=$(cd "$(dirname "$0")" && pwd)
pidf="$root/run/$i.pid"
alive() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
if [ -f "$pidf" ]; then
	pid=$(cat "$pidf")
	kill -TERM "$pid" 2>/dev/null || true
	n=0
	while alive "$pid"; do
		sleep 0.1
		n=$((n + 1))
		if [ "$n" -ge 450 ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
	done
fi
(
	set -a
	. "$root/etc/vectabase.env"
	. "$root/etc/instance-$i.env"
	set +a
	exec "$root/bin/vectabase" serve
) >>"$root/run/$i.log" 2>&1 &
echo $! > "$pidf"
`

// healthProxy is a small reverse proxy like the Caddy example: it sends
// each request to a healthy upstream (by /readyz, checked every 100 ms),
// round robin, and tries another while the connection fails (Caddy's
// lb_try_duration), for up to 10 s.
type healthProxy struct {
	upstreams []string
	healthy   []atomic.Bool
	next      atomic.Uint64
	client    *http.Client
	stop      chan struct{}
	retried   atomic.Int64
}

func newHealthProxy(upstreams ...string) *healthProxy {
	p := &healthProxy{upstreams: upstreams, healthy: make([]atomic.Bool, len(upstreams)), stop: make(chan struct{}),
		client: &http.Client{Timeout: 10 * time.Second}}
	go func() {
		hc := &http.Client{Timeout: time.Second}
		for {
			for i, u := range p.upstreams {
				resp, err := hc.Get("http://" + u + "/readyz")
				ok := err == nil && resp.StatusCode == 200
				if resp != nil {
					resp.Body.Close()
				}
				p.healthy[i].Store(ok)
			}
			select {
			case <-p.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return p
}

func (p *healthProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	deadline := time.Now().Add(10 * time.Second)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		n := p.next.Add(1)
		idx := -1
		for k := range p.upstreams {
			i := int(n+uint64(k)) % len(p.upstreams)
			if p.healthy[i].Load() {
				idx = i
				break
			}
		}
		if idx < 0 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.upstreams[idx]+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		req.Header.Set("X-Forwarded-For", "127.0.0.1")
		resp, err := p.client.Do(req)
		if err != nil {
			// The upstream went away (restart): try another.
			p.healthy[idx].Store(false)
			p.retried.Add(1)
			continue
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	http.Error(w, "no healthy upstream", http.StatusBadGateway)
}

// load sends requests through the proxy until stop is closed (at most
// limit), and counts them and the failures.
type load struct {
	total, failed atomic.Int64
	mu            sync.Mutex
	firstFailures []string
	wg            sync.WaitGroup
}

func startLoad(base, token string, workers int, stop <-chan struct{}, limit time.Duration) *load {
	l := &load{}
	end := time.Now().Add(limit)
	client := &http.Client{Timeout: 15 * time.Second}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for time.Now().Before(end) {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", base+"/api/auth/me", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				l.total.Add(1)
				if err == nil && resp.StatusCode == 200 {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					continue
				}
				l.failed.Add(1)
				msg := fmt.Sprint(err)
				if resp != nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					msg = fmt.Sprintf("%d %s", resp.StatusCode, b)
				}
				l.mu.Lock()
				if len(l.firstFailures) < 5 {
					l.firstFailures = append(l.firstFailures, msg)
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// TestRollingUpgradeRehearsal runs deploy/deploy.sh (locally, so the same
// deploy/rolling-restart.sh a VPS runs) against two `serve` instances
// behind a health-checked reverse proxy under continuous load:
//   - binary N to N+1 (another version, built with a pending backward-
//     compatible migration): migrated on the direct URL, both instances
//     restarted one at a time, zero failed requests;
//   - then an N+2 whose instances never become ready: the gate fails on the
//     first instance, the previous binary (N+1) comes back and serves, the
//     script exits 1, and again zero requests failed.
//
// Bounded: each phase's load stops when the script ends or after 3 minutes.
func TestRollingUpgradeRehearsal(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (rolling-restart.sh's health gate uses it)")
	}
	root := tempDir(t)
	for _, d := range []string{"bin", "etc", "run", "n1", "n2"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dbURL := pgtest.URL(t)
	key := filepath.Join(root, "etc", "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	writeFile := func(path, body string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(filepath.Join(root, "etc", "vectabase.env"), fmt.Sprintf(
		"DATABASE_URL='%s'\nKEYRING_MASTER_KEY_FILE='%s'\nADMIN_EMAIL='ops@example.com'\nADMIN_PASSWORD='correct horse battery staple'\nTRUSTED_PROXIES='127.0.0.1'\nLOG_LEVEL='warn'\nBACKUP_DIR='%s'\n",
		dbURL, key, filepath.Join(root, "backups")), 0o600)
	var addrs []string
	for i := 1; i <= 2; i++ {
		hp, _ := pgcluster.FreePort()
		mp, _ := pgcluster.FreePort()
		addr := fmt.Sprintf("127.0.0.1:%d", hp)
		addrs = append(addrs, addr)
		writeFile(filepath.Join(root, "etc", fmt.Sprintf("instance-%d.env", i)), fmt.Sprintf("HTTP_ADDR='%s'\nMETRICS_ADDR='127.0.0.1:%d'\n", addr, mp), 0o600)
	}
	writeFile(filepath.Join(root, "restart-instance.sh"), restartInstance, 0o755)
	t.Cleanup(func() {
		for i := 1; i <= 2; i++ {
			b, err := os.ReadFile(filepath.Join(root, "run", fmt.Sprintf("%d.pid", i)))
			if err != nil {
				continue
			}
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGTERM)
				for n := 0; n < 100 && syscall.Kill(pid, 0) == nil && !zombie(pid); n++ {
					time.Sleep(100 * time.Millisecond)
				}
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			if t.Failed() {
				if b, err := os.ReadFile(filepath.Join(root, "run", fmt.Sprintf("%d.log", i))); err == nil {
					t.Logf("instance %d log (tail):\n%s", i, tail(string(b), 3000))
				}
			}
		}
	})

	// Binary N: the one the tests built. N+1: the same source with another
	// version and one more, backward-compatible migration (a new table),
	// laid over the tree with -overlay so nothing is written in the
	// repository. N+2: a build whose serve never becomes ready.
	copyFile(t, binary, filepath.Join(root, "bin", "vectabase"))
	migration := filepath.Join(root, "n1", "00099_rehearsal.sql")
	writeFile(migration, "-- +goose Up\nCREATE TABLE rehearsal_marker (id int);\n-- +goose Down\nDROP TABLE rehearsal_marker;\n", 0o644)
	migDir, _ := filepath.Abs("../../migrations")
	overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{filepath.Join(migDir, "00099_rehearsal.sql"): migration}})
	writeFile(filepath.Join(root, "n1", "overlay.json"), string(overlay), 0o644)
	n1 := filepath.Join(root, "n1", "vectabase")
	build := exec.Command("go", "build", "-overlay", filepath.Join(root, "n1", "overlay.json"), "-ldflags", "-X main.version=rehearsal-n1", "-o", n1, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build N+1: %v\n%s", err, out)
	}
	n2 := filepath.Join(root, "n2", "vectabase")
	writeFile(n2, "#!/bin/sh\n# N+2: hangs at start, never ready.\ncase \"${1:-}\" in\nversion) echo 'vectabase rehearsal-n2'; exit 0 ;;\nserve) exec sleep 600 ;;\nesac\nexec "+n1+" \"$@\"\n", 0o755)

	restart := func(i int) {
		t.Helper()
		if out, err := exec.Command("sh", filepath.Join(root, "restart-instance.sh"), fmt.Sprintf("vectabase@%d", i)).CombinedOutput(); err != nil {
			t.Fatalf("start instance %d: %v\n%s", i, err, out)
		}
	}
	restart(1)
	restart(2)
	proxy := newHealthProxy(addrs...)
	defer close(proxy.stop)
	front := httptest.NewServer(proxy)
	defer front.Close()
	deadline := time.Now().Add(60 * time.Second)
	for !(proxy.healthy[0].Load() && proxy.healthy[1].Load()) {
		if time.Now().After(deadline) {
			t.Fatal("instances not ready within 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	c := &apiClient{t: t, base: front.URL}
	token := c.login("ops@example.com", "correct horse battery staple")

	deploy := func(newBin string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "../../deploy/deploy.sh", "local", newBin)
		cmd.Env = append(os.Environ(),
			"VECTABASE_BIN="+filepath.Join(root, "bin", "vectabase"),
			"VECTABASE_CONFIG_DIR="+filepath.Join(root, "etc"),
			"VECTABASE_INSTANCES=1 2",
			"VECTABASE_RESTART=sh "+filepath.Join(root, "restart-instance.sh"),
			"HEALTH_TIMEOUT=10", "HEALTH_OK=3", "HEALTH_INTERVAL=0.2")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	pids := func() [2]string {
		var p [2]string
		for i := range p {
			b, _ := os.ReadFile(filepath.Join(root, "run", fmt.Sprintf("%d.pid", i+1)))
			p[i] = strings.TrimSpace(string(b))
		}
		return p
	}
	phase := func(name, newBin string, wantOK bool) string {
		t.Helper()
		before := pids()
		stop := make(chan struct{})
		l := startLoad(front.URL, token, 4, stop, 3*time.Minute)
		time.Sleep(500 * time.Millisecond) // load before the roll starts
		start := time.Now()
		out, err := deploy(newBin)
		took := time.Since(start)
		time.Sleep(500 * time.Millisecond) // and after it ends
		close(stop)
		l.wg.Wait()
		t.Logf("%s: deploy took %v; %d requests through the proxy, %d failed, %d upstream connection retries\n%s",
			name, took.Round(100*time.Millisecond), l.total.Load(), l.failed.Load(), proxy.retried.Load(), out)
		if (err == nil) != wantOK {
			t.Fatalf("%s: deploy.sh err = %v, want success %v", name, err, wantOK)
		}
		if l.failed.Load() != 0 || l.total.Load() < 20 {
			t.Fatalf("%s: %d of %d requests failed (want 0 of at least 20): %v", name, l.failed.Load(), l.total.Load(), l.firstFailures)
		}
		if after := pids(); after[0] == before[0] || after[1] == before[1] && wantOK {
			t.Errorf("%s: instance pids %v -> %v, want every instance restarted", name, before, after)
		}
		return out
	}

	phase("N -> N+1", n1, true)
	v, err := exec.Command(filepath.Join(root, "bin", "vectabase"), "version").Output()
	if err != nil || !strings.Contains(string(v), "rehearsal-n1") {
		t.Fatalf("installed binary after the upgrade: %q (%v), want rehearsal-n1", v, err)
	}
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	var marker bool
	err = conn.QueryRow(context.Background(), "SELECT to_regclass('rehearsal_marker') IS NOT NULL").Scan(&marker)
	conn.Close(context.Background())
	if err != nil || !marker {
		t.Fatalf("the pending migration was not applied: %v", err)
	}

	out := phase("N+1 -> N+2 (fails its gate)", n2, false)
	if !strings.Contains(out, "rolled back") {
		t.Errorf("deploy output does not say it rolled back:\n%s", out)
	}
	v, err = exec.Command(filepath.Join(root, "bin", "vectabase"), "version").Output()
	if err != nil || !strings.Contains(string(v), "rehearsal-n1") {
		t.Fatalf("installed binary after the rollback: %q (%v), want rehearsal-n1 back", v, err)
	}
	for i := range proxy.healthy {
		h := &proxy.healthy[i]
		deadline := time.Now().Add(10 * time.Second)
		for !h.Load() && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if !h.Load() {
			t.Errorf("instance %d not healthy after the rollback", i+1)
		}
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] == "Z"
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
