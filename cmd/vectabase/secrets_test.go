package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// run executes the command line with stdin, returning stdout and the error.
func run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	go func() { inW.WriteString(stdin); inW.Close() }()
	oldIn, oldOut := os.Stdin, os.Stdout
	os.Stdin, os.Stdout = inR, outW
	done := make(chan string)
	go func() { b, _ := io.ReadAll(outR); done <- string(b) }()
	root := newRootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	outW.Close()
	os.Stdin, os.Stdout = oldIn, oldOut
	return <-done, err
}

// TestSecretsAndAuditCLI drives the CLI end to end: put (argument and
// stdin), get, list, versions, delete, and audit verify before and after
// an audit row is changed in SQL.
func TestSecretsAndAuditCLI(t *testing.T) {
	url := pgtest.URL(t)
	key := filepath.Join(t.TempDir(), "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DATABASE_URL", url)
	t.Setenv("KEYRING_MASTER_KEY_FILE", key)
	t.Chdir(t.TempDir())

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
		out, err := run(t, s.stdin, s.args...)
		if err != nil || !strings.Contains(out, s.want) {
			t.Fatalf("vectabase %s = %q, %v; want output holding %q", strings.Join(s.args, " "), out, err, s.want)
		}
	}
	if out, _ := run(t, "", "secrets", "get", "app/api_key"); out != "no-arg" {
		t.Errorf("get printed %q, want the bare value", out)
	}
	if out, _ := run(t, "", "secrets", "list"); strings.Contains(out, "no-arg") || strings.Contains(out, "first") {
		t.Errorf("list printed a value: %q", out)
	}
	if _, err := run(t, "", "secrets", "put", "app/api_key", "x", "--expected-version", "1"); err == nil || !strings.Contains(err.Error(), "current version is 3") {
		t.Errorf("put with a stale --expected-version err = %v, want a conflict", err)
	}
	if _, err := run(t, "", "secrets", "get", "bad//name"); err == nil {
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
	_, err = run(t, "", "audit", "verify")
	if err == nil || !strings.Contains(err.Error(), "row "+strconv.FormatInt(id, 10)+":") {
		t.Fatalf("audit verify after tampering err = %v, want it to name row %d", err, id)
	}
	if _, err := run(t, "", "secrets", "delete", "app/api_key"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "", "secrets", "get", "app/api_key"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("get after delete err = %v, want not found", err)
	}
}
