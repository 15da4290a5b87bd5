package main

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgtest"
)

// runStdin runs the binary like run does, with stdin.
func runStdin(t *testing.T, dir string, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir, cmd.Env, cmd.Stdin = dir, env, strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

// TestSecretsAndAuditCLI drives the CLI end to end: put (argument and
// stdin), get, list, versions, delete, and audit verify before and after
// an audit row is changed in SQL.
func TestSecretsAndAuditCLI(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	dir := tempDir(t)
	key := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	env := baseEnv("DATABASE_URL="+url, "KEYRING_MASTER_KEY_FILE="+key)
	run := func(stdin string, args ...string) (string, error) {
		t.Helper()
		r := runStdin(t, dir, env, stdin, args...)
		if r.code != 0 {
			if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || r.code != 1 {
				t.Errorf("vectabase %v: exit %d, stderr %q; want exit 1 with one line", args, r.code, r.stderr)
			}
			return r.stdout, errors.New(strings.TrimSpace(r.stderr))
		}
		return r.stdout, nil
	}

	steps := []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"secrets", "put", "app/api_key", "first"}, "app/api_key: version 1"},
		{"from-stdin\n", []string{"secrets", "put", "app/api_key", "-"}, "app/api_key: version 2"},
		{"no-arg\n", []string{"secrets", "put", "app/api_key"}, "app/api_key: version 3"},
		{"", []string{"secrets", "get", "app/api_key"}, "no-arg"},
		{"", []string{"secrets", "get", "app/api_key", "--version", "2"}, "from-stdin"},
		{"", []string{"secrets", "list"}, "app/api_key"},
		{"", []string{"secrets", "versions", "app/api_key"}, "local-operator"},
		{"", []string{"secrets", "list", "--json"}, `"name": "app/api_key"`},
		{"", []string{"audit", "verify"}, "audit log OK: 8 rows"},
	}
	for _, s := range steps {
		out, err := run(s.stdin, s.args...)
		if err != nil || !strings.Contains(out, s.want) {
			t.Fatalf("vectabase %s = %q, %v; want output holding %q", strings.Join(s.args, " "), out, err, s.want)
		}
	}
	if out, _ := run("", "secrets", "get", "app/api_key"); out != "no-arg" {
		t.Errorf("get printed %q, want the bare value", out)
	}
	if out, _ := run("", "secrets", "list"); strings.Contains(out, "no-arg") || strings.Contains(out, "first") {
		t.Errorf("list printed a value: %q", out)
	}
	if _, err := run("", "secrets", "put", "app/api_key", "x", "--expected-version", "1"); err == nil || !strings.Contains(err.Error(), "current version is 3") {
		t.Errorf("put with a stale --expected-version err = %v, want a conflict", err)
	}
	if _, err := run("", "secrets", "get", "bad//name"); err == nil {
		t.Error("get of an invalid name succeeded")
	}

	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var id int64
	if err := conn.QueryRow(context.Background(), `SELECT id FROM audit_logs ORDER BY id OFFSET 2 LIMIT 1`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), `UPDATE audit_logs SET actor_type = 'user' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	_, err = run("", "audit", "verify")
	if err == nil || !strings.Contains(err.Error(), "row "+strconv.FormatInt(id, 10)+":") {
		t.Fatalf("audit verify after tampering err = %v, want it to name row %d", err, id)
	}
	if _, err := run("", "secrets", "delete", "app/api_key"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("", "secrets", "get", "app/api_key"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("get after delete err = %v, want not found", err)
	}
}

// Redirected, `secrets get` prints the value's exact bytes: no newline is
// added after one that has none, and trailing newlines, carriage returns
// and bytes that are not UTF-8 come out as they went in.
func TestSecretsGetPrintsTheExactBytes(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	key := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	env := baseEnv("DATABASE_URL="+pgtest.URL(t), "KEYRING_MASTER_KEY_FILE="+key)
	for i, value := range []string{"no newline", "two\nlines\n\n", "crlf\r\n", "\xff\x01bin\xfe"} {
		name := "exact/" + strconv.Itoa(i)
		if r := runStdin(t, dir, env, "", "secrets", "put", name, value); r.code != 0 {
			t.Fatalf("put %q: exit %d, stderr %q", value, r.code, r.stderr)
		}
		if r := runStdin(t, dir, env, "", "secrets", "get", name); r.code != 0 || r.stdout != value {
			t.Errorf("get %s = %q (exit %d, stderr %q), want exactly %q", name, r.stdout, r.code, r.stderr, value)
		}
	}
	// On a terminal the value ends with a newline, so the prompt that
	// follows starts on a line of its own.
	master, slave, err := openPTY()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer master.Close()
	cmd := exec.Command(binary, "secrets", "get", "exact/0")
	cmd.Dir, cmd.Env, cmd.Stdout = dir, env, slave
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	slave.Close()
	if err != nil {
		t.Fatalf("get on a terminal: %v, stderr %q", err, stderr.String())
	}
	out, _ := io.ReadAll(master) // EIO once the terminal's last writer closed
	if string(out) != "no newline\r\n" {
		t.Errorf("get on a terminal printed %q, want the value and a newline", out)
	}
}
