package console_test

import (
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
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/console"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

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

func (r *recorder) has(action, result string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev.Action == action && ev.Result == result {
			return true
		}
	}
	return false
}

type env struct {
	t   *testing.T
	srv *server.Server
	aud *recorder
}

// newEnv mounts the console and auth's admin routes on a real database
// with an admin and a plain user, both with the password "password-123".
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	aud := &recorder{}
	fast := auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	a, err := auth.New(ctx, auth.Config{AccessTTL: time.Hour, RefreshTTL: time.Hour, Issuer: "vectabase", Argon2: fast},
		db, kr, aud, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for email, role := range map[string]string{"admin@example.com": "admin", "user@example.com": "user"} {
		hash, err := auth.HashPassword("password-123", fast)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.CreateUser(ctx, store.NewUser{Email: email, PasswordHash: hash, Role: role}); err != nil {
			t.Fatal(err)
		}
	}
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount(a.Routes())
	srv.Mount(a.AdminRoutes())
	srv.Mount(console.New(a, aud).Routes())
	return &env{t: t, srv: srv, aud: aud}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (e *env) do(method, path, body string, headers map[string]string) answer {
	e.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.App().Test(req, -1)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

var marker = map[string]string{console.HeaderMarker: "1"}

func cookieOf(t *testing.T, a answer) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		if c.Name == console.CookieName {
			return c
		}
	}
	return nil
}

// The page and its assets carry the strict CSP; a path outside the
// embedded assets is the contract's 404 body.
func TestConsoleServesItsPageUnderTheCSP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct{ path, ctype string }{
		{"/console", "text/html"},
		{"/console/assets/app.js", "text/javascript"},
		{"/console/assets/app.css", "text/css"},
	} {
		a := e.do("GET", tc.path, "", nil)
		if a.status != 200 || a.header.Get("Content-Security-Policy") != console.CSP || !strings.HasPrefix(a.header.Get("Content-Type"), tc.ctype) ||
			a.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s = %d, headers %v", tc.path, a.status, a.header)
		}
	}
	html := e.do("GET", "/console", "", nil).raw
	if strings.Contains(html, "<script>") || strings.Contains(html, "style=") || strings.Contains(html, "http://") || strings.Contains(html, "https://") {
		t.Errorf("the page has inline code or a third-party URL:\n%s", html)
	}
	for _, p := range []string{"/console/assets/nope.js", "/console/assets/..%2fconsole.go", "/console/assets/index.html"} {
		if a := e.do("GET", p, "", nil); a.status != 404 || a.body["error"] != "NOT_FOUND" {
			t.Errorf("GET %s = %d %s, want 404 NOT_FOUND", p, a.status, a.raw)
		}
	}
}

// An admin's sign-in sets the refresh cookie (HttpOnly, SameSite=Strict,
// scoped to /console, Secure behind HTTPS) and answers only the access
// token; the cookie refreshes once and rotates; requests without the
// console header or from another origin are refused.
func TestConsoleSessionCookie(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	creds := `{"email":"admin@example.com","password":"password-123"}`

	if a := e.do("POST", "/console/session", creds, nil); a.status != 403 || a.body["error"] != "FORBIDDEN" || cookieOf(t, a) != nil {
		t.Errorf("sign-in without %s = %d %s, want 403 and no cookie", console.HeaderMarker, a.status, a.raw)
	}
	if a := e.do("POST", "/console/session", creds, map[string]string{console.HeaderMarker: "1", "Origin": "https://evil.example"}); a.status != 403 || cookieOf(t, a) != nil {
		t.Errorf("cross-origin sign-in = %d %s, want 403 and no cookie", a.status, a.raw)
	}
	a := e.do("POST", "/console/session", creds, marker)
	c := cookieOf(t, a)
	if a.status != 200 || a.body["token"] == nil || a.body["refreshToken"] != nil || c == nil {
		t.Fatalf("admin sign-in = %d %s, cookie %v", a.status, a.raw, c)
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/console" || c.Secure {
		t.Errorf("cookie over plain HTTP = %+v, want HttpOnly, SameSite=Strict, Path=/console, not Secure", c)
	}
	if got := a.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if s := e.do("POST", "/console/session", creds, map[string]string{console.HeaderMarker: "1", "X-Forwarded-Proto": "https"}); cookieOf(t, s) == nil || !cookieOf(t, s).Secure {
		t.Errorf("cookie behind HTTPS is not Secure: %v", s.header.Values("Set-Cookie"))
	}

	if r := e.do("POST", "/console/session/refresh", "", map[string]string{"Cookie": console.CookieName + "=" + c.Value}); r.status != 403 {
		t.Errorf("refresh without %s = %d, want 403", console.HeaderMarker, r.status)
	}
	r := e.do("POST", "/console/session/refresh", "", map[string]string{console.HeaderMarker: "1", "Cookie": console.CookieName + "=" + c.Value})
	next := cookieOf(t, r)
	if r.status != 200 || r.body["token"] == nil || next == nil || next.Value == c.Value {
		t.Fatalf("refresh = %d %s, cookie %v: want a new token and a rotated cookie", r.status, r.raw, next)
	}
	if again := e.do("POST", "/console/session/refresh", "", map[string]string{console.HeaderMarker: "1", "Cookie": console.CookieName + "=" + c.Value}); again.status != 401 {
		t.Errorf("refresh with the used cookie = %d, want 401", again.status)
	}
	if none := e.do("POST", "/console/session/refresh", "", marker); none.status != 401 || none.body["error"] != "UNAUTHORIZED" {
		t.Errorf("refresh without a cookie = %d %s, want 401", none.status, none.raw)
	}

	tok, _ := r.body["token"].(string)
	out := e.do("DELETE", "/console/session", "", map[string]string{console.HeaderMarker: "1", "Authorization": "Bearer " + tok})
	if cleared := cookieOf(t, out); out.status != 204 || cleared == nil || cleared.Value != "" {
		t.Errorf("sign-out = %d, cookie %v, want 204 and a cleared cookie", out.status, cleared)
	}
	if me := e.do("GET", "/api/auth/me", "", map[string]string{"Authorization": "Bearer " + tok}); me.status != 401 {
		t.Errorf("the signed-out token still works: %d", me.status)
	}
}

// A user without the admin role gets FORBIDDEN and no cookie, and the
// refusal is audited.
func TestConsoleRefusesNonAdmins(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.do("POST", "/console/session", `{"email":"user@example.com","password":"password-123"}`, marker)
	if a.status != 403 || a.body["error"] != "FORBIDDEN" || a.body["token"] != nil {
		t.Fatalf("non-admin sign-in = %d %s, want 403 FORBIDDEN without a token", a.status, a.raw)
	}
	if c := cookieOf(t, a); c != nil && c.Value != "" {
		t.Errorf("non-admin got a refresh cookie")
	}
	if !e.aud.has("console.login", vectabase.ResultDenied) {
		t.Errorf("no console.login denied audit event: %+v", e.aud.events)
	}
	if !e.aud.has("auth.logout", vectabase.ResultSuccess) {
		t.Errorf("the non-admin's new session was not revoked: %+v", e.aud.events)
	}
	if bad := e.do("POST", "/console/session", `{"email":"admin@example.com","password":"wrong-password"}`, marker); bad.status != 401 {
		t.Errorf("wrong password = %d, want 401", bad.status)
	}
}

// Admins list users and change roles (audited, not their own); others are
// refused; bad input gets the contract's 4xx.
func TestAdminUsersRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := func(email string) string {
		a := e.do("POST", "/api/auth/login", `{"email":"`+email+`","password":"password-123"}`, nil)
		s, _ := a.body["token"].(string)
		if s == "" {
			t.Fatalf("login %s = %d %s", email, a.status, a.raw)
		}
		return "Bearer " + s
	}
	admin, user := tok("admin@example.com"), tok("user@example.com")
	if a := e.do("GET", "/api/admin/users", "", map[string]string{"Authorization": user}); a.status != 403 {
		t.Errorf("user lists users = %d, want 403", a.status)
	}
	a := e.do("GET", "/api/admin/users?limit=1", "", map[string]string{"Authorization": admin})
	items, _ := a.body["items"].([]any)
	if a.status != 200 || len(items) != 1 || a.body["nextCursor"] == nil || strings.Contains(a.raw, "argon2") {
		t.Fatalf("GET /api/admin/users?limit=1 = %d %s", a.status, a.raw)
	}
	a = e.do("GET", "/api/admin/users?cursor="+a.body["nextCursor"].(string), "", map[string]string{"Authorization": admin})
	items, _ = a.body["items"].([]any)
	if a.status != 200 || len(items) != 1 || a.body["nextCursor"] != nil {
		t.Fatalf("second page = %d %s", a.status, a.raw)
	}
	var userID, adminID string
	for _, it := range e.do("GET", "/api/admin/users", "", map[string]string{"Authorization": admin}).body["items"].([]any) {
		u := it.(map[string]any)
		if u["email"] == "user@example.com" {
			userID = u["id"].(string)
		} else {
			adminID = u["id"].(string)
		}
	}
	for _, tc := range []struct {
		id, body string
		status   int
		code     string
	}{
		{userID, `{"role":"emperor"}`, 400, "VALIDATION_FAILED"},
		{userID, `{"role":"admin","x":1}`, 400, "BAD_REQUEST"},
		{"not-a-uuid", `{"role":"developer"}`, 404, "NOT_FOUND"},
		{"00000000-0000-0000-0000-000000000000", `{"role":"developer"}`, 404, "NOT_FOUND"},
		{adminID, `{"role":"user"}`, 409, "CONFLICT"},
	} {
		if a := e.do("PATCH", "/api/admin/users/"+tc.id, tc.body, map[string]string{"Authorization": admin}); a.status != tc.status || a.body["error"] != tc.code {
			t.Errorf("PATCH %s %s = %d %s, want %d %s", tc.id, tc.body, a.status, a.raw, tc.status, tc.code)
		}
	}
	if a := e.do("GET", "/api/admin/users?limit=0", "", map[string]string{"Authorization": admin}); a.status != 400 {
		t.Errorf("limit=0 = %d, want 400", a.status)
	}
	a = e.do("PATCH", "/api/admin/users/"+userID, `{"role":"developer"}`, map[string]string{"Authorization": admin})
	if a.status != 200 || a.body["role"] != "developer" {
		t.Fatalf("PATCH role = %d %s", a.status, a.raw)
	}
	e.aud.mu.Lock()
	var ev *vectabase.AuditEvent
	for i := range e.aud.events {
		if e.aud.events[i].Action == "user.set_role" {
			ev = &e.aud.events[i]
		}
	}
	e.aud.mu.Unlock()
	if ev == nil || ev.ActorID != adminID || ev.ResourceID != userID || ev.Details["from"] != "user" || ev.Details["to"] != "developer" || ev.RequestID == "" {
		t.Errorf("user.set_role audit event = %+v", ev)
	}
}

// stubAuth answers without a database, for the fuzz target.
type stubAuth struct{}

func (stubAuth) Login(context.Context, string, string, auth.RequestMeta) (auth.LoginResult, error) {
	return auth.LoginResult{}, vectabase.Errorf(vectabase.EUNAUTHORIZED, "invalid email or password")
}
func (stubAuth) Refresh(context.Context, string, auth.RequestMeta) (auth.LoginResult, error) {
	return auth.LoginResult{}, vectabase.Errorf(vectabase.EUNAUTHORIZED, "invalid refresh token")
}
func (stubAuth) Logout(context.Context, string, string, bool, auth.RequestMeta) error { return nil }
func (stubAuth) Authenticate(context.Context, string) (auth.Principal, error) {
	return auth.Principal{}, errors.New("no")
}

// Random bodies, origins and cookies on the session routes never give a
// 5xx, and every failure is the contract's JSON body.
func FuzzConsoleSession(f *testing.F) {
	for _, s := range []string{`{"email":"a@b.c","password":"x"}`, `{}`, `[]`, `null`, "\x00", `{"email":1}`, `{"email":"a","password":"b","x":1}`} {
		f.Add(s, "http://example.com", "abc")
	}
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount(console.New(stubAuth{}, &recorder{}).Routes())
	f.Fuzz(func(t *testing.T, body, origin, cookie string) {
		for _, rt := range []struct{ method, path string }{{"POST", "/console/session"}, {"POST", "/console/session/refresh"}, {"DELETE", "/console/session"}} {
			req := httptest.NewRequest(rt.method, rt.path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(console.HeaderMarker, "1")
			if origin != "" && !strings.ContainsAny(origin, "\r\n\x00") {
				req.Header.Set("Origin", origin)
			}
			if cookie != "" && !strings.ContainsAny(cookie, "\r\n\x00;") {
				req.Header.Set("Cookie", console.CookieName+"="+cookie)
			}
			resp, err := srv.App().Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				t.Fatalf("%s %s body %q: status %d", rt.method, rt.path, body, resp.StatusCode)
			}
			if resp.StatusCode >= 400 {
				var m map[string]any
				if json.Unmarshal(raw, &m) != nil || m["error"] == nil || m["requestId"] == nil {
					t.Fatalf("%s %s: %d %q is not the error body", rt.method, rt.path, resp.StatusCode, raw)
				}
			}
		}
	})
}
