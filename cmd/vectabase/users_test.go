package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgtest"
)

// httpCall sends a JSON request to a running server and returns the status
// and body.
func httpCall(t *testing.T, method, url, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// login signs in on a running server and returns the access token.
func login(t *testing.T, base, email, password string) string {
	t.Helper()
	status, raw := httpCall(t, "POST", base+"/api/auth/login", "", map[string]string{"email": email, "password": password})
	var res struct{ Token string }
	if status != 200 || json.Unmarshal(raw, &res) != nil || res.Token == "" {
		t.Fatalf("login %s = %d %s", email, status, raw)
	}
	return res.Token
}

// `vectabase users create-admin` and `set-role` as an operator uses them:
// a generated password printed once that signs in, a chosen one from
// stdin, refusals with exit 1 or 2 and one line, audit rows that hold no
// password, and a role change that holds on the user's next request with
// the token the user already had.
func TestUsersCLI(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	dir := tempDir(t)
	key := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	env := baseEnv("DATABASE_URL="+url, "KEYRING_MASTER_KEY_FILE="+key)
	cli := func(stdin string, want int, args ...string) result {
		t.Helper()
		r := runStdin(t, dir, env, stdin, args...)
		if r.code != want {
			t.Fatalf("vectabase %s: exit %d (stdout %q, stderr %q), want %d", strings.Join(args, " "), r.code, r.stdout, r.stderr, want)
		}
		if want != 0 && strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("vectabase %s: stderr %q, want one line", strings.Join(args, " "), r.stderr)
		}
		return r
	}

	// No stdin: a generated password, printed once.
	r := cli("", 0, "users", "create-admin", "Root@Example.com")
	var generated string
	for _, line := range strings.Split(r.stdout, "\n") {
		if p, ok := strings.CutPrefix(line, "admin password: "); ok {
			generated = p
		}
	}
	if !strings.Contains(r.stdout, "admin email: root@example.com\n") || len(generated) < 16 {
		t.Fatalf("create-admin printed %q, want the email and a generated password", r.stdout)
	}
	// A password on stdin (one trailing newline dropped), JSON out.
	const chosen = "chosen password 1"
	r = cli(chosen+"\n", 0, "users", "create-admin", "ops@example.com", "--json")
	var created map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || created["role"] != "admin" || created["email"] != "ops@example.com" || created["id"] == "" {
		t.Fatalf("create-admin --json printed %q (%v)", r.stdout, err)
	}
	if _, ok := created["password"]; ok || strings.Contains(r.stdout, chosen) {
		t.Errorf("create-admin --json printed the chosen password: %q", r.stdout)
	}

	// Refusals.
	if r := cli("another password", 1, "users", "create-admin", "ROOT@example.com"); !strings.Contains(r.stderr, "already exists") || !strings.Contains(r.stderr, "set-role") {
		t.Errorf("create-admin of an existing email: stderr %q, want it to say so and point at set-role", r.stderr)
	}
	cli("long enough password", 1, "users", "create-admin", "not-an-email")
	cli("short", 1, "users", "create-admin", "short@example.com")
	if r := cli("", 1, "users", "set-role", "nobody@example.com", "admin"); !strings.Contains(r.stderr, "no user with email nobody@example.com") {
		t.Errorf("set-role of an unknown email: stderr %q", r.stderr)
	}
	cli("", 2, "users", "set-role", "ops@example.com", "superuser")
	cli("", 2, "users", "set-role", "ops@example.com")
	cli("", 2, "users", "create-admin")
	cli("", 2, "users")
	cli("", 0, "users", "set-role", "-h")

	// The role change holds on the user's next request, with the token
	// issued before it.
	s := startServe(t, env)
	base := "http://" + s.addr
	if status, raw := httpCall(t, "POST", base+"/api/auth/register", "", map[string]string{"email": "player@example.com", "password": "player password"}); status != 201 {
		t.Fatalf("register = %d %s", status, raw)
	}
	player := login(t, base, "player@example.com", "player password")
	if status, _ := httpCall(t, "GET", base+"/api/admin/audit", player, nil); status != 403 {
		t.Fatalf("GET /api/admin/audit as a user = %d, want 403", status)
	}
	if r := cli("", 0, "users", "set-role", "Player@example.com", "admin"); r.stdout != "player@example.com: role admin (was user)\n" {
		t.Errorf("set-role printed %q", r.stdout)
	}
	if status, raw := httpCall(t, "GET", base+"/api/admin/audit", player, nil); status != 200 {
		t.Fatalf("GET /api/admin/audit after set-role admin = %d %s, want 200 with the same token", status, raw)
	}
	r = cli("", 0, "users", "set-role", "player@example.com", "user", "--json")
	var changed map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &changed); err != nil || changed["role"] != "user" || changed["previousRole"] != "admin" {
		t.Errorf("set-role --json printed %q (%v)", r.stdout, err)
	}
	if status, _ := httpCall(t, "GET", base+"/api/admin/audit", player, nil); status != 403 {
		t.Fatalf("GET /api/admin/audit after set-role user = %d, want 403", status)
	}
	// Both new admins sign in and are admins.
	for email, pw := range map[string]string{"root@example.com": generated, "ops@example.com": chosen} {
		if status, raw := httpCall(t, "GET", base+"/api/admin/audit", login(t, base, email, pw), nil); status != 200 {
			t.Errorf("GET /api/admin/audit as %s = %d %s, want 200", email, status, raw)
		}
	}

	// Audited as the local operator, with no password anywhere in the rows.
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT action, actor_type, a::text FROM audit_logs a WHERE action LIKE 'user.%' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var action, actor, text string
		if err := rows.Scan(&action, &actor, &text); err != nil {
			t.Fatal(err)
		}
		got = append(got, action+":"+actor)
		for _, pw := range []string{generated, chosen} {
			if strings.Contains(text, pw) {
				t.Errorf("audit row %s holds a password: %s", action, text)
			}
		}
	}
	want := "user.create_admin:local-operator user.create_admin:local-operator user.set_role:local-operator user.set_role:local-operator"
	if strings.Join(got, " ") != want {
		t.Errorf("audit rows = %v, want %s", got, want)
	}
	if r := cli("", 0, "audit", "verify"); !strings.Contains(r.stdout, "audit log OK") {
		t.Errorf("audit verify printed %q", r.stdout)
	}
}
