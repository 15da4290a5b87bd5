package auth_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vectabase/vectabase/store"
)

// fakeDiscord answers like Discord's documented OAuth2 token endpoint
// (POST /oauth2/token, form-encoded) and GET /users/@me.
type fakeDiscord struct {
	t    testing.TB
	srv  *httptest.Server
	mu   sync.Mutex
	code map[string]map[string]any // valid codes -> the user /users/@me returns for their token
	used map[string]bool
	// challenge is the PKCE code_challenge (S256) of the authorize request
	// each code was issued for; the token request must bring its verifier.
	challenge map[string]string
}

func newFakeDiscord(t testing.TB) *fakeDiscord {
	f := &fakeDiscord{t: t, code: map[string]map[string]any{}, used: map[string]bool{}, challenge: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/token", func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
			http.Error(w, `{"error":"invalid_request"}`, 400)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, `{"error":"invalid_request"}`, 400)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		code := r.PostForm.Get("code")
		if r.PostForm.Get("grant_type") != "authorization_code" || r.PostForm.Get("client_id") != "client-1" ||
			r.PostForm.Get("client_secret") != "discord-client-secret" || r.PostForm.Get("redirect_uri") != "https://app.example/cb" {
			w.WriteHeader(401)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		if _, ok := f.code[code]; !ok || f.used[code] {
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"Invalid \"code\" in request."}`))
			return
		}
		// PKCE (RFC 7636): BASE64URL(SHA256(code_verifier)) must be the
		// code_challenge the code was issued for.
		verifier := r.PostForm.Get("code_verifier")
		sum := sha256.Sum256([]byte(verifier))
		if len(verifier) < 43 || len(verifier) > 128 || base64.RawURLEncoding.EncodeToString(sum[:]) != f.challenge[code] {
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"Invalid \"code_verifier\""}`))
			return
		}
		f.used[code] = true
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "discord-at-" + code, "token_type": "Bearer",
			"expires_in": 604800, "refresh_token": "discord-rt", "scope": "identify email"})
	})
	mux.HandleFunc("GET /users/@me", func(w http.ResponseWriter, r *http.Request) {
		code, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer discord-at-")
		f.mu.Lock()
		u, known := f.code[code]
		f.mu.Unlock()
		if !ok || !known {
			w.WriteHeader(401)
			_, _ = w.Write([]byte(`{"message":"401: Unauthorized","code":0}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(u)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// bind records that code was issued for an authorize request with
// challenge, as Discord does when the user approves.
func (f *fakeDiscord) bind(code, challenge string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.challenge[code] = challenge
}

func (f *fakeDiscord) grant(code string, user map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.code[code] = user
}

func discordEnv(t *testing.T) (*env, *fakeDiscord) {
	f := newFakeDiscord(t)
	cfg := testConfig()
	cfg.DiscordClientID = "client-1"
	cfg.DiscordClientSecret = "discord-client-secret"
	cfg.DiscordRedirectURI = "https://app.example/cb"
	cfg.DiscordAPIBase = f.srv.URL
	e := newEnv(t, cfg)
	e.fake = f
	return e, f
}

// browser is what one browser holds of a sign-in it started: the binding
// cookie, and the PKCE challenge Discord saw in the authorize redirect.
type browser struct{ cookie, challenge string }

// authorize starts the flow and returns the state from the redirect.
func (e *env) authorize(t testing.TB, base string) string {
	t.Helper()
	r := e.do("GET", "/api/auth/discord", nil)
	if r.Status != 302 {
		t.Fatalf("GET /api/auth/discord = %d %s, want 302", r.Status, r.Body)
	}
	loc, err := url.Parse(r.Header.Get("Location"))
	if err != nil || loc.Scheme+"://"+loc.Host+loc.Path != base+"/oauth2/authorize" {
		t.Fatalf("redirect to %q, want %s/oauth2/authorize", r.Header.Get("Location"), base)
	}
	q := loc.Query()
	if q.Get("client_id") != "client-1" || q.Get("response_type") != "code" || q.Get("redirect_uri") != "https://app.example/cb" ||
		!strings.Contains(q.Get("scope"), "identify") || q.Get("state") == "" ||
		q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 {
		t.Fatalf("authorize query = %v, want client_id, response_type=code, redirect_uri, scope, state, an S256 code_challenge", q)
	}
	var ck *http.Cookie
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == "vb_discord_oauth" {
			ck = c
		}
	}
	if ck == nil || ck.Value == "" || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteLaxMode ||
		ck.MaxAge <= 0 || ck.MaxAge > 600 || ck.Path != "/api/auth/discord" {
		t.Fatalf("Set-Cookie = %q, want a short-lived HttpOnly, Secure, SameSite=Lax vb_discord_oauth cookie", r.Header.Values("Set-Cookie"))
	}
	if e.flows == nil {
		e.flows = map[string]browser{}
	}
	e.flows[q.Get("state")] = browser{cookie: ck.Value, challenge: q.Get("code_challenge")}
	return q.Get("state")
}

// callback completes sign-in for state in the browser that started it:
// Discord issues code for that authorize request, and the browser sends
// its cookie back.
func (e *env) callback(code, state string) response {
	b := e.flows[state]
	if e.fake != nil && b.challenge != "" {
		e.fake.bind(code, b.challenge)
	}
	return e.callbackWith(code, state, b.cookie)
}

// callbackWith sends the callback with cookie ("" for none) as the binding.
func (e *env) callbackWith(code, state, cookie string) response {
	var h []string
	if cookie != "" {
		h = []string{"Cookie", "vb_discord_oauth=" + cookie}
	}
	return e.do("GET", "/api/auth/discord?code="+url.QueryEscape(code)+"&state="+url.QueryEscape(state), nil, h...)
}

// A genuine state completes sign-in only in the browser that started it:
// without the binding cookie, or with another browser's, 400 (and the state
// is not spent); with its own, 200. The code is exchanged with the PKCE
// verifier of that sign-in: Discord (the double) refuses a code issued for
// another sign-in's challenge.
func TestDiscordStateBoundToBrowser(t *testing.T) {
	t.Parallel()
	e, f := discordEnv(t)
	f.grant("c1", map[string]any{"id": "66666666666666666", "username": "victim"})
	f.grant("c2", map[string]any{"id": "77777777777777777", "username": "other"})
	mine := e.authorize(t, f.srv.URL)
	theirs := e.authorize(t, f.srv.URL)
	f.bind("c1", e.flows[mine].challenge)
	for name, cookie := range map[string]string{"no cookie": "", "another browser's": e.flows[theirs].cookie, "garbage": "%%%"} {
		if r := e.callbackWith("c1", mine, cookie); r.Status != 400 || r.code() != "BAD_REQUEST" {
			t.Errorf("state with %s cookie = %d %s, want 400 BAD_REQUEST", name, r.Status, r.Body)
		}
	}
	if r := e.callbackWith("c1", mine, e.flows[mine].cookie); r.Status != 200 {
		t.Fatalf("state in its own browser = %d %s, want 200", r.Status, r.Body)
	} else if !strings.Contains(strings.Join(r.Header.Values("Set-Cookie"), ";"), "vb_discord_oauth=;") {
		t.Errorf("successful callback Set-Cookie = %q, want the binding cookie cleared", r.Header.Values("Set-Cookie"))
	}
	// PKCE: a code Discord issued for another sign-in's challenge fails
	// the verifier check there.
	f.bind("c2", e.flows[mine].challenge)
	if r := e.callbackWith("c2", theirs, e.flows[theirs].cookie); r.Status != 401 {
		t.Errorf("code issued for another challenge = %d %s, want 401 (Discord refuses the verifier)", r.Status, r.Body)
	}
}

// With a plain-HTTP redirect URI (local development) the binding cookie is
// not Secure, so the browser sends it back over HTTP.
func TestDiscordStateCookieInsecureForHTTPDev(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	cfg := testConfig()
	cfg.DiscordClientID, cfg.DiscordClientSecret = "client-1", "discord-client-secret"
	cfg.DiscordRedirectURI = "http://127.0.0.1:8080/cb"
	cfg.DiscordAPIBase = f.srv.URL
	e := newEnv(t, cfg)
	r := e.do("GET", "/api/auth/discord", nil)
	cks := (&http.Response{Header: r.Header}).Cookies()
	if r.Status != 302 || len(cks) != 1 || cks[0].Secure || !cks[0].HttpOnly {
		t.Fatalf("GET /api/auth/discord in HTTP dev = %d, cookies %q; want one HttpOnly cookie without Secure", r.Status, r.Header.Values("Set-Cookie"))
	}
}

// Discord sign-in end to end: a new Discord user is created and signed in;
// signing in again links to the same user; a user imported with a Discord
// id is linked by it; the issued tokens work.
func TestDiscordOAuthEndToEnd(t *testing.T) {
	t.Parallel()
	e, f := discordEnv(t)
	ctx := context.Background()
	f.grant("code-1", map[string]any{"id": "80351110224678912", "username": "nelly", "global_name": "Nelly",
		"avatar": "8342729096ea3675442027381ff50dfe", "email": "nelly@example.com", "verified": true})
	r := e.callback("code-1", e.authorize(t, f.srv.URL))
	if r.Status != 200 {
		t.Fatalf("callback = %d %s, want 200", r.Status, r.Body)
	}
	var lr loginBody
	r.json(t, &lr)
	if lr.TokenType != "Bearer" || lr.Token == "" || lr.RefreshToken == "" || lr.User.DiscordID == nil || *lr.User.DiscordID != "80351110224678912" {
		t.Fatalf("callback answer = %+v, want a login for the Discord user", lr)
	}
	if lr.User.Email == nil || *lr.User.Email != "nelly@example.com" {
		t.Errorf("new Discord user email = %v, want the verified Discord email", lr.User.Email)
	}
	if r := e.do("GET", "/api/auth/me", nil, bearer(lr.Token)...); r.Status != 200 {
		t.Fatalf("me with the Discord login token = %d", r.Status)
	}
	if _, err := e.db.SessionByID(ctx, sidOf(t, lr.Token)); err != nil {
		t.Errorf("Discord login has no session row: %v", err)
	}

	// Again: the same user, not a new one.
	f.grant("code-2", map[string]any{"id": "80351110224678912", "username": "nelly2", "global_name": nil, "avatar": nil})
	r = e.callback("code-2", e.authorize(t, f.srv.URL))
	var again loginBody
	r.json(t, &again)
	if r.Status != 200 || again.User.ID != lr.User.ID || again.User.DiscordUsername == nil || *again.User.DiscordUsername != "nelly2" {
		t.Fatalf("second sign-in = %d %+v, want the same user %s with the new username", r.Status, again.User, lr.User.ID)
	}

	// An existing (imported) user with that Discord id is linked, not duplicated.
	imported, err := e.db.CreateUser(ctx, store.NewUser{Email: "carol@example.com", DiscordID: "301234567890123456", DiscordUsername: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	f.grant("code-3", map[string]any{"id": "301234567890123456", "username": "carol", "email": "someone-else@example.com", "verified": true})
	r = e.callback("code-3", e.authorize(t, f.srv.URL))
	var carol loginBody
	r.json(t, &carol)
	if r.Status != 200 || carol.User.ID != imported.ID {
		t.Fatalf("imported Discord user sign-in = %d %+v, want user %s", r.Status, carol.User, imported.ID)
	}

	// An unverified Discord email is not taken over; an email another
	// account holds is not either.
	e.register("taken@example.com", "password-123")
	for code, email := range map[string]string{"code-4": "taken@example.com", "code-5": "unverified@example.com"} {
		f.grant(code, map[string]any{"id": "4" + code[5:] + "0000000000000", "username": "x", "email": email, "verified": code == "code-4"})
		r = e.callback(code, e.authorize(t, f.srv.URL))
		var nu loginBody
		r.json(t, &nu)
		if r.Status != 200 || nu.User.Email != nil {
			t.Errorf("Discord user with email %s = %d %+v, want a new user without email", email, r.Status, nu.User)
		}
	}
	if n := e.aud.count("auth.login"); n != 5 {
		t.Errorf("audit has %d auth.login events, want 5", n)
	}
}

// A forged, tampered, expired or replayed state is refused, and so is a
// code Discord does not accept.
func TestDiscordStateForgedReplayedExpired(t *testing.T) {
	t.Parallel()
	e, f := discordEnv(t)
	for _, c := range []string{"a", "b", "c", "d", "e"} {
		f.grant(c, map[string]any{"id": "55555555555555555", "username": "u"})
	}
	state := e.authorize(t, f.srv.URL)
	payload, mac, _ := strings.Cut(state, ".")
	flip := func(s string) string {
		b := []byte(s)
		if b[0] == 'A' {
			b[0] = 'B'
		} else {
			b[0] = 'A'
		}
		return string(b)
	}
	for name, st := range map[string]string{
		"forged":       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"tampered":     flip(payload) + "." + mac,
		"bad-mac":      payload + "." + flip(mac),
		"no-separator": payload + mac,
		"garbage":      "%%%",
	} {
		if r := e.callback("a", st); r.Status != 401 || r.code() != "UNAUTHORIZED" {
			t.Errorf("%s state = %d %s, want 401", name, r.Status, r.Body)
		}
	}
	if r := e.callback("a", state); r.Status != 200 {
		t.Fatalf("genuine state = %d %s, want 200", r.Status, r.Body)
	}
	if r := e.callback("b", state); r.Status != 401 {
		t.Errorf("replayed state = %d, want 401", r.Status)
	}
	old := e.authorize(t, f.srv.URL)
	e.clock.advance(11 * time.Minute)
	if r := e.callback("c", old); r.Status != 401 {
		t.Errorf("expired state = %d, want 401", r.Status)
	}
	if r := e.callback("not-a-code", e.authorize(t, f.srv.URL)); r.Status != 401 {
		t.Errorf("code Discord refuses = %d %s, want 401", r.Status, r.Body)
	}
	if r := e.do("GET", "/api/auth/discord?error=access_denied&state=x", nil); r.Status != 401 {
		t.Errorf("user denied at Discord = %d, want 401", r.Status)
	}
	if r := e.do("GET", "/api/auth/discord?code=abc", nil); r.Status != 400 {
		t.Errorf("code without state = %d, want 400", r.Status)
	}
	// Discord down: 503, not 500.
	f.srv.Close()
	if r := e.callback("d", e.authorize(t, f.srv.URL)); r.Status != 503 {
		t.Errorf("Discord unreachable = %d %s, want 503", r.Status, r.Body)
	}
}

func TestDiscordNotConfigured(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	if r := e.do("GET", "/api/auth/discord", nil); r.Status != 503 || r.code() != "UNAVAILABLE" {
		t.Errorf("Discord sign-in without configuration = %d %s, want 503", r.Status, r.Body)
	}
}
