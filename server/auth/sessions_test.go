package auth_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/store"
)

func sidOf(t tb, tok string) string {
	t.Helper()
	p, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatalf("ParseSigned: %v", err)
	}
	var c accessClaims
	if err := p.UnsafeClaimsWithoutVerification(&c); err != nil {
		t.Fatal(err)
	}
	return c.SID
}

// TestProperty7_EveryLoginHasSession claims: every successful login creates
// exactly one new sessions row for that user, holding the keyed hash of the
// refresh token it returned (never the token), the client's IP and user
// agent, and an expiry RefreshTTL after its creation.
func TestProperty7_EveryLoginHasSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	ctx := context.Background()
	n := 0
	rapid.Check(t, func(rt *rapid.T) {
		e.t = rt
		n++
		email := fmt.Sprintf("%s%d@example.com", rapid.StringMatching(`[a-z]{1,12}`).Draw(rt, "local"), n)
		password := rapid.StringN(8, 64, -1).Draw(rt, "password")
		ua := rapid.StringMatching(`[A-Za-z0-9/ .;()]{0,80}`).Draw(rt, "userAgent")
		u := e.register(email, password)
		logins := rapid.IntRange(1, 3).Draw(rt, "logins")
		for i := 0; i < logins; i++ {
			r := e.do("POST", "/api/auth/login", map[string]string{"email": email, "password": password},
				"User-Agent", ua)
			if r.Status != 200 {
				rt.Fatalf("login = %d %s, want 200", r.Status, r.Body)
			}
			var lr loginBody
			r.json(rt, &lr)
			sess, err := e.db.SessionByID(ctx, sidOf(rt, lr.Token))
			if err != nil {
				rt.Fatalf("session of login %d: %v", i, err)
			}
			hash, _ := e.kr.MAC("refresh_token", []byte(lr.RefreshToken))
			var stored []byte
			if err := e.db.Pool.QueryRow(ctx, `SELECT refresh_token_hash FROM sessions WHERE id = $1`, sess.ID).Scan(&stored); err != nil {
				rt.Fatal(err)
			}
			if string(stored) != string(hash) || strings.Contains(string(stored), lr.RefreshToken) {
				rt.Fatalf("session %s holds %x, want MAC(refresh_token) %x", sess.ID, stored, hash)
			}
			if sess.UserID != u.ID || sess.FamilyID != sess.ID || sess.ParentID != nil || sess.RevokedAt != nil || sess.UsedAt != nil {
				rt.Fatalf("session = %+v, want a fresh chain of user %s", sess, u.ID)
			}
			// HTTP trims the header's surrounding spaces.
			if want := strings.TrimSpace(ua); want != "" && (sess.UserAgent == nil || *sess.UserAgent != want) {
				rt.Fatalf("session user agent = %v, want %q", sess.UserAgent, want)
			}
			if sess.IP == nil || !sess.IP.IsValid() {
				rt.Fatalf("session has no IP")
			}
			if d := sess.ExpiresAt.Sub(sess.CreatedAt); d != e.cfg.RefreshTTL {
				rt.Fatalf("session expires %s after creation, want %s", d, e.cfg.RefreshTTL)
			}
		}
		all, err := e.db.SessionsOfUser(ctx, u.ID)
		if err != nil || len(all) != logins {
			rt.Fatalf("user has %d sessions (%v), want %d", len(all), err, logins)
		}
	})
}

func (e *env) refresh(tok string) (response, loginBody) {
	e.t.Helper()
	r := e.do("POST", "/api/auth/refresh", map[string]string{"refreshToken": tok})
	var lb loginBody
	if r.Status == 200 {
		r.json(e.t, &lb)
	}
	return r, lb
}

// A refresh token works once; presenting it again revokes the whole chain
// (the successor and its access token stop working) and is audited.
func TestRefreshReuseRevokesFamily(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	e.register("reuse@example.com", "password-123")
	a := e.login("reuse@example.com", "password-123")
	other := e.login("reuse@example.com", "password-123") // another device: must survive
	r, b := e.refresh(a.RefreshToken)
	if r.Status != 200 {
		t.Fatalf("first refresh = %d %s", r.Status, r.Body)
	}
	r, c := e.refresh(b.RefreshToken)
	if r.Status != 200 {
		t.Fatalf("second refresh = %d %s", r.Status, r.Body)
	}
	if r, _ := e.refresh(a.RefreshToken); r.Status != 401 || r.code() != "UNAUTHORIZED" {
		t.Fatalf("reused refresh token = %d %s, want 401", r.Status, r.Body)
	}
	if r, _ := e.refresh(c.RefreshToken); r.Status != 401 {
		t.Errorf("newest token of a revoked chain = %d, want 401", r.Status)
	}
	if r := e.do("GET", "/api/auth/me", nil, bearer(c.Token)...); r.Status != 401 {
		t.Errorf("access token of a revoked chain = %d, want 401", r.Status)
	}
	if r := e.do("GET", "/api/auth/me", nil, bearer(other.Token)...); r.Status != 200 {
		t.Errorf("another session of the user after reuse = %d, want 200", r.Status)
	}
	if n := e.aud.count("auth.refresh_reuse"); n != 1 {
		t.Errorf("audit has %d auth.refresh_reuse events, want 1: %v", n, e.aud.actions())
	}
	sessions, _ := e.db.SessionsOfUser(context.Background(), b.User.ID)
	for _, s := range sessions {
		revoked := s.RevokedAt != nil
		if want := s.FamilyID == sidOf(t, a.Token); revoked != want {
			t.Errorf("session %s (family %s) revoked = %v, want %v", s.ID, s.FamilyID, revoked, want)
		}
	}
	if r, _ := e.refresh("not-a-token"); r.Status != 401 {
		t.Errorf("refresh with garbage = %d, want 401", r.Status)
	}
	if r, _ := e.refresh(strings.Repeat("A", 43)); r.Status != 401 {
		t.Errorf("refresh with an unknown token = %d, want 401", r.Status)
	}
}

// With a reuse interval, a token presented again within it (two tabs
// refreshing at once) gets the very same successor pair; after the
// successor is used, or after the interval, reuse revokes the chain.
func TestRefreshReuseIntervalReturnsSamePair(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.RefreshReuseInterval = 10 * time.Second
	e := newEnv(t, cfg)
	e.register("grace@example.com", "password-123")

	a := e.login("grace@example.com", "password-123")
	_, b1 := e.refresh(a.RefreshToken)
	r, b2 := e.refresh(a.RefreshToken)
	if r.Status != 200 || b1.RefreshToken != b2.RefreshToken || b1.Token != b2.Token {
		t.Fatalf("refresh within the interval = %d, same pair = %v, want 200 and the same pair", r.Status, b1.Token == b2.Token && b1.RefreshToken == b2.RefreshToken)
	}
	_, c := e.refresh(b1.RefreshToken)
	if c.Token == "" {
		t.Fatal("refresh of the successor failed")
	}
	if r, _ := e.refresh(a.RefreshToken); r.Status != 401 {
		t.Fatalf("reuse after the successor was used = %d, want 401", r.Status)
	}
	if r, _ := e.refresh(c.RefreshToken); r.Status != 401 {
		t.Errorf("chain after reuse = %d, want 401 (revoked)", r.Status)
	}

	x := e.login("grace@example.com", "password-123")
	_, y := e.refresh(x.RefreshToken)
	e.clock.advance(11 * time.Second)
	if r, _ := e.refresh(x.RefreshToken); r.Status != 401 {
		t.Fatalf("reuse after the interval = %d, want 401", r.Status)
	}
	if r, _ := e.refresh(y.RefreshToken); r.Status != 401 {
		t.Errorf("successor after reuse past the interval = %d, want 401", r.Status)
	}
	if n := e.aud.count("auth.refresh_reuse"); n != 2 {
		t.Errorf("audit has %d reuse events, want 2", n)
	}
}

// Concurrent refreshes of one token: with a reuse interval all get the same
// pair; without one, exactly one wins and the rest revoke the chain.
func TestConcurrentRefresh(t *testing.T) {
	t.Parallel()
	for _, grace := range []time.Duration{0, 10 * time.Second} {
		t.Run(fmt.Sprint(grace), func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.RefreshReuseInterval = grace
			e := newEnv(t, cfg)
			e.register("conc@example.com", "password-123")
			a := e.login("conc@example.com", "password-123")
			const n = 8
			var wg sync.WaitGroup
			results := make([]loginBody, n)
			statuses := make([]int, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := e.svc.Refresh(context.Background(), a.RefreshToken, authMeta())
					if err == nil {
						statuses[i] = 200
						results[i] = loginBody{Token: res.Token, RefreshToken: res.RefreshToken}
					} else {
						statuses[i] = 401
					}
				}()
			}
			wg.Wait()
			ok := 0
			for i := range n {
				if statuses[i] == 200 {
					ok++
					if grace > 0 && (results[i].RefreshToken != results[0].RefreshToken || results[i].Token != results[0].Token) {
						t.Errorf("concurrent refresh %d got another pair", i)
					}
				}
			}
			switch {
			case grace > 0 && ok != n:
				t.Errorf("%d of %d concurrent refreshes succeeded within the interval, want all", ok, n)
			case grace == 0 && ok != 1:
				t.Errorf("%d of %d concurrent refreshes succeeded without an interval, want 1", ok, n)
			}
		})
	}
}

// Logout ends the current chain only; ?all=true ends every session.
func TestLogoutAll(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	e.register("out@example.com", "password-123")
	a := e.login("out@example.com", "password-123")
	b := e.login("out@example.com", "password-123")
	c := e.login("out@example.com", "password-123")
	if r := e.do("POST", "/api/auth/logout", nil, bearer(a.Token)...); r.Status != 204 {
		t.Fatalf("logout = %d", r.Status)
	}
	if r := e.do("GET", "/api/auth/me", nil, bearer(b.Token)...); r.Status != 200 {
		t.Fatalf("other session after logout = %d, want 200", r.Status)
	}
	if r := e.do("POST", "/api/auth/logout?all=maybe", nil, bearer(b.Token)...); r.Status != 400 {
		t.Fatalf("logout all=maybe = %d, want 400", r.Status)
	}
	if r := e.do("POST", "/api/auth/logout?all=true", nil, bearer(b.Token)...); r.Status != 204 {
		t.Fatalf("logout all = %d", r.Status)
	}
	for _, tok := range []string{b.Token, c.Token} {
		if r := e.do("GET", "/api/auth/me", nil, bearer(tok)...); r.Status != 401 {
			t.Errorf("me after logout all = %d, want 401", r.Status)
		}
	}
	if r, _ := e.refresh(c.RefreshToken); r.Status != 401 {
		t.Errorf("refresh after logout all = %d, want 401", r.Status)
	}
	if n := e.aud.count("auth.logout"); n != 2 {
		t.Errorf("audit has %d logout events, want 2", n)
	}
}

// Expired refresh tokens are refused.
func TestRefreshTokenExpires(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.RefreshTTL = time.Hour
	e := newEnv(t, cfg)
	e.register("exp@example.com", "password-123")
	a := e.login("exp@example.com", "password-123")
	e.clock.advance(time.Hour + time.Second)
	if r, _ := e.refresh(a.RefreshToken); r.Status != 401 {
		t.Fatalf("refresh after expiry = %d, want 401", r.Status)
	}
	if n := e.aud.count("auth.refresh_reuse"); n != 0 {
		t.Errorf("an expired token counted as reuse")
	}
	var revoked *time.Time
	_ = e.db.Pool.QueryRow(context.Background(), `SELECT revoked_at FROM sessions WHERE id = $1`, sidOf(t, a.Token)).Scan(&revoked)
	if revoked != nil {
		t.Error("an expired token revoked its session")
	}
	_ = store.Session{}
}
