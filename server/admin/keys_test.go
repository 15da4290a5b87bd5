package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/admin"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/rotation"
	"github.com/vectabase/vectabase/server/rotation/rotationtest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

type keyAuditor struct {
	mu     sync.Mutex
	events []vectabase.AuditEvent
}

func (a *keyAuditor) Record(_ context.Context, ev vectabase.AuditEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, ev)
	return nil
}

type keyEnv struct {
	t   *testing.T
	srv *server.Server
	aud *keyAuditor
}

func (e *keyEnv) do(method, path, body, token string) (int, map[string]any) {
	e.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.srv.App().Test(req, -1)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			e.t.Fatalf("%s %s: body %q is not JSON", method, path, raw)
		}
	}
	return resp.StatusCode, m
}

// The key routes answer administrators only; a DEK rotation started over
// HTTP is 202 {jobId}, its progress and the per-key counts are visible,
// and bad bodies get clear 4xx answers.
func TestKeyRoutes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	rotationtest.Seed(t, db.Pool, kr, 300, 64, 2)
	aud := &keyAuditor{}
	fast := auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	authSvc, err := auth.New(ctx, auth.Config{AccessTTL: time.Hour, RefreshTTL: time.Hour, Issuer: "vectabase", Argon2: fast},
		db, kr, aud, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	rot, err := rotation.New(rotation.Config{BatchSize: 100, PollInterval: 20 * time.Millisecond}, db, kr, aud, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	e := &keyEnv{t: t, srv: server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry()), aud: aud}
	e.srv.Mount(admin.KeyRoutes(rot, authSvc.RequireAdmin()))

	token := func(email, role string) string {
		hash, err := auth.HashPassword("password-123", fast)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.CreateUser(ctx, store.NewUser{Email: email, PasswordHash: hash, Role: role}); err != nil {
			t.Fatal(err)
		}
		res, err := authSvc.Login(ctx, email, "password-123", auth.RequestMeta{IP: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		return res.Token
	}
	adminTok, userTok := token("admin@example.com", "admin"), token("user@example.com", "user")

	for _, tc := range []struct {
		method, path, body, token string
		status                    int
		code                      string
	}{
		{"GET", "/api/admin/keys", "", "", 401, "UNAUTHORIZED"},
		{"GET", "/api/admin/keys", "", userTok, 403, "FORBIDDEN"},
		{"POST", "/api/admin/keys/rotate", `{"kind":"dek"}`, userTok, 403, "FORBIDDEN"},
		{"GET", "/api/admin/keys/rotation", "", userTok, 403, "FORBIDDEN"},
		{"POST", "/api/admin/keys/rotate", `{"kind":"sideways"}`, adminTok, 400, "VALIDATION_FAILED"},
		{"POST", "/api/admin/keys/rotate", `{"kind":"dek","extra":1}`, adminTok, 400, "BAD_REQUEST"},
		{"POST", "/api/admin/keys/rotate", `{"kind":`, adminTok, 400, "BAD_REQUEST"},
		{"POST", "/api/admin/keys/rotate", `{"kind":"kek"}`, adminTok, 400, "VALIDATION_FAILED"},
	} {
		status, body := e.do(tc.method, tc.path, tc.body, tc.token)
		if status != tc.status || body["error"] != tc.code {
			t.Errorf("%s %s %s: %d %v, want %d %s", tc.method, tc.path, tc.body, status, body, tc.status, tc.code)
		}
	}

	status, view := e.do("GET", "/api/admin/keys", "", adminTok)
	if status != 200 || view["kekBackend"] != "local" {
		t.Fatalf("GET /api/admin/keys = %d %v", status, view)
	}
	dataKeys, _ := view["dataKeys"].([]any)
	if len(dataKeys) != 1 || dataKeys[0].(map[string]any)["ciphertexts"].(float64) < 300 {
		t.Fatalf("dataKeys = %v, want one key with the seeded ciphertexts", view["dataKeys"])
	}

	status, body := e.do("POST", "/api/admin/keys/rotate", `{"kind":"dek"}`, adminTok)
	jobID, _ := body["jobId"].(string)
	if status != 202 || jobID == "" {
		t.Fatalf("POST rotate dek = %d %v, want 202 {jobId}", status, body)
	}
	status, prog := e.do("GET", "/api/admin/keys/rotation", "", adminTok)
	job, _ := prog["job"].(map[string]any)
	if status != 200 || job["jobId"] != jobID || job["state"] != "running" || prog["pendingValues"].(float64) < 300 {
		t.Fatalf("GET rotation = %d %v", status, prog)
	}
	// destroy-old over HTTP: refused with the census while values still
	// use the old key, admins only, done once the job has finished.
	if status, body := e.do("POST", "/api/admin/keys/destroy-old", "", adminTok); status != 409 || body["error"] != "CONFLICT" {
		t.Errorf("destroy-old during the rotation = %d %v, want 409 CONFLICT", status, body)
	}
	if status, _ := e.do("POST", "/api/admin/keys/destroy-old", "", userTok); status != 403 {
		t.Errorf("destroy-old by a user = %d, want 403", status)
	}
	if status, body := e.do("POST", "/api/admin/keys/destroy-old", `{"x":1}`, adminTok); status != 400 {
		t.Errorf("destroy-old with a body = %d %v, want 400", status, body)
	}
	if _, err := rot.RunJob(ctx, jobID, nil); err != nil {
		t.Fatal(err)
	}
	_, prog = e.do("GET", "/api/admin/keys/rotation", "", adminTok)
	if job := prog["job"].(map[string]any); job["state"] != "done" || prog["pendingValues"].(float64) != 0 {
		t.Fatalf("GET rotation after the worker = %v", prog)
	}
	_, view = e.do("GET", "/api/admin/keys", "", adminTok)
	for _, k := range view["dataKeys"].([]any) {
		k := k.(map[string]any)
		if k["primary"] == true && k["ciphertexts"].(float64) < 300 || k["primary"] == false && k["ciphertexts"].(float64) != 0 {
			t.Errorf("after the rotation, data key %v", k)
		}
	}
	status, body = e.do("POST", "/api/admin/keys/destroy-old", "", adminTok)
	if destroyed, _ := body["destroyed"].([]any); status != 200 || len(destroyed) != 1 {
		t.Errorf("destroy-old after the rotation = %d %v, want 200 with one destroyed key", status, body)
	}
	var found bool
	for _, ev := range aud.events {
		if ev.Action == "keys.rotate_dek" && ev.ActorType == vectabase.ActorUser && ev.ActorID != "" && ev.RequestID != "" {
			found = true
		}
	}
	if !found {
		t.Errorf("no keys.rotate_dek audit event naming the admin and the request: %+v", aud.events)
	}
}

// Random bodies on the rotate route never give a 5xx.
func FuzzRotateBody(f *testing.F) {
	for _, s := range []string{`{"kind":"dek"}`, `{"kind":"kek"}`, `{}`, `[]`, `null`, `{"kind":1}`, "\x00", `{"kind":"dek"`} {
		f.Add(s)
	}
	stub := stubKeys{}
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount(admin.KeyRoutes(stub, nil))
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/api/admin/keys/rotate", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("body %q: status %d", body, resp.StatusCode)
		}
		if resp.StatusCode != http.StatusAccepted && resp.StatusCode != 400 && resp.StatusCode != 413 {
			t.Fatalf("body %q: status %d", body, resp.StatusCode)
		}
	})
}

// stubKeys answers without a database, for the fuzz target: only the
// decoding and validation of the handler are under test there.
type stubKeys struct{}

func (stubKeys) Keys(context.Context) (rotation.KeysView, error)     { return rotation.KeysView{}, nil }
func (stubKeys) Progress(context.Context) (rotation.Progress, error) { return rotation.Progress{}, nil }
func (stubKeys) RotateDEK(context.Context, rotation.Actor) (store.RotationJob, error) {
	return store.RotationJob{ID: "00000000-0000-0000-0000-000000000000", Kind: "dek", State: "running"}, nil
}
func (stubKeys) RotateKEKInPlace(context.Context, rotation.Actor) (store.RotationJob, error) {
	return store.RotationJob{ID: "00000000-0000-0000-0000-000000000001", Kind: "kek", State: "done"}, nil
}

func (stubKeys) DestroyOld(context.Context, rotation.Actor) (rotation.DestroyResult, error) {
	return rotation.DestroyResult{}, nil
}
