package auth_test

import (
	"testing"
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
