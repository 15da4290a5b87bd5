package main

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault/alerts/alertstest"
)

// TestServeAlertsReachTheWebhook runs two `serve` instances on one
// database with ALERT_WEBHOOK_URL pointing at a local webhook, and checks
// what an operator would: a backup that cannot be written (BACKUP_DIR is a
// file, an injected write error) and a DEK rotation that no instance works
// on (ROTATION_WORKER_DISABLED, ROTATION_STALL_AFTER=1s) each reach the
// webhook as exactly one Slack/Discord-compatible {text, content} POST,
// although both instances deliver and watch, and no alert holds a secret.
func TestServeAlertsReachTheWebhook(t *testing.T) {
	t.Parallel()
	hook := &alertstest.Hook{}
	wh := httptest.NewServer(hook)
	t.Cleanup(wh.Close)
	dir := tempDir(t)
	keyFile := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "backups-is-a-file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := pgtest.URL(t)
	const password = "correct horse battery staple 42"
	env := baseEnv("DATABASE_URL="+url, "KEYRING_MASTER_KEY_FILE="+keyFile, "BACKUP_DIR="+notDir,
		"ADMIN_EMAIL=ops@example.com", "ADMIN_PASSWORD="+password, "ALERT_WEBHOOK_URL="+wh.URL,
		"ROTATION_WORKER_DISABLED=true", "ROTATION_STALL_AFTER=1s", "ROTATION_SETTLE=0s")
	a := startServe(t, env)
	startServe(t, env) // a second instance: it delivers and watches too
	waitAlert := func(what string) []string {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for len(hook.Matching(what)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no alert with %q reached the webhook within a minute", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Several more delivery and watch rounds of both instances.
		time.Sleep(3 * time.Second)
		return hook.Matching(what)
	}

	// A backup through instance a's admin API fails to be written.
	token := login(t, "http://"+a.addr, "ops@example.com", password)
	status, raw := httpCall(t, "POST", "http://"+a.addr+"/api/admin/backups", token, map[string]any{})
	if status/100 == 2 || !strings.Contains(string(raw), `"error"`) {
		t.Fatalf("POST /api/admin/backups into a file = %d %s, want the contract's error", status, raw)
	}
	if got := waitAlert("backup "); len(got) != 1 || !strings.Contains(got[0], "failed") {
		t.Fatalf("backup alerts = %q, want exactly one", got)
	}

	// A DEK rotation started from the command line that nobody works on.
	r := run(t, dir, env, "keys", "rotate-dek", "--json")
	if r.code != 0 {
		t.Fatalf("keys rotate-dek: exit %d, stderr %q", r.code, r.stderr)
	}
	var job struct {
		JobID string `json:"jobId"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &job); err != nil || job.JobID == "" {
		t.Fatalf("rotate-dek --json printed %q: %v", r.stdout, err)
	}
	if got := waitAlert("rotation job " + job.JobID + " has made no progress"); len(got) != 1 {
		t.Fatalf("stall alerts = %q, want exactly one", got)
	}

	bodies := hook.Bodies()
	if hook.Bad() != 0 || len(bodies) != 2 {
		t.Fatalf("webhook got %d alerts and %d malformed requests, want 2 and 0: %v", len(bodies), hook.Bad(), bodies)
	}
	key, _ := os.ReadFile(keyFile)
	for _, m := range bodies {
		for _, secret := range []string{password, token, strings.TrimSpace(string(key)), url, notDir} {
			if strings.Contains(m["text"], secret) {
				t.Errorf("alert %q holds a secret or a path", m["text"])
			}
		}
	}
}
