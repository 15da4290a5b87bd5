package vaulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vectabase/vectabase/store/pgcluster"
)

// TestFault3_VaultOutage is scenario 3 of the fault suite (bench/faults,
// issue 18), here because only this module has a real Vault: a real
// `vectabase serve` binary with KEYRING_BACKEND=vault on the in-process
// Vault, which is sealed for a few seconds under secret reads and writes.
// Serving goes on from the keysets already unwrapped; /readyz turns false;
// what needs the KEK (a KEK rotation) fails with a clear 503; when Vault is
// unsealed the server is ready again and the KEK rotation works, without a
// restart. It prints one row of the suite's table.
func TestFault3_VaultOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and builds the server")
	}
	if _, err := pgcluster.FindBinDir(); err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	c, stopPG, err := pgcluster.StartThrowaway(ctx, map[string]string{"synchronous_commit": "on"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopPG)
	dbURL := c.URL("postgres") // serve --migrate migrates it

	cluster, _ := startVault(t)
	bin := filepath.Join(t.TempDir(), "vectabase")
	if out, err := exec.Command("go", "build", "-C", "../../..", "-o", bin, "./cmd/vectabase").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	addr, metrics := freeAddr(t), freeAddr(t)
	base := "http://" + addr
	cmd := exec.Command(bin, "serve", "--migrate")
	cmd.Dir = t.TempDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"HTTP_ADDR=" + addr, "METRICS_ADDR=" + metrics, "DATABASE_URL=" + dbURL,
		"KEYRING_BACKEND=vault", "VAULT_ADDR=" + cluster.Cores[0].Client.Address(), "VAULT_TOKEN=" + cluster.RootToken,
		"VAULT_CACERT=" + cluster.CACertPEMFile, "READYZ_KEK_CACHE=200ms",
		"ADMIN_EMAIL=owner@example.com", "ADMIN_PASSWORD=correct horse battery staple", "LOG_LEVEL=error", "BACKUP_DIR=" + t.TempDir()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	hc := &http.Client{Timeout: 10 * time.Second}
	ready := func() bool {
		resp, err := hc.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	if waitFor(60*time.Second, ready) < 0 {
		t.Fatalf("serve not ready within 60 s:\n%s", stderr.String())
	}
	var token string
	call := func(method, path string, body any) (int, string, []byte, time.Duration) {
		var r io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			r = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, base+path, r)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "connection error", nil, time.Since(start)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var eb struct{ Error string }
		_ = json.Unmarshal(b, &eb)
		return resp.StatusCode, eb.Error, b, time.Since(start)
	}
	status, _, body, _ := call("POST", "/api/auth/login", map[string]string{"email": "owner@example.com", "password": "correct horse battery staple"})
	if status != 200 {
		t.Fatalf("login: %d %s", status, body)
	}
	var lr struct{ Token string }
	_ = json.Unmarshal(body, &lr)
	token = lr.Token
	if status, _, body, _ := call("PUT", "/api/secrets/before-outage", map[string]string{"value": "v0"}); status/100 != 2 {
		t.Fatalf("put before the outage: %d %s", status, body)
	}

	// The outage: Vault sealed answers 503 to every transit call.
	cluster.Cores[0].Seal(t)
	sealed := time.Now()
	kinds := map[string]int{}
	var slowest time.Duration
	writes, reads := 0, 0
	for i := 0; time.Since(sealed) < 4*time.Second; i++ {
		for _, op := range []struct {
			method, path string
			body         any
		}{
			{"GET", "/api/secrets/before-outage", nil},
			{"PUT", fmt.Sprintf("/api/secrets/during-%d", i), map[string]string{"value": "v"}},
			{"GET", "/api/auth/me", nil},
		} {
			status, code, _, took := call(op.method, op.path, op.body)
			slowest = max(slowest, took)
			if status/100 == 2 {
				if op.method == "PUT" {
					writes++
				} else {
					reads++
				}
				continue
			}
			kinds[fmt.Sprintf("%d %s", status, code)]++
		}
		time.Sleep(50 * time.Millisecond)
	}
	readyDuring := ready()
	kekStatus, kekCode, kekBody, kekTook := call("POST", "/api/admin/keys/rotate", map[string]string{"kind": "kek"})

	cluster.UnsealCores(t)
	unsealed := time.Now()
	back := waitFor(30*time.Second, ready)
	afterStatus, _, afterBody, _ := call("POST", "/api/admin/keys/rotate", map[string]string{"kind": "kek"})
	getStatus, _, _, _ := call("GET", "/api/secrets/during-0", nil)

	var parts []string
	for k, v := range kinds {
		parts = append(parts, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	fmt.Printf("%-34s | %-60s | %-16s | %-15s | %s\n", "3 Vault outage (sealed 4 s)", strings.Join(parts, ", "),
		fmt.Sprintf("ready %v after unseal", back.Round(10*time.Millisecond)), fmt.Sprintf("%d writes, %d reads 2xx", writes, reads),
		fmt.Sprintf("readyz during %v; KEK rotation during: %d %s in %v; after: %d; secret written during read after: %d; slowest %v (since unseal %v)",
			readyDuring, kekStatus, kekCode, kekTook.Round(time.Millisecond), afterStatus, getStatus, slowest.Round(time.Millisecond), time.Since(unsealed).Round(10*time.Millisecond)))

	if len(kinds) != 0 {
		t.Errorf("secret reads and writes failed while Vault was sealed: %v", kinds)
	}
	if readyDuring {
		t.Errorf("/readyz was 200 while Vault was sealed")
	}
	if kekStatus != 503 || kekCode != "UNAVAILABLE" {
		t.Errorf("KEK rotation while Vault was sealed: %d %s, want 503 UNAVAILABLE", kekStatus, kekBody)
	}
	if slowest > 5*time.Second {
		t.Errorf("an answer took %v while Vault was sealed", slowest)
	}
	if back < 0 {
		t.Errorf("/readyz not 200 within 30 s of the unseal")
	}
	if afterStatus != 202 {
		t.Errorf("KEK rotation after the unseal: %d %s, want 202", afterStatus, afterBody)
	}
	if getStatus != 200 {
		t.Errorf("a secret written during the outage reads back %d", getStatus)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor polls cond every 50 ms for at most d: how long it took, or -1.
func waitFor(d time.Duration, cond func() bool) time.Duration {
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return -1
}
