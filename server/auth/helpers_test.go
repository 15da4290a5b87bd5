package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fastArgon2 keeps tests quick; the benchmarks use OWASPArgon2.
var fastArgon2 = auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// recorder is an in-memory auth.Auditor (our own interface, not the
// database) that can be told to fail.
type recorder struct {
	mu     sync.Mutex
	events []vectabase.AuditEvent
	fail   bool
}

func (r *recorder) Record(_ context.Context, ev vectabase.AuditEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("audit store down")
	}
	r.events = append(r.events, ev)
	return nil
}

func (r *recorder) actions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Action+":"+e.Result)
	}
	return out
}

func (r *recorder) count(action string) int {
	n := 0
	for _, a := range r.actions() {
		if strings.HasPrefix(a, action+":") {
			n++
		}
	}
	return n
}

// tb is what the helpers need of *testing.T and *rapid.T alike.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
}

type env struct {
	t     tb
	db    *store.DB
	kr    *keyring.Keyring
	aud   *recorder
	svc   *auth.Service
	srv   *server.Server
	cfg   auth.Config
	clock *clock
	logs  *syncBuffer // everything the server and the service logged

	fake  *fakeDiscord       // the Discord double, when there is one
	flows map[string]browser // Discord sign-ins started, by state
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// clock is a settable time source for the service.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

func testConfig() auth.Config {
	return auth.Config{
		AccessTTL: time.Hour, RefreshTTL: 720 * time.Hour, Issuer: "vectabase",
		Argon2:        fastArgon2,
		FailureWindow: 15 * time.Minute,
		AttemptWindow: time.Minute,
	}
}

func newEnv(t testing.TB, cfg auth.Config) *env {
	t.Helper()
	db := pgtest.New(t)
	return newEnvOn(t, db, keyringtest.New(t, db.Pool), cfg)
}

func newEnvOn(t testing.TB, db *store.DB, kr *keyring.Keyring, cfg auth.Config, opts ...auth.Option) *env {
	t.Helper()
	e := &env{t: t, db: db, kr: kr, aud: &recorder{}, cfg: cfg, clock: &clock{}, logs: &syncBuffer{}}
	log := zerolog.New(e.logs).Level(zerolog.DebugLevel)
	var err error
	e.svc, err = auth.New(context.Background(), cfg, db, kr, e.aud, log, prometheus.NewRegistry(), append(opts, auth.WithClock(e.clock.now))...)
	if err != nil {
		t.Fatalf("auth.New err = %v, want nil", err)
	}
	e.srv = server.New(server.Config{}, log, prometheus.NewRegistry())
	e.srv.Mount(e.svc.Routes())
	return e
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t tb, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("response %d body %q is not JSON: %v", r.Status, r.Body, err)
	}
}

func (r response) code() string {
	var b server.ErrorBody
	_ = json.Unmarshal(r.Body, &b)
	return b.Error
}

// do sends a request to the app. body: nil, a string (raw) or a value (JSON).
func (e *env) do(method, path string, body any, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.srv.App().Test(req, -1)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

type loginBody struct {
	User         store.User `json:"user"`
	Token        string     `json:"token"`
	RefreshToken string     `json:"refreshToken"`
	TokenType    string     `json:"tokenType"`
	ExpiresIn    int64      `json:"expiresIn"`
}

func (e *env) register(email, password string) store.User {
	e.t.Helper()
	r := e.do("POST", "/api/auth/register", map[string]string{"email": email, "password": password})
	if r.Status != 201 {
		e.t.Fatalf("register %s = %d %s, want 201", email, r.Status, r.Body)
	}
	var out struct{ User store.User }
	r.json(e.t, &out)
	return out.User
}

func (e *env) login(email, password string) loginBody {
	e.t.Helper()
	r := e.do("POST", "/api/auth/login", map[string]string{"email": email, "password": password})
	if r.Status != 200 {
		e.t.Fatalf("login %s = %d %s, want 200", email, r.Status, r.Body)
	}
	var out loginBody
	r.json(e.t, &out)
	return out
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

func authMeta() auth.RequestMeta {
	return auth.RequestMeta{IP: "192.0.2.1", UserAgent: "test", RequestID: "test"}
}
