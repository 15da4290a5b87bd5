package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vectabase/vectabase/keyring/awskms/localkms"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/keyring/pkcs11"
	"github.com/vectabase/vectabase/store/pgtest"
)

// softHSMModule is SoftHSM2's PKCS#11 library on Debian and Ubuntu.
const softHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// softHSM makes a SoftHSM2 token "vectabase" in dir, with an AES-256 key
// "kek" in it when withKey, and returns the environment naming it for the
// pkcs11 backend.
func softHSM(t *testing.T, dir string, withKey bool) []string {
	t.Helper()
	if _, err := pkcs11.GenerateKey(pkcs11.Config{}); errors.Is(err, pkcs11.ErrNoCgo) {
		t.Skip("a build without cgo has no PKCS#11 backend")
	}
	util, err := exec.LookPath("softhsm2-util")
	if _, serr := os.Stat(softHSMModule); err != nil || serr != nil {
		t.Skip("SoftHSM2 is not installed (apt-get install softhsm2)")
	}
	tokens := filepath.Join(dir, "tokens")
	conf := filepath.Join(dir, "softhsm2.conf")
	pinFile := filepath.Join(dir, "hsm.pin")
	for path, content := range map[string][]byte{
		conf:    []byte("directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\n"),
		pinFile: []byte("4711-pin\n"),
	} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	env := []string{"SOFTHSM2_CONF=" + conf}
	for _, args := range [][]string{
		{"--init-token", "--free", "--label", "vectabase", "--pin", "4711-pin", "--so-pin", "so-4711-pin"},
	} {
		cmd := exec.Command(util, args...)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("softhsm2-util %s: %v: %s", args[0], err, out)
		}
	}
	env = append(env, "PKCS11_MODULE="+softHSMModule, "PKCS11_TOKEN_LABEL=vectabase", "PKCS11_PIN_FILE="+pinFile, "PKCS11_KEY_LABEL=kek")
	if !withKey {
		return env
	}
	// The key is generated inside the token, as an operator would. SoftHSM
	// reads SOFTHSM2_CONF when this process first loads it, and no other
	// test of this package loads it in this process.
	os.Setenv("SOFTHSM2_CONF", conf)
	if _, err := pkcs11.GenerateKey(pkcs11.Config{Module: softHSMModule, TokenLabel: "vectabase", PINFile: pinFile, KeyLabel: "kek"}); err != nil {
		t.Fatal(err)
	}
	return env
}

// keys init on the pkcs11 backend generates the key inside the token once,
// wraps the keysets with it, and says so in its audit row.
func TestKeysInitOnPKCS11(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	env := append(baseEnv("DATABASE_URL="+pgtest.URL(t), "KEYRING_BACKEND=pkcs11"), softHSM(t, dir, false)...)
	for i, want := range []bool{true, false} {
		r := run(t, dir, env, "keys", "init", "--json")
		var out struct {
			PKCS11KeyCreated bool `json:"pkcs11KeyCreated"`
			Status           struct {
				KEKBackend, KEKKeyID string
			}
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil {
			t.Fatalf("keys init #%d: exit %d, stdout %q, stderr %q", i+1, r.code, r.stdout, r.stderr)
		}
		if out.PKCS11KeyCreated != want || out.Status.KEKBackend != "pkcs11" || out.Status.KEKKeyID != "vectabase/kek" {
			t.Errorf("keys init #%d = %+v, want key created %v and KEK pkcs11 vectabase/kek", i+1, out, want)
		}
		if strings.Contains(r.stdout+r.stderr, "4711-pin") {
			t.Errorf("keys init printed the PIN")
		}
	}
	if r := run(t, dir, env, "keys", "status"); r.code != 0 || strings.Count(r.stdout, "wrapped by KEK pkcs11 vectabase/kek") != 3 {
		t.Errorf("keys status: exit %d, stdout %q", r.code, r.stdout)
	}
}

// The KEK moves local -> PKCS#11 -> AWS KMS with `keys rotate-kek --to`
// while a server takes a bounded loop of secret writes and reads: no
// request fails, every secret reads back (also from a server restarted on
// AWS KMS alone with the others decrypt-only), and a backup made before the
// move restores after it.
func TestKEKMigrationWhileServing(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	kms := localkms.Start(t)
	hsmEnv := softHSM(t, dir, true)
	key := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	url := pgtest.URL(t)
	common := append(baseEnv("DATABASE_URL="+url, "KEYRING_MASTER_KEY_FILE="+key, "BACKUP_DIR="+filepath.Join(dir, "backups"),
		"AWS_KMS_KEY_ID=alias/vectabase", "AWS_ENDPOINT_URL_KMS="+kms.URL, "AWS_REGION="+localkms.Region,
		"AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=test", "AWS_EC2_METADATA_DISABLED=true",
		"ROTATION_POLL_INTERVAL=50ms", "READYZ_KEK_CACHE=0s"), hsmEnv...)
	// Before the move every instance runs on the local key and can already
	// unwrap under the targets (decrypt-only), so it follows the move.
	before := append(append([]string(nil), common...), "KEYRING_BACKEND=local", "KEYRING_PREVIOUS_KEKS=pkcs11,awskms")
	after := append(append([]string(nil), common...), "KEYRING_BACKEND=awskms", "KEYRING_PREVIOUS_KEKS=local:"+key+",pkcs11")

	cli := func(env []string, stdin string, args ...string) string {
		t.Helper()
		r := runStdin(t, dir, env, stdin, args...)
		if r.code != 0 {
			t.Fatalf("vectabase %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
		}
		return r.stdout
	}
	cli(before, "", "keys", "init")
	const password = "migration test password 1"
	cli(before, password+"\n", "users", "create-admin", "ops@example.com")
	for i := range 5 {
		cli(before, fmt.Sprintf("pre-%d\n", i), "secrets", "put", fmt.Sprintf("pre/%d", i), "-")
	}
	var bk struct{ ID string }
	if err := json.Unmarshal([]byte(cli(before, "", "backup", "create", "--json")), &bk); err != nil || bk.ID == "" {
		t.Fatalf("backup create --json: %v", err)
	}

	srv := startServe(t, before)
	base := "http://" + srv.addr
	token := login(t, base, "ops@example.com", password)

	// The load: writes and reads of secrets, one after another, until the
	// move is done (at most 5000 pairs or 3 minutes).
	var (
		stop              = make(chan struct{})
		wg                sync.WaitGroup
		requests, failed  atomic.Int64
		mu                sync.Mutex
		written           = map[string]string{}
		firstFailure      string
		loadStart         = time.Now()
		client            = http.Client{Timeout: 30 * time.Second}
		doJSON            func(method, path string, body any) (int, []byte, error)
		duringMigrationOK atomic.Int64
		migrating         atomic.Bool
	)
	doJSON = func(method, path string, body any) (int, []byte, error) {
		var rd io.Reader
		if body != nil {
			raw, _ := json.Marshal(body)
			rd = strings.NewReader(string(raw))
		}
		req, _ := http.NewRequest(method, base+path, rd)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, raw, nil
	}
	fail := func(msg string) {
		failed.Add(1)
		mu.Lock()
		if firstFailure == "" {
			firstFailure = msg
		}
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 5000 && time.Since(loadStart) < 3*time.Minute; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name, value := fmt.Sprintf("load/%d", i%50), fmt.Sprintf("value-%d", i)
			requests.Add(1)
			status, raw, err := doJSON("PUT", "/api/secrets/"+name, map[string]string{"value": value})
			if err != nil || status != 200 && status != 201 {
				fail(fmt.Sprintf("PUT %s: %d %s %v", name, status, raw, err))
				continue
			}
			mu.Lock()
			written[name] = value
			mu.Unlock()
			requests.Add(1)
			status, raw, err = doJSON("GET", "/api/secrets/"+name, nil)
			var got struct{ Value string }
			if err != nil || status != 200 || json.Unmarshal(raw, &got) != nil || got.Value != value {
				fail(fmt.Sprintf("GET %s: %d %s %v, want %q", name, status, raw, err, value))
				continue
			}
			if migrating.Load() {
				duringMigrationOK.Add(1)
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // the load is under way
	migrating.Store(true)
	cli(before, "", "keys", "rotate-kek", "--to", "pkcs11")
	status := cli(before, "", "keys", "status")
	if strings.Count(status, "wrapped by KEK pkcs11 vectabase/kek") != 3 {
		t.Errorf("keys status after --to pkcs11 = %q, want all three keysets wrapped by pkcs11", status)
	}
	cli(before, "", "keys", "rotate-kek", "--to", "awskms")
	migrating.Store(false)
	time.Sleep(300 * time.Millisecond) // and goes on after it
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed during the move; first: %s", n, requests.Load(), firstFailure)
	}
	if duringMigrationOK.Load() == 0 {
		t.Fatalf("no write/read pair completed while the KEK moved (%d requests in all)", requests.Load())
	}
	t.Logf("%d requests, %d write/read pairs while the KEK moved, none failed", requests.Load(), duringMigrationOK.Load())

	// The admin view names the backend of every wrap.
	code, raw := httpCall(t, "GET", base+"/api/admin/keys", token, nil)
	var view struct {
		Keysets []struct{ Name, KEKBackend, KEKKeyID string }
	}
	if code != 200 || json.Unmarshal(raw, &view) != nil || len(view.Keysets) != 3 {
		t.Fatalf("GET /api/admin/keys = %d %s", code, raw)
	}
	for _, ks := range view.Keysets {
		if ks.KEKBackend != "awskms" || !strings.Contains(ks.KEKKeyID, localkms.KeyA) {
			t.Errorf("keyset %s wrapped by %s %s, want awskms and the key's ARN", ks.Name, ks.KEKBackend, ks.KEKKeyID)
		}
	}
	// Per-backend readiness and KEK metrics.
	if code, raw := httpCall(t, "GET", base+"/readyz", "", nil); code != 200 {
		t.Errorf("/readyz = %d %s, want 200", code, raw)
	}
	resp, err := http.Get("http://" + srv.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`vectabase_kek_operations_total{backend="awskms",op="health",result="ok"}`,
		`vectabase_kek_operations_total{backend="pkcs11",op="health",result="ok"}`,
		`vectabase_kek_operation_duration_seconds_bucket{backend="local",op="unwrap"`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// A server on AWS KMS, the old KEKs decrypt-only, reads every secret.
	srv2 := startServe(t, after)
	base2 := "http://" + srv2.addr
	token2 := login(t, base2, "ops@example.com", password)
	mu.Lock()
	defer mu.Unlock()
	for name, value := range written {
		code, raw := httpCall(t, "GET", base2+"/api/secrets/"+name, token2, nil)
		var got struct{ Value string }
		if code != 200 || json.Unmarshal(raw, &got) != nil || got.Value != value {
			t.Errorf("GET %s after the move = %d %s, want %q", name, code, raw, value)
		}
	}

	// The backup made before the move restores after it (its key is
	// wrapped by the local KEK, now decrypt-only), and what it held reads
	// back on AWS KMS.
	cli(after, "", "backup", "restore", bk.ID, "--yes")
	for i := range 5 {
		if got := cli(after, "", "secrets", "get", fmt.Sprintf("pre/%d", i)); got != fmt.Sprintf("pre-%d", i) {
			t.Errorf("secrets get pre/%d after restore = %q, want %q", i, got, fmt.Sprintf("pre-%d", i))
		}
	}
}
