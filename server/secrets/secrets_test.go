package secrets_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/admin"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/canarytest"
	"github.com/vectabase/vectabase/server/secrets"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault"
	"github.com/vectabase/vectabase/vault/audit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type env struct {
	t   testing.TB
	h   *canarytest.Harness
	db  *store.DB
	al  *audit.Log
	srv *server.Server
}

func newEnv(t testing.TB) *env { t.Helper(); return newEnvConfig(t, server.Config{}) }

func newEnvConfig(t testing.TB, scfg server.Config, aopts ...audit.Option) *env {
	t.Helper()
	ctx := context.Background()
	h := canarytest.New(t)
	log := h.Logger()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	al := audit.New(db, kr, log, h.Registry, aopts...)
	t.Cleanup(al.Close)
	pol, err := policies.AccessPolicy()
	if err != nil {
		t.Fatal(err)
	}
	v := vault.New(db, kr, al, pol, vault.Config{MaxVersions: 3}, h.Registry)
	a, err := auth.New(ctx, auth.Config{
		AccessTTL: time.Hour, RefreshTTL: time.Hour, Issuer: "vectabase",
		Argon2:        auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
		FailureWindow: time.Minute, AttemptWindow: time.Minute,
	}, db, kr, al, log, h.Registry)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(scfg, log, h.Registry)
	srv.Mount(a.Routes())
	srv.Mount(secrets.Routes(v, a.RequireUser()))
	srv.Mount(admin.AuditRoutes(al, a.RequireAdmin()))
	return &env{t: t, h: h, db: db, al: al, srv: srv}
}

type resp = canarytest.Response

func resp2(status int, body []byte) resp { return resp{Status: status, Body: body} }

func (e *env) do(method, target string, body any, headers ...string) resp {
	e.t.Helper()
	var b any
	switch x := body.(type) {
	case nil:
	case string:
		b = x
	default:
		raw, _ := json.Marshal(x)
		b = raw
	}
	return e.h.Do(e.srv.App(), canarytest.Request(method, target, b, headers...))
}

func (e *env) reveal(method, target string, secret string, headers ...string) resp {
	e.t.Helper()
	return e.h.Do(e.srv.App(), canarytest.Request(method, target, nil, headers...), canarytest.MayReveal(secret))
}

// user registers and logs in a user with role, returning its id and the
// Authorization header for it.
func (e *env) user(role, password string) (string, []string) {
	e.t.Helper()
	email := fmt.Sprintf("%s-%d@example.com", role, time.Now().UnixNano())
	r := e.do("POST", "/api/auth/register", map[string]string{"email": email, "password": password})
	if r.Status != 201 {
		e.t.Fatalf("register = %d %s", r.Status, r.Body)
	}
	var reg struct{ User struct{ ID string } }
	_ = json.Unmarshal(r.Body, &reg)
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE profiles SET role = $1 WHERE id = $2`, role, reg.User.ID); err != nil {
		e.t.Fatal(err)
	}
	r = e.do("POST", "/api/auth/login", map[string]string{"email": email, "password": password})
	if r.Status != 200 {
		e.t.Fatalf("login = %d %s", r.Status, r.Body)
	}
	var login struct{ Token, RefreshToken string }
	_ = json.Unmarshal(r.Body, &login)
	e.h.Add(login.Token)
	e.h.Add(login.RefreshToken)
	return reg.User.ID, []string{"Authorization", "Bearer " + login.Token}
}

func errCode(r resp) string {
	var b server.ErrorBody
	_ = json.Unmarshal(r.Body, &b)
	return b.Error
}

func (e *env) lastAudit() audit.Entry {
	e.t.Helper()
	p, err := e.al.Query(context.Background(), audit.Filter{Limit: 1})
	if err != nil || len(p.Items) != 1 {
		e.t.Fatalf("last audit entry: %+v, %v", p, err)
	}
	return p.Items[0]
}

func TestSecretsAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, admin := e.user("admin", e.h.Password())
	devID, dev := e.user("developer", e.h.Password())
	_, plain := e.user("user", e.h.Password())

	v1, v2 := e.h.Secret(), e.h.StripeKey()
	if r := e.do("PUT", "/api/secrets/stripe_secret_key", map[string]any{"value": v1}, admin...); r.Status != 201 {
		t.Fatalf("PUT new = %d %s, want 201", r.Status, r.Body)
	}
	r := e.do("PUT", "/api/secrets/stripe_secret_key", map[string]any{"value": v2, "expectedVersion": 1}, admin...)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"version":2`) {
		t.Fatalf("PUT update = %d %s, want 200 version 2", r.Status, r.Body)
	}
	if r := e.do("PUT", "/api/secrets/stripe_secret_key", map[string]any{"value": "x", "expectedVersion": 1}, admin...); r.Status != 409 || errCode(r) != vectabase.ECONFLICT {
		t.Fatalf("PUT stale = %d %s, want 409 CONFLICT", r.Status, r.Body)
	}
	r = e.reveal("GET", "/api/secrets/stripe_secret_key", v2, admin...)
	var got struct {
		Name, Value string
		Version     int
		UpdatedAt   time.Time
	}
	if err := json.Unmarshal(r.Body, &got); err != nil || r.Status != 200 || got.Value != v2 || got.Version != 2 || got.UpdatedAt.IsZero() {
		t.Fatalf("GET = %d %s, want the value of version 2", r.Status, r.Body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Error("a secret value response may be cached")
	}
	if r := e.reveal("GET", "/api/secrets/stripe_secret_key?version=1", v1, admin...); !strings.Contains(string(r.Body), v1) {
		t.Fatalf("GET ?version=1 = %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/api/secrets/stripe_secret_key?version=abc", nil, admin...); r.Status != 400 {
		t.Fatalf("GET ?version=abc = %d, want 400", r.Status)
	}
	if r := e.do("GET", "/api/secrets/stripe_secret_key/versions", nil, admin...); r.Status != 200 || !strings.Contains(string(r.Body), `"items":[{"version":2`) {
		t.Fatalf("GET versions = %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/api/secrets", nil, admin...); r.Status != 200 || !strings.Contains(string(r.Body), `"name":"stripe_secret_key"`) || !strings.Contains(string(r.Body), `"nextCursor":null`) {
		t.Fatalf("GET list = %d %s", r.Status, r.Body)
	}

	// A developer's namespace, with the name encoded or not.
	own := "dev/" + devID + "/db"
	dv := e.h.Secret()
	if r := e.do("PUT", "/api/secrets/"+url.PathEscape(own), map[string]any{"value": dv}, dev...); r.Status != 201 {
		t.Fatalf("developer PUT own (encoded) = %d %s", r.Status, r.Body)
	}
	if r := e.reveal("GET", "/api/secrets/"+own, dv, dev...); r.Status != 200 || !strings.Contains(string(r.Body), dv) {
		t.Fatalf("developer GET own (raw slashes) = %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/api/secrets/"+own+"/versions", nil, dev...); r.Status != 200 || !strings.Contains(string(r.Body), `"version":1`) {
		t.Fatalf("developer GET own versions = %d %s", r.Status, r.Body)
	}
	if r := e.do("POST", "/api/secrets", map[string]any{"name": "dev/" + devID + "/other", "value": "v"}, dev...); r.Status != 201 {
		t.Fatalf("developer POST = %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/api/secrets", nil, dev...); r.Status != 200 || strings.Contains(string(r.Body), "stripe_secret_key") || !strings.Contains(string(r.Body), own) {
		t.Fatalf("developer list = %d %s, want only their own", r.Status, r.Body)
	}
	for _, path := range []string{"/api/secrets/stripe_secret_key", "/api/secrets/stripe_secret_key/versions"} {
		if r := e.do("GET", path, nil, dev...); r.Status != 403 || errCode(r) != vectabase.EFORBIDDEN {
			t.Fatalf("developer GET %s = %d %s, want 403", path, r.Status, r.Body)
		}
	}
	if ent := e.lastAudit(); ent.Result != vectabase.ResultDenied || ent.ActorID != devID || ent.ResourceID != "stripe_secret_key" {
		t.Fatalf("refusal audited as %+v", ent)
	}
	if r := e.do("GET", "/api/secrets", nil, plain...); r.Status != 403 {
		t.Fatalf("user list = %d, want 403", r.Status)
	}

	// No token: 401, counted in the address's per-minute aggregate rather
	// than audited one row each (TestAnonymousRefusalsAreAggregated).
	n := e.auditCount()
	if r := e.do("GET", "/api/secrets/stripe_secret_key", nil); r.Status != 401 {
		t.Fatalf("GET without a token = %d, want 401", r.Status)
	}
	if got := e.auditCount(); got != n {
		t.Fatalf("unauthenticated read left %d audit rows of its own, want 0", got-n)
	}
	// Bad input: 4xx in the contract format, audited.
	for _, bad := range []struct {
		method, path string
		body         any
		status       int
	}{
		{"PUT", "/api/secrets/x", `{"value":`, 400},
		{"PUT", "/api/secrets/x", `{"value":"v","other":1}`, 400},
		{"PUT", "/api/secrets/x", `{}`, 400},
		{"PUT", "/api/secrets/x", `{"value":"v","expectedVersion":-1}`, 400},
		{"PUT", "/api/secrets/bad..name%2F%2F", `{"value":"v"}`, 400},
		{"PUT", "/api/secrets/a%25zz", `{"value":"v"}`, 400},
		{"GET", "/api/secrets?limit=100000", nil, 400},
		{"GET", "/api/secrets?cursor=%%%", nil, 400},
		{"GET", "/api/secrets/nope", nil, 404},
		{"DELETE", "/api/secrets/nope", nil, 404},
		{"PUT", "/api/secrets/x", `{"value":"` + strings.Repeat("a", vault.MaxValueBytes+1) + `"}`, 400},
	} {
		n := e.auditCount()
		r := e.do(bad.method, bad.path, bad.body, admin...)
		if r.Status != bad.status || errCode(r) == "" {
			t.Errorf("%s %s = %d %s, want %d with an error body", bad.method, bad.path, r.Status, truncate(r.Body), bad.status)
		}
		if got := e.auditCount(); got != n+1 {
			t.Errorf("%s %s left %d audit rows, want 1", bad.method, bad.path, got-n)
		}
	}
	if r := e.do("DELETE", "/api/secrets/stripe_secret_key", nil, admin...); r.Status != 204 {
		t.Fatalf("DELETE = %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/api/secrets/stripe_secret_key", nil, admin...); r.Status != 404 {
		t.Fatalf("GET after DELETE = %d, want 404", r.Status)
	}
	if res, err := e.al.Verify(context.Background()); err != nil || !res.OK {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
	e.h.Check(nil)
	e.h.CheckTables(e.db, "audit_logs", "secret_versions", "secrets")
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

func (e *env) auditCount() int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestReadsFailClosedOverHTTP: with audit_logs unwritable, a secret read
// answers 503 UNAVAILABLE in the contract format and carries no value.
func TestReadsFailClosedOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, admin := e.user("admin", e.h.Password())
	v := e.h.Secret()
	if r := e.do("PUT", "/api/secrets/k", map[string]any{"value": v}, admin...); r.Status != 201 {
		t.Fatalf("PUT = %d", r.Status)
	}
	for _, sql := range []string{
		`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'read-only'; END $$`,
		`CREATE TRIGGER refuse BEFORE INSERT ON audit_logs FOR EACH STATEMENT EXECUTE FUNCTION refuse()`,
	} {
		if _, err := e.db.Pool.Exec(context.Background(), sql); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{"/api/secrets/k", "/api/secrets/k?version=1", "/api/secrets", "/api/secrets/k/versions"} {
		r := e.do("GET", path, nil, admin...)
		if r.Status != 503 || errCode(r) != vectabase.EUNAVAILABLE {
			t.Errorf("GET %s with unwritable audit = %d %s, want 503 UNAVAILABLE", path, r.Status, r.Body)
		}
	}
	// Check (below) fails if v reached any response.
	e.h.Check(nil)
}

func TestAdminAuditRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	adminID, admin := e.user("admin", e.h.Password())
	_, dev := e.user("developer", e.h.Password())
	for i := range 5 {
		e.do("PUT", fmt.Sprintf("/api/secrets/s%d", i), map[string]any{"value": e.h.Secret()}, admin...)
	}
	if r := e.do("GET", "/api/admin/audit", nil, dev...); r.Status != 403 {
		t.Fatalf("developer GET audit = %d, want 403", r.Status)
	}
	var page audit.Page
	var ids []int64
	cursor := ""
	for range 10 {
		target := "/api/admin/audit?action=secret.write&limit=2&actorId=" + adminID
		if cursor != "" {
			target += "&cursor=" + url.QueryEscape(cursor)
		}
		r := e.do("GET", target, nil, admin...)
		if r.Status != 200 {
			t.Fatalf("GET audit = %d %s", r.Status, r.Body)
		}
		page = audit.Page{}
		_ = json.Unmarshal(r.Body, &page)
		for _, it := range page.Items {
			ids = append(ids, it.ID)
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	if len(ids) != 5 {
		t.Fatalf("paged %d secret.write entries, want 5", len(ids))
	}
	for _, bad := range []string{"?since=yesterday", "?limit=0", "?limit=x", "?cursor=zz", "?limit=501"} {
		if r := e.do("GET", "/api/admin/audit"+bad, nil, admin...); r.Status != 400 {
			t.Errorf("GET audit%s = %d, want 400", bad, r.Status)
		}
	}
	r := e.do("GET", "/api/admin/audit/verify", nil, admin...)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"ok":true`) {
		t.Fatalf("verify = %d %s", r.Status, r.Body)
	}
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE audit_logs SET actor_id = 'someone-else' WHERE id = $1`, ids[2]); err != nil {
		t.Fatal(err)
	}
	r = e.do("GET", "/api/admin/audit/verify", nil, admin...)
	var res audit.VerifyResult
	_ = json.Unmarshal(r.Body, &res)
	if r.Status != 200 || res.OK || res.FirstBroken != ids[2] {
		t.Fatalf("verify after tampering = %d %s, want ok false naming row %d", r.Status, r.Body, ids[2])
	}
	e.h.Check(nil)
}

// TestProperty16_NoCanaryLeaks claims: with canary values planted as
// secret values (plain and shaped like Stripe keys, API keys and JWTs), as
// passwords and as live access and refresh tokens, and every secrets and
// admin audit route driven with good and malformed input carrying them (in
// bodies, query strings and credential headers), no canary appears in any
// log line, error body, response (other than a secret's own value returned
// to a reader allowed to see it), metric or audit row.
func TestProperty16_NoCanaryLeaks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, admin := e.user("admin", e.h.Password())
	devID, dev := e.user("developer", e.h.Password())
	// Failed logins with canary passwords.
	e.do("POST", "/api/auth/login", map[string]string{"email": "nobody@example.com", "password": e.h.Password()})
	e.do("POST", "/api/auth/register", map[string]string{"email": "not-an-email", "password": e.h.Password()})

	values := []string{e.h.Secret(), e.h.StripeKey(), e.h.APIKey(), e.h.JWT(), e.h.Password()}
	for i, v := range values {
		name := fmt.Sprintf("canary_%d", i)
		e.do("PUT", "/api/secrets/"+name, map[string]any{"value": v}, admin...)
		e.reveal("GET", "/api/secrets/"+name, v, admin...)
		e.do("GET", "/api/secrets/"+name+"/versions", nil, admin...)
		e.do("GET", "/api/secrets/"+name, nil, dev...) // refused
		e.do("PUT", "/api/secrets/"+name, map[string]any{"value": v, "expectedVersion": 7}, admin...)
		e.do("PUT", "/api/secrets/dev%2F"+devID+"%2F"+name, map[string]any{"value": v}, dev...)
	}
	e.do("GET", "/api/secrets", nil, admin...)
	e.do("GET", "/api/secrets", nil, dev...)
	e.do("GET", "/api/admin/audit?limit=500", nil, admin...)
	e.do("GET", "/api/admin/audit/verify", nil, admin...)

	routes := []struct{ method, path string }{
		{"GET", "/api/secrets"}, {"POST", "/api/secrets"},
		{"GET", "/api/secrets/not_there"}, {"PUT", "/api/secrets/canary_0"}, {"DELETE", "/api/secrets/canary_9"},
		{"GET", "/api/secrets/canary_0/versions"}, {"PUT", "/api/secrets/a/b/c"},
		{"GET", "/api/admin/audit"}, {"GET", "/api/admin/audit/verify"},
		{"POST", "/api/auth/login"}, {"POST", "/api/auth/register"},
	}
	canaries := []string{e.h.Secret(), e.h.StripeKey(), e.h.JWT()}
	for _, rt := range routes {
		for _, c := range canaries {
			e.h.DriveMalformed(e.srv.App(), rt.method, rt.path, c, admin...)
		}
		e.h.DriveMalformed(e.srv.App(), rt.method, rt.path, e.h.APIKey())
	}
	e.do("DELETE", "/api/secrets/canary_0", nil, admin...)
	e.h.Check(nil)
	e.h.CheckTables(e.db, "audit_logs", "secret_versions", "secrets", "users", "sessions")
}

// FuzzSecretsRoutes: whatever the method, path and body, a secrets route
// answers in the contract's format with a status below 500 and never
// panics.
func FuzzSecretsRoutes(f *testing.F) {
	for _, s := range []struct{ method, path, body string }{
		{"GET", "", ""}, {"PUT", "/a", `{"value":"v"}`}, {"PUT", "/a%2Fb", `{"value":"v","expectedVersion":0}`},
		{"GET", "/a/versions", ""}, {"DELETE", "/a", ""}, {"POST", "", `{"name":"n","value":"v"}`},
		{"GET", "?limit=-1&cursor=%FF", ""}, {"PUT", "/%00", `{"value":1}`}, {"GET", "/a?version=99999999999999999999", ""},
		{"PUT", "/" + strings.Repeat("x", 300), `{"value":"v"}`}, {"PUT", "/a/../b", `{"value":"v"}`},
	} {
		f.Add(s.method, s.path, s.body)
	}
	e := newEnv(f)
	_, admin := e.user("admin", "fuzz-password-1")
	f.Fuzz(func(t *testing.T, method, path, body string) {
		switch method {
		case "GET", "PUT", "POST", "DELETE":
		default:
			return
		}
		target := "/api/secrets" + path
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host != "" || strings.ContainsAny(path, " \t\r\n#") {
			return
		}
		var b any
		if body != "" {
			b = body
		}
		resp, err := e.srv.App().Test(canarytest.Request(method, target, b, admin...), -1)
		if err != nil {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r := resp2(resp.StatusCode, raw)
		if r.Status >= 500 {
			t.Fatalf("%s %s %q = %d %s", method, target, body, r.Status, r.Body)
		}
		if r.Status >= 400 && errCode(r) == "" {
			t.Fatalf("%s %s = %d without the contract error body: %s", method, target, r.Status, r.Body)
		}
	})
}
