package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/admin"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault/audit"
)

// TestPublicCheckpointRoutes: without any credentials, the checkpoint and
// its key are served as text, and the checkpoint verifies with the key and
// covers the rows written so far; a row's proof checks out against it.
func TestPublicCheckpointRoutes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	l := audit.New(db, kr, zerolog.Nop(), nil)
	t.Cleanup(l.Close)
	for i := range 4 {
		if err := l.Record(ctx, vectabase.AuditEvent{ActorType: vectabase.ActorSystem, Action: "test.event", Result: vectabase.ResultAllowed, ResourceID: string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	c := audit.NewCheckpointer(db, kr, audit.CheckpointConfig{}, zerolog.Nop())
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount(admin.CheckpointRoutes(c))
	get := func(path string) (int, string, string) {
		resp, err := srv.App().Test(httptest.NewRequest("GET", path, nil), -1)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	status, ctype, cp := get("/api/audit/checkpoint")
	if status != 200 || !strings.HasPrefix(ctype, "text/plain") {
		t.Fatalf("GET /api/audit/checkpoint = %d %s %q", status, ctype, cp)
	}
	status, _, vkey := get("/api/audit/checkpoint/key")
	if status != 200 {
		t.Fatalf("GET /api/audit/checkpoint/key = %d", status)
	}
	parsed, err := audit.ParseCheckpoint([]byte(cp), vkey)
	if err != nil || parsed.Size != 4 {
		t.Fatalf("ParseCheckpoint(served) = %+v, %v; want size 4", parsed, err)
	}
	p, err := l.ProveInclusion(ctx, c, 2, []byte(cp))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(p)
	if _, err := audit.CheckProof(raw, []byte(cp), vkey); err != nil {
		t.Fatalf("CheckProof against the served checkpoint: %v", err)
	}
	if status, _, body := get("/api/audit/checkpoint/nope"); status != 404 || !strings.Contains(body, `"NOT_FOUND"`) {
		t.Fatalf("unknown route = %d %q, want the contract's 404", status, body)
	}
}
