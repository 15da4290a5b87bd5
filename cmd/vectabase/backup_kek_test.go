package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// keys rotate-kek re-wraps the kept backups with the keysets: afterwards
// backup list names the new KEK for each, and the new key alone verifies
// them. A manual and a scheduled-looking list both show their kind.
func TestRotateKEKRewrapsBackups(t *testing.T) {
	t.Parallel()
	dir, env, url := backupEnvURL(t)
	r := run(t, dir, env, "backup", "create", "--json")
	if r.code != 0 {
		t.Fatalf("backup create: exit %d, %s", r.code, r.stderr)
	}
	var b struct{ ID, KEK, Kind string }
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil || b.KEK == "" || b.Kind != "manual" {
		t.Fatalf("backup create JSON: %v %s", err, r.stdout)
	}
	newKey := filepath.Join(dir, "new.key")
	r = run(t, dir, env, "keys", "rotate-kek", "--new-key-file", newKey)
	if r.code != 0 || !strings.Contains(r.stdout, "1 backup(s)") {
		t.Fatalf("rotate-kek: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	env2 := append(append([]string{}, env...), "KEYRING_MASTER_KEY_FILE="+newKey)
	r = run(t, dir, env2, "backup", "list", "--json")
	var list struct {
		Items []struct{ ID, KEK, Kind string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Items) != 1 {
		t.Fatalf("backup list: %v %s", err, r.stdout)
	}
	if got := list.Items[0]; got.ID != b.ID || got.KEK == b.KEK || got.KEK == "" || got.Kind != "manual" {
		t.Errorf("after rotate-kek, list shows %+v; want %s under a KEK other than %s", got, b.ID, b.KEK)
	}
	r = run(t, dir, env2, "backup", "list")
	if !strings.Contains(r.stdout, "KEK") || !strings.Contains(r.stdout, list.Items[0].KEK) || !strings.Contains(r.stdout, "manual") {
		t.Errorf("backup list table lacks the kind and KEK columns:\n%s", r.stdout)
	}
	if r := run(t, dir, env2, "backup", "verify", b.ID); r.code != 0 {
		t.Errorf("verify with the new KEK: exit %d, %s", r.code, r.stderr)
	}
	if acts := strings.Join(auditActions(t, url), " "); !strings.Contains(acts, "backup.rewrap:success:local-operator") {
		t.Errorf("audit has no rewrap row: %s", acts)
	}
}
