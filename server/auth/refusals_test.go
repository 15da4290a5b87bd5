package auth_test

import (
	"testing"
)

// A flood against a locked account writes one auth.login_throttled audit
// row per account and window on an instance, not one per request; bad and
// missing bearer tokens write none.
func TestRefusalsAreNotAuditedOneByOne(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxFailuresPerAccount = 2
	e := newEnv(t, cfg)
	e.register("locked@example.com", "password-123")
	for range 3 {
		e.do("POST", "/api/auth/login", map[string]string{"email": "locked@example.com", "password": "wrong-password"})
	}
	for i := range 50 {
		if r := e.do("POST", "/api/auth/login", map[string]string{"email": "locked@example.com", "password": "wrong-password"}); r.Status != 429 {
			t.Fatalf("login %d on a locked account = %d %s, want 429", i, r.Status, r.Body)
		}
	}
	if n := e.aud.count("auth.login_throttled"); n != 1 {
		t.Errorf("53 logins on a locked account wrote %d auth.login_throttled rows, want 1", n)
	}
	before := len(e.aud.actions())
	for i := range 100 {
		var h []string
		if i%2 == 0 {
			h = bearer("not-a-token")
		}
		if r := e.do("GET", "/api/auth/me", nil, h...); r.Status != 401 {
			t.Fatalf("me with a bad token = %d, want 401", r.Status)
		}
	}
	if after := len(e.aud.actions()); after != before {
		t.Errorf("100 bad-token calls wrote %d audit rows, want 0", after-before)
	}
}
