package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TestAuditProofsCLI: a kept checkpoint, proofs checked by check-proof with
// only the verifier key (no database in its environment), then a delete-all
// that audit verify --checkpoint catches.
func TestAuditProofsCLI(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	dir := tempDir(t)
	key := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	env := baseEnv("DATABASE_URL="+url, "KEYRING_MASTER_KEY_FILE="+key)
	run := func(env []string, args ...string) (string, error) {
		t.Helper()
		r := runStdin(t, dir, env, "", args...)
		if r.code != 0 {
			if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || r.code != 1 {
				t.Errorf("vectabase %v: exit %d, stderr %q; want exit 1 with one line", args, r.code, r.stderr)
			}
			return r.stdout, errors.New(strings.TrimSpace(r.stderr))
		}
		return r.stdout, nil
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(env, args...)
		if err != nil {
			t.Fatalf("vectabase %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, v := range []string{"a", "b", "c"} {
		must("secrets", "put", "app/"+v, v)
	}
	kept := write("kept.checkpoint", must("audit", "checkpoint"))
	vkey := strings.TrimSpace(must("audit", "checkpoint", "--key"))
	must("secrets", "put", "app/d", "d")
	if out := must("audit", "verify", "--checkpoint", kept); !strings.Contains(out, "consistent with the kept checkpoint of 3 rows") {
		t.Fatalf("audit verify --checkpoint = %q", out)
	}
	// The checker needs nothing but the files and the key.
	bare := []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	proof := write("row.proof", must("audit", "prove", "2", "--checkpoint", kept))
	if out, err := run(bare, "audit", "check-proof", "--proof", proof, "--checkpoint", kept, "--key", vkey); err != nil || !strings.Contains(out, "row 2 is leaf") {
		t.Fatalf("check-proof (inclusion) = %q, %v", out, err)
	}
	cons := write("cons.proof", must("audit", "prove", "--from", kept))
	if out, err := run(bare, "audit", "check-proof", "--proof", cons, "--checkpoint", kept, "--key", write("vkey", vkey)); err != nil || !strings.Contains(out, "extends the kept checkpoint of 3 rows") {
		t.Fatalf("check-proof (consistency) = %q, %v", out, err)
	}
	if _, err := run(bare, "audit", "check-proof", "--proof", cons, "--key", vkey); err == nil {
		t.Fatal("check-proof of a consistency proof without the kept checkpoint succeeded")
	}
	if r := runStdin(t, dir, bare, "", "audit", "check-proof", "--proof", proof); r.code != 2 {
		t.Fatalf("check-proof without --key: exit %d, want 2", r.code)
	}
	if r := runStdin(t, dir, env, "", "audit", "prove"); r.code != 2 {
		t.Fatalf("prove without ROW_ID or --from: exit %d, want 2", r.code)
	}

	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `DELETE FROM audit_logs; DELETE FROM audit_chain_head`); err != nil {
		t.Fatal(err)
	}
	// The chain alone sees an empty, intact log; the checkpoint does not.
	must("audit", "verify")
	if _, err := run(env, "audit", "verify", "--checkpoint", kept); err == nil || !strings.Contains(err.Error(), "rows were deleted") {
		t.Fatalf("audit verify --checkpoint after delete-all err = %v, want rows were deleted", err)
	}
	// The failure raised one alert; the same finding again is no new one.
	_, _ = run(env, "audit", "verify", "--checkpoint", kept)
	var alerts int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM alerts_outbox WHERE kind = 'audit_verification_failed'`).Scan(&alerts); err != nil || alerts != 1 {
		t.Fatalf("%d audit_verification_failed alerts (%v), want 1", alerts, err)
	}
}
