package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TestServeProofRoutesCheckedByCLI: the proofs `serve` hands out over HTTP
// (inclusion for an admin, consistency for anyone) are what `vectabase
// audit check-proof` accepts with only the verifier key and, for the
// consistency proof, the checkpoint a witness kept.
func TestServeProofRoutesCheckedByCLI(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	keyFile := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	const password = "correct horse battery staple 43"
	env := baseEnv("DATABASE_URL="+pgtest.URL(t), "KEYRING_MASTER_KEY_FILE="+keyFile,
		"ADMIN_EMAIL=ops@example.com", "ADMIN_PASSWORD="+password, "AUDIT_CHECKPOINT_EVERY=off")
	s := startServe(t, env)
	base := "http://" + s.addr
	get := func(path, token string) []byte {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
		}
		return b
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kept := get("/api/audit/checkpoint", "") // a witness keeps this one
	vkey := strings.TrimSpace(string(get("/api/audit/checkpoint/key", "")))
	token := login(t, base, "ops@example.com", password) // more audit rows
	var page struct {
		Items []struct {
			ID int64 `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(get("/api/admin/audit?limit=1", token), &page); err != nil || len(page.Items) != 1 {
		t.Fatalf("GET /api/admin/audit: %+v, %v", page, err)
	}
	row := page.Items[0].ID
	// Without size the inclusion proof is against a checkpoint signed now,
	// which is stored: the consistency proof then reaches it.
	inclusion := write("inclusion.json", get("/api/audit/proof/inclusion?row="+strconv.FormatInt(row, 10), token))
	lines := strings.Split(string(kept), "\n") // origin, size, root, signature
	if n, err := strconv.Atoi(lines[min(1, len(lines)-1)]); err != nil || n <= 0 {
		t.Fatalf("kept checkpoint %q: want one of at least one row", kept)
	}
	consistency := write("consistency.json", get("/api/audit/proof/consistency?from="+lines[1], ""))
	keptFile := write("kept.checkpoint", kept)

	bare := []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	r := run(t, dir, bare, "audit", "check-proof", "--key", vkey, "--proof", inclusion)
	if r.code != 0 || !strings.Contains(r.stdout, "row "+strconv.FormatInt(row, 10)+" is leaf") {
		t.Fatalf("check-proof (inclusion from the route) = exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, dir, bare, "audit", "check-proof", "--key", vkey, "--proof", consistency, "--checkpoint", keptFile)
	if r.code != 0 || !strings.Contains(r.stdout, "extends the kept checkpoint of "+lines[1]+" rows") {
		t.Fatalf("check-proof (consistency from the route) = exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
}
