package marketplace_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault/audit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fataler is what the helpers need of *testing.T and *rapid.T alike.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// syncBuffer collects log lines written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// nopAuditor drops auth's audit events: this area's tests do not look at them.
type nopAuditor struct{}

func (nopAuditor) Record(context.Context, vectabase.AuditEvent) error { return nil }

// fastArgon2 keeps user creation quick in tests.
var fastArgon2 = auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// tokens maps the user ids the tests create to their access tokens, shared
// by every instance (they verify each other's tokens through the database).
type tokens struct {
	mu sync.Mutex
	m  map[string]string
}

func (tk *tokens) get(id string) string {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	return tk.m[id]
}

func (tk *tokens) set(id, token string) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	tk.m[id] = token
}

var allTokens = &tokens{m: map[string]string{}}

// env is one server instance of the area on a database.
type env struct {
	auth *auth.Service
	db   *store.DB
	kr   *keyring.Keyring
	srv  *server.Server
	svc  *marketplace.Service
	logs *syncBuffer
	reg  *prometheus.Registry
}

func newKeyring(t testing.TB, db *store.DB) *keyring.Keyring {
	t.Helper()
	return openKeyring(t, db, newKEKFile(t))
}

// newKEKFile writes a fresh local master key, which several instances can
// share the way processes of one deployment do.
func newKEKFile(t testing.TB) string {
	t.Helper()
	path := t.TempDir() + "/master.key"
	if err := local.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// openKeyring opens the keyring on db with the master key at path.
func openKeyring(t testing.TB, db *store.DB, path string) *keyring.Keyring {
	t.Helper()
	kek, err := local.NewFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.Open(context.Background(), store.NewKeysets(db.Pool), kek)
	if err != nil {
		t.Fatalf("keyring.Open err = %v", err)
	}
	return kr
}

// newEnv is a fresh database, keyring and server with the area mounted.
func newEnv(t testing.TB) *env {
	t.Helper()
	db := pgtest.New(t)
	e := newInstance(t, db, newKeyring(t, db))
	t.Cleanup(func() { e.close(t) })
	return e
}

// newInstance is another server instance on db (its own service, request
// log writer and registry), as a second process would be. The caller
// closes it.
func newInstance(t testing.TB, db *store.DB, kr *keyring.Keyring) *env {
	t.Helper()
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	log := zerolog.New(logs)
	srv := server.New(server.Config{}, log, reg)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, err := auth.New(ctx, auth.Config{Argon2: fastArgon2, MaxAttemptsPerIP: 1 << 20, MaxFailuresPerIP: 1 << 20}, db, kr, nopAuditor{}, log, reg)
	if err != nil {
		t.Fatalf("auth.New err = %v", err)
	}
	srv.Mount(a.Routes())
	al := audit.New(db, kr, zerolog.Nop(), nil)
	t.Cleanup(al.Close)
	svc := marketplace.New(db, kr, al, marketplace.Config{RequestLogFlush: 20 * time.Millisecond}, log, reg)
	srv.Mount(svc.Routes(authHooks(a)))
	return &env{auth: a, db: db, kr: kr, srv: srv, svc: svc, logs: logs, reg: reg}
}

func (e *env) close(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.svc.Close(ctx); err != nil {
		t.Errorf("svc.Close err = %v", err)
	}
}

// authHooks is the wiring cmd/ does: the real bearer middleware.
func authHooks(a *auth.Service) marketplace.Auth {
	return marketplace.Auth{RequireUser: a.RequireUser(), OptionalUser: a.OptionalUser(), UserID: auth.UserID}
}

// user registers and logs in a new user through the auth service and
// returns its id; call sends that user's access token.
func (e *env) user(t fataler) string {
	t.Helper()
	ctx := context.Background()
	email, pw := uuid.NewString()+"@example.com", "correct horse battery"
	if _, err := e.auth.Register(ctx, email, pw, auth.RequestMeta{IP: "127.0.0.1"}); err != nil {
		t.Fatalf("Register err = %v", err)
	}
	res, err := e.auth.Login(ctx, email, pw, auth.RequestMeta{IP: "127.0.0.1"})
	if err != nil {
		t.Fatalf("Login err = %v", err)
	}
	allTokens.set(res.User.ID, res.Token)
	return res.User.ID
}

// resp is a decoded response.
type resp struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// call sends a request; who is a user id for a bearer token, "key:<key>"
// for an API key, or "" for none. body is marshalled unless it is a string
// or []byte.
func (e *env) call(t fataler, method, path, who string, body any) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case strings.HasPrefix(who, "key:"):
		req.Header.Set("X-API-Key", strings.TrimPrefix(who, "key:"))
	case who != "":
		req.Header.Set("Authorization", "Bearer "+allTokens.get(who))
	}
	res, err := e.srv.App().Test(req, -1)
	if err != nil {
		t.Fatalf("app.Test(%s %s) err = %v", method, path, err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	r := resp{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &r.Body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %v", method, path, err)
		}
	}
	return r
}

// must sends a request and fails unless it gets status want.
func (e *env) must(t fataler, want int, method, path, who string, body any) map[string]any {
	t.Helper()
	r := e.call(t, method, path, who, body)
	if r.Status != want {
		t.Fatalf("%s %s = %d %s, want %d", method, path, r.Status, r.Raw, want)
	}
	return r.Body
}

// checkErrorBody fails unless r is a contract error body with a 4xx status.
func checkErrorBody(t fataler, what string, r resp) {
	t.Helper()
	if r.Status < 400 || r.Status >= 500 {
		t.Fatalf("%s: status %d %s, want a 4xx", what, r.Status, r.Raw)
	}
	for _, k := range []string{"error", "message", "requestId", "timestamp"} {
		if s, _ := r.Body[k].(string); s == "" {
			t.Fatalf("%s: body %s lacks %q", what, r.Raw, k)
		}
	}
}

// newKey makes an API key for user with scopes and limit and returns it.
func (e *env) newKey(t fataler, user string, limit int, scopes ...string) (id, key string) {
	t.Helper()
	if scopes == nil {
		scopes = []string{}
	}
	b := e.must(t, 201, "POST", "/api/developer/keys", user, map[string]any{"name": "k", "scopes": scopes, "rateLimitPerMinute": limit})
	return b["id"].(string), b["key"].(string)
}

func (e *env) svcRejected() prometheus.Counter { return e.svc.Rejected() }
