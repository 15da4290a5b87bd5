package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgtest"
)

// backupEnv is the environment of a backup command: a fresh migrated
// database, a new local KEK and a backup directory.
func backupEnv(t *testing.T) (dir string, env []string) {
	dir, env, _ = backupEnvURL(t)
	return dir, env
}

func backupEnvURL(t *testing.T) (dir string, env []string, url string) {
	t.Helper()
	dir = tempDir(t)
	key := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	url = pgtest.URL(t)
	return dir, baseEnv("DATABASE_URL="+url, "KEYRING_MASTER_KEY_FILE="+key, "BACKUP_DIR="+filepath.Join(dir, "backups")), url
}

// auditActions lists the backup rows of the audit trail, oldest first.
func auditActions(t *testing.T, url string) []string {
	t.Helper()
	db := pgtest.Open(t, url)
	defer db.Close()
	rows, err := db.Pool.Query(context.Background(), `SELECT action || ':' || result || ':' || actor_type FROM audit_logs WHERE action LIKE 'backup.%' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBackupCLI_CreateListVerifyRestore(t *testing.T) {
	t.Parallel()
	dir, env, url := backupEnvURL(t)

	r := run(t, dir, env, "backup", "create", "--json")
	if r.code != 0 {
		t.Fatalf("backup create: exit %d, stderr %q", r.code, r.stderr)
	}
	var b struct {
		ID        string           `json:"id"`
		RowCounts map[string]int64 `json:"rowCounts"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil || b.ID == "" || len(b.RowCounts) == 0 {
		t.Fatalf("backup create --json printed %q (%v), want the backup as JSON", r.stdout, err)
	}
	// Not a terminal: plain progress lines, no bar redraws.
	if !strings.Contains(r.stderr, "backup: dumping...") || strings.ContainsAny(r.stderr, "\r\x1b") {
		t.Errorf("backup create stderr off a terminal = %q, want plain progress lines", r.stderr)
	}

	r = run(t, dir, env, "backup", "list")
	if r.code != 0 || !strings.Contains(r.stdout, b.ID) {
		t.Errorf("backup list: exit %d, stdout %q; want the backup listed", r.code, r.stdout)
	}
	r = run(t, dir, env, "backup", "list", "--json")
	var list struct {
		Items []struct{ ID string } `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Items) != 1 || list.Items[0].ID != b.ID {
		t.Errorf("backup list --json = %q (%v)", r.stdout, err)
	}

	r = run(t, dir, env, "backup", "verify", b.ID)
	if r.code != 0 || !strings.Contains(r.stdout, "OK") {
		t.Errorf("backup verify: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// restore without --yes is a usage error and touches nothing.
	r = run(t, dir, env, "backup", "restore", b.ID)
	if r.code != 2 || !strings.Contains(lastLine(r.stderr), "--yes") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("backup restore without --yes: exit %d, stderr %q; want 2 and one line asking for --yes", r.code, r.stderr)
	}
	r = run(t, dir, env, "backup", "restore", b.ID, "--yes", "--json")
	var res struct {
		ID     string `json:"id"`
		Tables int    `json:"tables"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.ID != b.ID || res.Tables != len(b.RowCounts) {
		t.Errorf("backup restore --yes --json: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// The create and verify rows were written after the dump, so the
	// restore rewound past them; its own row follows.
	if got, want := strings.Join(auditActions(t, url), " "), "backup.restore:success:local-operator"; got != want {
		t.Errorf("audit rows after restore: %q, want %q", got, want)
	}

	r = run(t, dir, env, "backup", "delete", b.ID)
	if r.code != 0 {
		t.Errorf("backup delete: exit %d, stderr %q", r.code, r.stderr)
	}
	r = run(t, dir, env, "backup", "delete", b.ID)
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "not found") {
		t.Errorf("backup delete (again): exit %d, stderr %q; want 1 and 'not found'", r.code, r.stderr)
	}
	want := "backup.restore:success:local-operator backup.delete:success:local-operator backup.delete:failure:local-operator"
	if got := strings.Join(auditActions(t, url), " "); got != want {
		t.Errorf("audit rows: %q, want %q", got, want)
	}
}

func TestBackupCLI_UsageAndClearFailures(t *testing.T) {
	t.Parallel()
	dir, env := backupEnv(t)
	for _, args := range [][]string{{"backup"}, {"backup", "verify"}, {"backup", "restore"}, {"backup", "create", "extra"}, {"backup", "sideways"}} {
		if r := run(t, dir, env, args...); r.code != 2 {
			t.Errorf("vectabase %v: exit %d, want 2 (stderr %q)", args, r.code, r.stderr)
		}
	}
	if r := run(t, dir, env, "backup", "-h"); r.code != 0 || !strings.Contains(r.stdout, "restore") {
		t.Errorf("backup -h: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := run(t, dir, env, "backup", "verify", "../../etc/passwd"); r.code != 1 || !strings.Contains(lastLine(r.stderr), "not a backup id") {
		t.Errorf("backup verify with a path: exit %d, stderr %q", r.code, r.stderr)
	}

	r := run(t, dir, env, "backup", "create", "--json")
	var b struct{ ID string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &b) != nil {
		t.Fatalf("backup create: exit %d, stderr %q", r.code, r.stderr)
	}

	// Another KEK: one clear line, no key material.
	other := filepath.Join(dir, "other.key")
	if err := local.GenerateKeyFile(other); err != nil {
		t.Fatal(err)
	}
	otherEnv := append(append([]string{}, env...), "KEYRING_MASTER_KEY_FILE="+other)
	r = run(t, dir, otherEnv, "backup", "restore", b.ID, "--yes")
	t.Logf("restore with another KEK: %s", lastLine(r.stderr))
	keyText, _ := os.ReadFile(other)
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "KEK") || strings.Contains(r.stderr, strings.TrimSpace(string(keyText))) {
		t.Errorf("backup restore with another KEK: exit %d, stderr %q; want 1 and a line naming the KEK", r.code, r.stderr)
	}

	// A damaged file: one clear line.
	path := filepath.Join(dir, "backups", b.ID+".vbak")
	raw, _ := os.ReadFile(path)
	raw[len(raw)/2] ^= 1
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	r = run(t, dir, env, "backup", "verify", b.ID)
	t.Logf("verify of a damaged file: %q", r.stderr)
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "altered") {
		t.Errorf("backup verify of a damaged file: exit %d, stderr %q; want 1 and a line saying it was altered", r.code, r.stderr)
	}
}

// On a terminal the progress is a bar that redraws in place.
func TestBackupCLI_ProgressBarOnTerminal(t *testing.T) {
	t.Parallel()
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) not installed: no pseudo-terminal to run under")
	}
	dir, env := backupEnv(t)
	cmd := exec.Command(script, "-qefc", binary+" backup create", "/dev/null")
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("backup create under script: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "\r") || !strings.Contains(string(out), "dumping") || strings.Contains(string(out), "backup: dumping...") {
		t.Errorf("backup create on a terminal printed %q, want a redrawn bar, not plain lines", out)
	}
}

// serve refuses a schedule it cannot follow, with one clear line.
func TestServeRefusesBadBackupSchedule(t *testing.T) {
	t.Parallel()
	dir, env := backupEnv(t)
	for _, tc := range []struct{ env, want string }{
		{"BACKUP_SCHEDULE=daily", "BACKUP_SCHEDULE"},
		{"BACKUP_SCHEDULE=5s", "shorter than"},
		{"BACKUP_KEEP=0\x00BACKUP_SCHEDULE=@daily", "BACKUP_KEEP"},
	} {
		e := append(append([]string{}, env...), strings.Split(tc.env, "\x00")...)
		r := run(t, dir, append(e, "HTTP_ADDR=127.0.0.1:0", "METRICS_ADDR=127.0.0.1:0"), "serve")
		if r.code != 1 || !strings.Contains(lastLine(r.stderr), tc.want) {
			t.Errorf("serve with %s: exit %d, last line %q; want 1 and %q", tc.env, r.code, lastLine(r.stderr), tc.want)
		}
	}
}
