package auth_test

import (
	"context"
	"testing"
	"time"
)

// warm sends two requests with the token, so the second is served from the
// verified cache, and checks the cache holds it.
func (e *env) warm(tok string) {
	e.t.Helper()
	for i := 0; i < 2; i++ {
		if r := e.do("GET", "/api/auth/me", nil, bearer(tok)...); r.Status != 200 {
			e.t.Fatalf("GET /api/auth/me = %d %s, want 200", r.Status, r.Body)
		}
	}
	if n := e.svc.VerifiedTokens(); n == 0 {
		e.t.Fatalf("verified cache holds %d tokens after two requests, want at least 1", n)
	}
}

// A cached access token stops working on the very next request after its
// session logs out.
func TestCachedTokenLogoutTakesEffectAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	e.register("cache-logout@example.com", "password-123")
	a := e.login("cache-logout@example.com", "password-123")
	e.warm(a.Token)
	if r := e.do("POST", "/api/auth/logout", nil, bearer(a.Token)...); r.Status != 204 {
		t.Fatalf("logout = %d %s, want 204", r.Status, r.Body)
	}
	if r := e.do("GET", "/api/auth/me", nil, bearer(a.Token)...); r.Status != 401 {
		t.Errorf("cached token after logout = %d, want 401", r.Status)
	}
}

// A cached access token of a refresh chain stops working on the very next
// request after a refresh token of that chain is reused.
func TestCachedTokenReuseRevocationTakesEffectAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	e.register("cache-reuse@example.com", "password-123")
	a := e.login("cache-reuse@example.com", "password-123")
	r, b := e.refresh(a.RefreshToken)
	if r.Status != 200 {
		t.Fatalf("refresh = %d %s", r.Status, r.Body)
	}
	e.warm(b.Token)
	if r, _ := e.refresh(a.RefreshToken); r.Status != 401 {
		t.Fatalf("reused refresh token = %d, want 401", r.Status)
	}
	if r := e.do("GET", "/api/auth/me", nil, bearer(b.Token)...); r.Status != 401 {
		t.Errorf("cached token of a revoked chain = %d, want 401", r.Status)
	}
}

// A role change is seen by the very next request of a cached token, both
// ways.
func TestCachedTokenRoleChangeTakesEffectAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	ctx := context.Background()
	u := e.register("cache-role@example.com", "password-123")
	a := e.login("cache-role@example.com", "password-123")
	e.warm(a.Token)
	for _, role := range []string{"admin", "user", "admin"} {
		if _, err := e.db.Pool.Exec(ctx, `UPDATE profiles SET role = $1 WHERE id = $2`, role, u.ID); err != nil {
			t.Fatal(err)
		}
		p, err := e.svc.Authenticate(ctx, a.Token)
		if err != nil {
			t.Fatalf("Authenticate err = %v, want nil", err)
		}
		if p.Role != role {
			t.Errorf("role after setting %q = %q", role, p.Role)
		}
	}
}

// A cached token is refused once it expires, as an uncached one is.
func TestCachedTokenExpires(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.AccessTTL = time.Minute
	e := newEnv(t, cfg)
	e.register("cache-exp@example.com", "password-123")
	a := e.login("cache-exp@example.com", "password-123")
	e.warm(a.Token)
	e.clock.advance(cfg.AccessTTL + time.Minute)
	if r := e.do("GET", "/api/auth/me", nil, bearer(a.Token)...); r.Status != 401 {
		t.Errorf("cached token past its expiry = %d, want 401", r.Status)
	}
}
