package auth_test

import (
	"context"
	"strings"
	"testing"

	"github.com/vectabase/vectabase"
)

func TestRegisterLoginMeRefreshLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	u := e.register("Bob@Example.com", "s3cret-password")
	if u.ID == "" || u.Email == nil || *u.Email != "bob@example.com" {
		t.Fatalf("register user = %+v, want an id and the lower-cased email", u)
	}
	lr := e.login("bob@example.com", "s3cret-password")
	if lr.TokenType != "Bearer" || lr.ExpiresIn != 3600 || lr.Token == "" || lr.RefreshToken == "" || lr.User.ID != u.ID {
		t.Fatalf("login = %+v, want a Bearer pair for %s expiring in 3600", lr, u.ID)
	}
	r := e.do("GET", "/api/auth/me", nil, bearer(lr.Token)...)
	if r.Status != 200 {
		t.Fatalf("me = %d %s, want 200", r.Status, r.Body)
	}
	var me struct {
		User    struct{ ID, Email, Role string }
		Profile struct{ ID, Role string }
	}
	r.json(t, &me)
	if me.User.ID != u.ID || me.Profile.ID != u.ID || me.Profile.Role != "user" {
		t.Fatalf("me = %+v, want user and profile of %s", me, u.ID)
	}
	if r := e.do("GET", "/api/auth/me", nil); r.Status != 401 || r.code() != "UNAUTHORIZED" {
		t.Fatalf("me without token = %d %s, want 401 UNAUTHORIZED", r.Status, r.Body)
	}

	r = e.do("POST", "/api/auth/refresh", map[string]string{"refreshToken": lr.RefreshToken})
	if r.Status != 200 {
		t.Fatalf("refresh = %d %s, want 200", r.Status, r.Body)
	}
	var rr loginBody
	r.json(t, &rr)
	if rr.RefreshToken == lr.RefreshToken || rr.Token == "" {
		t.Fatalf("refresh gave the same refresh token back")
	}
	if r := e.do("GET", "/api/auth/me", nil, bearer(rr.Token)...); r.Status != 200 {
		t.Fatalf("me with refreshed token = %d %s, want 200", r.Status, r.Body)
	}
	if r := e.do("POST", "/api/auth/logout", nil, bearer(rr.Token)...); r.Status != 204 {
		t.Fatalf("logout = %d %s, want 204", r.Status, r.Body)
	}
	if r := e.do("GET", "/api/auth/me", nil, bearer(rr.Token)...); r.Status != 401 {
		t.Fatalf("me after logout = %d %s, want 401", r.Status, r.Body)
	}
	if r := e.do("POST", "/api/auth/refresh", map[string]string{"refreshToken": rr.RefreshToken}); r.Status != 401 {
		t.Fatalf("refresh after logout = %d %s, want 401", r.Status, r.Body)
	}
}

// Authenticate (for tokens that do not come in a header) agrees with the
// middleware.
func TestAuthenticate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	u := e.register("ws@example.com", "password-123")
	lr := e.login("ws@example.com", "password-123")
	p, err := e.svc.Authenticate(context.Background(), lr.Token)
	if err != nil || p.UserID != u.ID || p.Role != "user" || p.Email != "ws@example.com" || p.SessionID == "" {
		t.Fatalf("Authenticate(good) = %+v, %v, want user %s", p, err, u.ID)
	}
	for _, bad := range []string{"", lr.RefreshToken, lr.Token + "x", strings.Repeat("a", 5000)} {
		if _, err := e.svc.Authenticate(context.Background(), bad); vectabase.ErrorCode(err) != vectabase.EUNAUTHORIZED {
			t.Errorf("Authenticate(bad) err = %v, want UNAUTHORIZED", err)
		}
	}
}
