package auth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// fuzzEnv is one service for all inputs of a fuzz target: a database per
// input would make fuzzing crawl.
func fuzzEnv(f *testing.F) *env {
	cfg := testConfig()
	cfg.MaxAttemptsPerIP = 1 << 30
	cfg.MaxFailuresPerAccount = 1 << 30
	cfg.MaxFailuresPerIP = 1 << 30
	e := newEnv(f, cfg)
	e.register("fuzz@example.com", "password-123")
	return e
}

var jsonSeeds = []string{
	`{"email":"fuzz@example.com","password":"password-123"}`,
	`{"email":"fuzz@example.com","password":"wrong"}`,
	`{"refreshToken":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`,
	`{"email":1,"password":null}`,
	`{"email":"a@b.co","password":"12345678","extra":true}`,
	`[]`, `null`, `""`, `{`, `{"email":"\u0000@x.io","password":"\ud800xxxxxxxx"}`,
	`{"email":"a@b.co"}{"email":"c@d.co"}`,
	strings.Repeat(`{"a":`, 1000),
	`{"refreshToken":"` + strings.Repeat("A", 5000) + `"}`,
}

// fuzzRoute posts arbitrary bodies to a JSON handler: the answer is never a
// 5xx and always the contract's error body when it is a failure.
func fuzzRoute(f *testing.F, path string) {
	e := fuzzEnv(f)
	for _, s := range jsonSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		e.t = t
		r := e.do("POST", path, body)
		if r.Status >= 500 {
			t.Fatalf("POST %s %q = %d %s, want < 500", path, body, r.Status, r.Body)
		}
		if r.Status >= 400 && r.code() == "" {
			t.Fatalf("POST %s %q = %d with body %q, want the contract's error body", path, body, r.Status, r.Body)
		}
	})
}

func FuzzLoginHandler(f *testing.F)    { fuzzRoute(f, "/api/auth/login") }
func FuzzRegisterHandler(f *testing.F) { fuzzRoute(f, "/api/auth/register") }
func FuzzRefreshHandler(f *testing.F)  { fuzzRoute(f, "/api/auth/refresh") }

// FuzzBearer: whatever the Authorization header, /api/auth/me answers 401
// (or 200 for the one real token), never a 5xx.
func FuzzBearer(f *testing.F) {
	e := fuzzEnv(f)
	for _, s := range []string{"Bearer ", "Bearer a.b.c", "bearer eyJhbGciOiJub25lIn0.e30.", "Basic Zm9vOmJhcg==", "Bearer " + strings.Repeat("x", 5000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		e.t = t
		if strings.ContainsAny(h, "\r\n\x00") {
			return // not representable in a header
		}
		r := e.do("GET", "/api/auth/me", nil, "Authorization", h)
		if r.Status != 401 && r.Status != 400 && r.Status != 431 {
			t.Fatalf("me with Authorization %q = %d %s, want 401", h, r.Status, r.Body)
		}
	})
}

// FuzzDiscordCallback: arbitrary code and state never reach Discord
// without a genuine state, and never give a 5xx other than Discord's absence.
func FuzzDiscordCallback(f *testing.F) {
	e := fuzzEnv(f)
	f.Add("code", "state")
	f.Add("", "a.b")
	f.Add("x", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, code, state string) {
		e.t = t
		r := e.do("GET", "/api/auth/discord?code="+urlQueryEscape(code)+"&state="+urlQueryEscape(state), nil)
		if r.Status >= 500 && r.Status != 503 {
			t.Fatalf("discord callback (%q, %q) = %d %s", code, state, r.Status, r.Body)
		}
	})
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// FuzzDiscordStateBinding: with Discord sign-in configured, no code, state
// and binding cookie an attacker can send signs anyone in unless they are
// a genuine state with the cookie of the browser that started it, and none
// gives a 5xx other than Discord's absence.
func FuzzDiscordStateBinding(f *testing.F) {
	fd := newFakeDiscord(f)
	cfg := testConfig()
	cfg.DiscordClientID, cfg.DiscordClientSecret = "client-1", "discord-client-secret"
	cfg.DiscordRedirectURI = "https://app.example/cb"
	cfg.DiscordAPIBase = fd.srv.URL
	e := newEnv(f, cfg)
	e.fake = fd
	e.t = f
	state := e.authorize(f, fd.srv.URL)
	genuine := e.flows[state].cookie
	fd.grant("good", map[string]any{"id": "88888888888888888", "username": "fuzz"})
	fd.bind("good", e.flows[state].challenge)
	f.Add("good", state, "")
	f.Add("good", state, "AAAA")
	f.Add("x", "a.b", genuine)
	f.Add("good", state+"x", genuine)
	f.Fuzz(func(t *testing.T, code, st, cookie string) {
		e.t = t
		if strings.ContainsAny(cookie, ";\r\n") {
			return // not a single cookie value
		}
		r := e.callbackWith(code, st, cookie)
		if r.Status >= 500 && r.Status != 503 {
			t.Fatalf("callback (%q, %q, %q) = %d %s", code, st, cookie, r.Status, r.Body)
		}
		if r.Status == 200 && (st != state || cookie != genuine) {
			t.Fatalf("callback (%q, %q, %q) signed someone in without the genuine state and its cookie", code, st, cookie)
		}
	})
}

// FuzzDeleteMeHandler: arbitrary bodies to DELETE /api/auth/me never give a
// 5xx, always the contract's error body on failure, and delete the account
// only with its password.
func FuzzDeleteMeHandler(f *testing.F) {
	e := fuzzEnv(f)
	e.t = f
	tok := e.login("fuzz@example.com", "password-123").Token
	for _, s := range jsonSeeds {
		f.Add(s)
	}
	f.Add(`{"password":"password-12"}`)
	f.Add(`{"password":null}`)
	f.Fuzz(func(t *testing.T, body string) {
		e.t = t
		r := e.do("DELETE", "/api/auth/me", body, bearer(tok)...)
		if r.Status >= 500 {
			t.Fatalf("DELETE /api/auth/me %q = %d %s, want < 500", body, r.Status, r.Body)
		}
		if r.Status >= 400 && r.code() == "" {
			t.Fatalf("DELETE /api/auth/me %q = %d with body %q, want the contract's error body", body, r.Status, r.Body)
		}
		if r.Status == 204 && !strings.Contains(body, "password-123") {
			t.Fatalf("DELETE /api/auth/me %q deleted the account without its password", body)
		}
	})
}

// FuzzDiscordLinkState: with a genuine link state of one user in flight,
// no code, state and cookie links a Discord account unless they are that
// state with its browser's cookie, and none gives a 5xx but Discord's 503.
func FuzzDiscordLinkState(f *testing.F) {
	fd := newFakeDiscord(f)
	cfg := testConfig()
	cfg.DiscordClientID, cfg.DiscordClientSecret = "client-1", "discord-client-secret"
	cfg.DiscordRedirectURI = "https://app.example/cb"
	cfg.DiscordAPIBase = fd.srv.URL
	e := newEnv(f, cfg)
	e.fake = fd
	e.t = f
	e.register("link@example.com", "password-123")
	tok := e.login("link@example.com", "password-123").Token
	r := e.do("GET", "/api/auth/discord/link", nil, bearer(tok)...)
	var out struct{ URL string }
	r.json(f, &out)
	u, _ := url.Parse(out.URL)
	state := u.Query().Get("state")
	var genuine string
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		genuine = c.Value
	}
	fd.grant("good", map[string]any{"id": "98888888888888888", "username": "fuzz"})
	fd.bind("good", u.Query().Get("code_challenge"))
	f.Add("good", state, "")
	f.Add("good", state[:len(state)-2], genuine)
	f.Add("x", "a.b", genuine)
	f.Fuzz(func(t *testing.T, code, st, cookie string) {
		e.t = t
		if strings.ContainsAny(cookie, ";\r\n") {
			return
		}
		r := e.callbackWith(code, st, cookie)
		if r.Status >= 500 && r.Status != 503 {
			t.Fatalf("callback (%q, %q, %q) = %d %s", code, st, cookie, r.Status, r.Body)
		}
		if r.Status == 200 && (st != state || cookie != genuine) {
			t.Fatalf("callback (%q, %q, %q) linked without the genuine state and its cookie", code, st, cookie)
		}
	})
}
