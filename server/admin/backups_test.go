package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/admin"
	"github.com/vectabase/vectabase/store/backup"
	"github.com/vectabase/vectabase/store/pgtest"
)

type recorder struct {
	mu     sync.Mutex
	events []vectabase.AuditEvent
}

func (r *recorder) Record(_ context.Context, ev vectabase.AuditEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

// requireAdmin stands in for auth.(*Service).RequireAdmin: the route
// table's contract is only that every route runs it first. X-Test-Role
// plays the token: none is 401, a non-admin role 403.
func requireAdmin(c *fiber.Ctx) error {
	switch c.Get("X-Test-Role") {
	case "":
		return vectabase.Errorf(vectabase.EUNAUTHORIZED, "missing bearer token")
	case "admin":
		server.SetActor(c, server.Actor{Type: vectabase.ActorUser, ID: "admin-user-id"})
		return c.Next()
	default:
		return vectabase.Errorf(vectabase.EFORBIDDEN, "admin role required")
	}
}

type env struct {
	app   *fiber.App
	dir   string
	audit *recorder
}

func newEnv(t *testing.T) *env {
	t.Helper()
	key := filepath.Join(t.TempDir(), "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	kek, err := local.NewFromFile(key)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{dir: t.TempDir(), audit: &recorder{}}
	svc, err := backup.New(backup.Config{Dir: e.dir}, pgtest.URL(t), kek, backup.WithAuditor(e.audit))
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount(admin.BackupRoutes(svc, requireAdmin))
	e.app = srv.App()
	return e
}

func (e *env) do(t *testing.T, method, path, role, body string) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if role != "" {
		req.Header.Set("X-Test-Role", role)
	}
	resp, err := e.app.Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: body %q is not a JSON object", method, path, raw)
		}
	}
	if resp.StatusCode >= 400 {
		for _, k := range []string{"error", "message", "requestId", "timestamp"} {
			if _, ok := out[k]; !ok {
				t.Errorf("%s %s: error body %s lacks %q", method, path, raw, k)
			}
		}
	}
	return resp.StatusCode, out
}

func TestBackupRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const base = "/api/admin/backups"

	for _, tc := range []struct{ method, path string }{
		{"GET", base}, {"POST", base}, {"GET", base + "/20260109T120000Z-1a2b3c4d"},
		{"POST", base + "/20260109T120000Z-1a2b3c4d/verify"}, {"POST", base + "/20260109T120000Z-1a2b3c4d/restore"},
		{"DELETE", base + "/20260109T120000Z-1a2b3c4d"},
	} {
		if code, _ := e.do(t, tc.method, tc.path, "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d, want 401", tc.method, tc.path, code)
		}
		if code, _ := e.do(t, tc.method, tc.path, "user", ""); code != http.StatusForbidden {
			t.Errorf("%s %s as a user: %d, want 403", tc.method, tc.path, code)
		}
	}

	code, b := e.do(t, "POST", base, "admin", "")
	id, _ := b["id"].(string)
	if code != http.StatusCreated || !backup.ValidID(id) || b["rowCounts"] == nil || b["sha256"] == nil {
		t.Fatalf("POST %s: %d %v, want 201 with the backup", base, code, b)
	}
	if code, list := e.do(t, "GET", base, "admin", ""); code != 200 || len(list["items"].([]any)) != 1 {
		t.Errorf("GET %s: %d %v, want one item", base, code, list)
	}
	if code, got := e.do(t, "GET", base+"/"+id, "admin", ""); code != 200 || got["id"] != id {
		t.Errorf("GET one: %d %v", code, got)
	}
	if code, got := e.do(t, "POST", base+"/"+id+"/verify", "admin", "{}"); code != 200 || got["ok"] != true {
		t.Errorf("POST verify: %d %v, want ok", code, got)
	}
	if code, got := e.do(t, "POST", base+"/"+id+"/restore", "admin", `{"confirm":true}`); code != 400 {
		t.Errorf("POST restore with an unknown field: %d %v, want 400", code, got)
	}
	if code, got := e.do(t, "POST", base+"/"+id+"/restore", "admin", ""); code != 200 || got["id"] != id {
		t.Errorf("POST restore: %d %v, want 200", code, got)
	}

	// A damaged file is a clear 400, never a 500.
	path := filepath.Join(e.dir, id+".vbak")
	raw, _ := os.ReadFile(path)
	raw[len(raw)/2] ^= 1
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, got := e.do(t, "POST", base+"/"+id+"/verify", "admin", ""); code != 400 || got["error"] != "VALIDATION_FAILED" || !strings.Contains(fmt.Sprint(got["message"]), "altered") {
		t.Errorf("POST verify of a damaged backup: %d %v, want 400 VALIDATION_FAILED saying it was altered", code, got)
	}

	for _, bad := range []string{"nope", "..%2F..%2Fetc", "20260109T120000Z-1A2B3C4D"} {
		if code, _ := e.do(t, "GET", base+"/"+bad, "admin", ""); code != 400 {
			t.Errorf("GET %s: %d, want 400", bad, code)
		}
	}
	missing := base + "/20200101T000000Z-00000000"
	if code, _ := e.do(t, "GET", missing, "admin", ""); code != 404 {
		t.Errorf("GET missing: %d, want 404", code)
	}
	if code, _ := e.do(t, "POST", missing+"/restore", "admin", ""); code != 404 {
		t.Errorf("POST restore missing: %d, want 404", code)
	}
	if code, _ := e.do(t, "DELETE", base+"/"+id, "admin", ""); code != 204 {
		t.Errorf("DELETE: %d, want 204", code)
	}
	if code, _ := e.do(t, "DELETE", base+"/"+id, "admin", ""); code != 404 {
		t.Errorf("DELETE again: %d, want 404", code)
	}

	e.audit.mu.Lock()
	defer e.audit.mu.Unlock()
	var actions []string
	for _, ev := range e.audit.events {
		actions = append(actions, ev.Action+":"+ev.Result)
		if ev.ActorType != vectabase.ActorUser || ev.ActorID != "admin-user-id" || ev.RequestID == "" || ev.ResourceType != "backup" {
			t.Errorf("audit event %+v: want the admin user, a request id and resource type backup", ev)
		}
	}
	want := "backup.create:success backup.verify:success backup.restore:success backup.verify:failure backup.restore:failure backup.delete:success backup.delete:failure"
	if got := strings.Join(actions, " "); got != want {
		t.Errorf("audit actions:\n got %s\nwant %s", got, want)
	}
}

// FuzzBackupRoutes: any id or body gets a contract answer, never a 500
// (a create against the unreachable database here is a 503).
func FuzzBackupRoutes(f *testing.F) {
	key := filepath.Join(f.TempDir(), "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		f.Fatal(err)
	}
	kek, err := local.NewFromFile(key)
	if err != nil {
		f.Fatal(err)
	}
	// No database is reached: ids are checked first and the directory is
	// empty, so every request ends before pg_dump or pg_restore.
	svc, err := backup.New(backup.Config{Dir: f.TempDir()}, "postgres://nobody@127.0.0.1:1/none", kek)
	if err != nil {
		f.Fatal(err)
	}
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount(admin.BackupRoutes(svc, requireAdmin))
	app := srv.App()
	for _, s := range [][2]string{{"x", ""}, {"20260109T120000Z-1a2b3c4d", "{}"}, {"%00", "{"}, {"20260109T120000Z-1a2b3c4d", `{"a":1}`}, {"..", "[]"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, id, body string) {
		for _, p := range []string{"", "/verify", "/restore"} {
			for _, method := range []string{"GET", "POST", "DELETE"} {
				req := httptest.NewRequest(method, "/", strings.NewReader(body))
				req.URL.Path = "/api/admin/backups/" + id + p
				req.Header.Set("X-Test-Role", "admin")
				resp, err := app.Test(req, -1)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode == 500 {
					t.Errorf("%s %q %q: status %d", method, req.URL.Path, body, resp.StatusCode)
				}
			}
		}
	})
}
