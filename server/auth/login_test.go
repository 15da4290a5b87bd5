package auth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/supabase/supabasetest"
)

// Passwords of the Supabase sample (bcrypt, cost 10) log in, and are
// re-hashed to argon2id on the first login; the new hash works too.
func TestSupabaseBcryptLogsInAndIsRehashed(t *testing.T) {
	t.Parallel()
	raw := supabasetest.Sample
	re := regexp.MustCompile(`'([^']+@example\.com)','(\$2[aby]\$\d\d\$[./A-Za-z0-9]{53})'`)
	hashes := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(string(raw), -1) {
		hashes[m[1]] = m[2]
	}
	passwords := map[string]string{
		"alice@example.com": "correct horse battery staple",
		"bob@example.com":   "Tr0ub4dor&3",
		"zoë@example.com":   "pässwörd-ünïcode-🔑",
	}
	if hashes["alice@example.com"] == "" {
		t.Fatalf("no bcrypt hash for alice in the sample (found %v)", hashes)
	}
	e := newEnv(t, testConfig())
	ctx := context.Background()
	for email, pw := range passwords {
		h, ok := hashes[email]
		if !ok {
			continue
		}
		if _, err := e.db.CreateUser(ctx, store.NewUser{Email: email, PasswordHash: h}); err != nil {
			t.Fatal(err)
		}
		if r := e.do("POST", "/api/auth/login", map[string]string{"email": email, "password": pw + "x"}); r.Status != 401 {
			t.Errorf("%s with a wrong password = %d, want 401", email, r.Status)
		}
		lr := e.login(email, pw)
		u, err := e.db.UserByEmail(ctx, email)
		if err != nil {
			t.Fatal(err)
		}
		if u.PasswordHash == nil || !strings.HasPrefix(*u.PasswordHash, "$argon2id$") {
			t.Fatalf("%s hash after first login = %v, want argon2id", email, u.PasswordHash)
		}
		if u.LastSignInAt == nil || lr.User.ID != u.ID {
			t.Errorf("%s: last_sign_in_at not set or wrong user", email)
		}
		e.login(email, pw) // the argon2id hash works
		if r := e.do("POST", "/api/auth/login", map[string]string{"email": strings.ToUpper(email), "password": pw}); r.Status != 200 {
			t.Errorf("%s upper-cased = %d, want 200 (emails are case-insensitive)", email, r.Status)
		}
	}
}

// An unknown email and a wrong password get the same 401 (code and
// message), and take about the same time: the unknown email runs one
// argon2id verify against a dummy hash, and every failure lasts as long as
// the slowest kind of verification, so a user imported from Supabase whose
// bcrypt hash (three times slower) was not replaced yet cannot be told
// from an unknown email either.
func TestUnknownEmailAndWrongPasswordLookTheSame(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Argon2 = auth.OWASPArgon2
	e := newEnv(t, cfg)
	e.register("known@example.com", "password-123")
	imported, err := bcrypt.GenerateFromPassword([]byte("password-123"), 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.CreateUser(context.Background(), store.NewUser{Email: "imported@example.com", PasswordHash: string(imported)}); err != nil {
		t.Fatal(err)
	}
	// Interleave the kinds so that load from parallel tests hits all alike.
	// A burst of load can still skew one round's medians, so the timing
	// claim holds when one of three rounds shows it; a path that skips the
	// hash (ten times faster or more) misses in every round.
	emails := []string{"nobody@example.com", "known@example.com", "imported@example.com"}
	var misses []string
	for round := range 3 {
		misses = nil
		times := map[string][]time.Duration{}
		bodies := map[string]server.ErrorBody{}
		for range 9 {
			for _, email := range emails {
				start := time.Now()
				r := e.do("POST", "/api/auth/login", map[string]string{"email": email, "password": "wrong-password"})
				d := time.Since(start)
				if r.Status != 401 {
					t.Fatalf("login %s = %d %s, want 401", email, r.Status, r.Body)
				}
				times[email] = append(times[email], d)
				var b server.ErrorBody
				r.json(t, &b)
				bodies[email] = b
			}
		}
		median := func(ds []time.Duration) time.Duration { slices.Sort(ds); return ds[len(ds)/2] }
		unknown := median(times["nobody@example.com"])
		for _, email := range emails[1:] {
			if b, u := bodies[email], bodies["nobody@example.com"]; b.Error != u.Error || b.Message != u.Message {
				t.Errorf("unknown email body %+v, %s body %+v: want the same code and message", bodies["nobody@example.com"], email, bodies[email])
			}
			wrong := median(times[email])
			ratio := float64(unknown) / float64(wrong)
			t.Logf("round %d: median unknown email %s, wrong password for %s %s, ratio %.2f", round, unknown, email, wrong, ratio)
			if ratio < 0.67 || ratio > 1.5 {
				misses = append(misses, fmt.Sprintf("unknown email takes %s, wrong password for %s %s", unknown, email, wrong))
			}
		}
		if len(misses) == 0 {
			return
		}
	}
	for _, m := range misses {
		t.Errorf("%s: want about the same time (in each of 3 rounds)", m)
	}
}

// Failed logins lock the account (even for the right password) and then the
// IP, with 429 and Retry-After, audited; the counters live in the database,
// so a second instance sees them.
func TestFailedLoginsThrottled(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxFailuresPerAccount = 3
	cfg.MaxFailuresPerIP = 6
	e := newEnv(t, cfg)
	other := newEnvOn(t, e.db, e.kr, cfg) // another instance on the same database
	e.register("victim@example.com", "password-123")
	e.register("bystander@example.com", "password-123")
	bad := map[string]string{"email": "victim@example.com", "password": "guess-guess"}
	for i := range 3 {
		if r := e.do("POST", "/api/auth/login", bad); r.Status != 401 {
			t.Fatalf("failure %d = %d, want 401", i+1, r.Status)
		}
	}
	for _, inst := range []*env{e, other} {
		r := inst.do("POST", "/api/auth/login", map[string]string{"email": "victim@example.com", "password": "password-123"})
		if r.Status != 429 || r.code() != "RATE_LIMITED" {
			t.Fatalf("right password after 3 failures = %d %s, want 429 RATE_LIMITED", r.Status, r.Body)
		}
		secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
		if err != nil || secs < 1 || secs > int(cfg.FailureWindow/time.Second) {
			t.Errorf("Retry-After = %q, want 1..%d seconds", r.Header.Get("Retry-After"), int(cfg.FailureWindow/time.Second))
		}
	}
	// Another account from the same IP still works until the IP limit.
	e.login("bystander@example.com", "password-123")
	for i := range 3 {
		r := e.do("POST", "/api/auth/login", map[string]string{"email": "nobody" + strconv.Itoa(i) + "@example.com", "password": "x-x-x-x-x"})
		if r.Status != 401 {
			t.Fatalf("IP failure %d = %d, want 401", i+4, r.Status)
		}
	}
	if r := e.do("POST", "/api/auth/login", map[string]string{"email": "bystander@example.com", "password": "password-123"}); r.Status != 429 {
		t.Fatalf("login from an IP past its failure limit = %d, want 429", r.Status)
	}
	if n := e.aud.count("auth.login_failed"); n != 6 {
		t.Errorf("audit has %d auth.login_failed, want 6: %v", n, e.aud.actions())
	}
	if e.aud.count("auth.login_throttled")+other.aud.count("auth.login_throttled") < 3 {
		t.Errorf("throttled logins not audited: %v / %v", e.aud.actions(), other.aud.actions())
	}
	// After the window, the account works again.
	e.clock.advance(cfg.FailureWindow + time.Second)
	e.login("victim@example.com", "password-123")
}

// Login and register are limited per IP whatever the outcome.
func TestAttemptsPerIPLimited(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxAttemptsPerIP = 3
	e := newEnv(t, cfg)
	for i := range 3 {
		e.register("r"+strconv.Itoa(i)+"@example.com", "password-123")
	}
	r := e.do("POST", "/api/auth/register", map[string]string{"email": "r9@example.com", "password": "password-123"})
	if r.Status != 429 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("4th register in a minute = %d (Retry-After %q), want 429 with Retry-After", r.Status, r.Header.Get("Retry-After"))
	}
	for range 3 {
		e.login("r0@example.com", "password-123")
	}
	if r := e.do("POST", "/api/auth/login", map[string]string{"email": "r0@example.com", "password": "password-123"}); r.Status != 429 {
		t.Fatalf("4th login in a minute = %d, want 429", r.Status)
	}
	e.clock.advance(cfg.AttemptWindow + time.Second)
	e.login("r0@example.com", "password-123")
}

func TestRegisterValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	cases := []struct {
		body   any
		status int
		code   string
	}{
		{map[string]string{"email": "not-an-email", "password": "password-123"}, 400, "VALIDATION_FAILED"},
		{map[string]string{"email": "a@b", "password": "password-123"}, 400, "VALIDATION_FAILED"},
		{map[string]string{"email": "Name <a@b.co>", "password": "password-123"}, 400, "VALIDATION_FAILED"},
		{map[string]string{"email": "ok@example.com", "password": "1234567"}, 400, "VALIDATION_FAILED"},
		{map[string]string{"email": "ok@example.com", "password": strings.Repeat("p", 129)}, 400, "VALIDATION_FAILED"},
		{map[string]string{"email": "ok@example.com", "password": "password-123", "role": "admin"}, 400, "BAD_REQUEST"},
		{`{"email":`, 400, "BAD_REQUEST"},
		{map[string]string{"email": "ok@example.com", "password": strings.Repeat("p", 128)}, 201, ""},
		{map[string]string{"email": "OK@example.com", "password": "password-123"}, 409, "CONFLICT"},
		{map[string]string{"email": "eight@example.com", "password": "ééééééé8"}, 201, ""},
	}
	for _, c := range cases {
		r := e.do("POST", "/api/auth/register", c.body)
		if r.Status != c.status || (c.code != "" && r.code() != c.code) {
			t.Errorf("register %v = %d %s, want %d %s", c.body, r.Status, r.Body, c.status, c.code)
		}
	}
	if r := e.do("POST", "/api/auth/login", map[string]string{"email": "", "password": ""}); r.Status != 400 {
		t.Errorf("login with empty fields = %d, want 400", r.Status)
	}
	if r := e.do("POST", "/api/auth/register", map[string]string{"email": "big@example.com", "password": strings.Repeat("p", 10000)}); r.Status != 413 {
		t.Errorf("register with a 10 KB body = %d, want 413", r.Status)
	}
}

// A sign-in that cannot be audited does not happen (fail closed).
func TestLoginFailsClosedWithoutAudit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	u := e.register("audit@example.com", "password-123")
	e.aud.mu.Lock()
	e.aud.fail = true
	e.aud.mu.Unlock()
	r := e.do("POST", "/api/auth/login", map[string]string{"email": "audit@example.com", "password": "password-123"})
	if r.Status != 500 || r.code() != "INTERNAL" || strings.Contains(string(r.Body), "audit store") {
		t.Fatalf("login with audit down = %d %s, want 500 INTERNAL without detail", r.Status, r.Body)
	}
	sessions, _ := e.db.SessionsOfUser(context.Background(), u.ID)
	for _, s := range sessions {
		if s.RevokedAt == nil {
			t.Errorf("session %s left active after a login that could not be audited", s.ID)
		}
	}
}

// Passwords and tokens appear in no audit event and no log line.
func TestSecretsStayOutOfAuditAndLogs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	const pw = "Sup3r-Secret-Pw!"
	e.register("quiet@example.com", pw)
	e.do("POST", "/api/auth/login", map[string]string{"email": "quiet@example.com", "password": pw + "-wrong"})
	lr := e.login("quiet@example.com", pw)
	_, rr := e.refresh(lr.RefreshToken)
	e.refresh(lr.RefreshToken) // reuse
	e.do("GET", "/api/auth/me", nil, bearer(rr.Token)...)
	events, _ := json.Marshal(e.aud.events)
	logs := e.logs.String()
	for name, secret := range map[string]string{"password": pw, "access token": lr.Token, "refresh token": lr.RefreshToken,
		"second refresh token": rr.RefreshToken, "token signature": lr.Token[strings.LastIndexByte(lr.Token, '.')+1:]} {
		if strings.Contains(string(events), secret) {
			t.Errorf("audit events contain the %s", name)
		}
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain the %s", name)
		}
	}
	for _, want := range []string{"auth.register:success", "auth.login_failed:failure", "auth.login:success", "auth.refresh_reuse:denied"} {
		if !slices.Contains(e.aud.actions(), want) {
			t.Errorf("audit lacks %s: %v", want, e.aud.actions())
		}
	}
	if got := (auth.LoginResult{Token: lr.Token, RefreshToken: lr.RefreshToken}).String(); strings.Contains(got, lr.Token) || strings.Contains(got, lr.RefreshToken) {
		t.Errorf("LoginResult.String() shows a token")
	}
	if got := (auth.Config{DiscordClientSecret: "discord-secret"}).String(); strings.Contains(got, "discord-secret") {
		t.Errorf("Config.String() shows the Discord client secret")
	}
}

// RequireAdmin reads the role on each request; OptionalUser lets anonymous
// requests through but refuses a bad token.
func TestAdminAndOptionalMiddleware(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	e.srv.Mount([]server.Route{
		{Method: "GET", Path: "/test/admin", Auth: e.svc.RequireAdmin(), Handler: func(c *fiber.Ctx) error {
			return c.JSON(fiber.Map{"user": auth.UserID(c), "role": auth.Role(c)})
		}},
		{Method: "GET", Path: "/test/optional", Auth: e.svc.OptionalUser(), Handler: func(c *fiber.Ctx) error {
			return c.JSON(fiber.Map{"user": auth.UserID(c), "actor": server.ActorOf(c).Type})
		}},
	})
	u := e.register("admin@example.com", "password-123")
	lr := e.login("admin@example.com", "password-123")
	if r := e.do("GET", "/test/admin", nil, bearer(lr.Token)...); r.Status != 403 || r.code() != "FORBIDDEN" {
		t.Fatalf("admin route as user = %d %s, want 403", r.Status, r.Body)
	}
	if r := e.do("GET", "/test/admin", nil); r.Status != 401 {
		t.Fatalf("admin route anonymous = %d, want 401", r.Status)
	}
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE profiles SET role = 'admin' WHERE id = $1`, u.ID); err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/test/admin", nil, bearer(lr.Token)...)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"role":"admin"`) {
		t.Fatalf("admin route after promotion with the same token = %d %s, want 200", r.Status, r.Body)
	}
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE profiles SET role = 'user' WHERE id = $1`, u.ID); err != nil {
		t.Fatal(err)
	}
	if r := e.do("GET", "/test/admin", nil, bearer(lr.Token)...); r.Status != 403 {
		t.Fatalf("admin route after demotion = %d, want 403 at once", r.Status)
	}
	if r := e.do("GET", "/test/optional", nil); r.Status != 200 || !strings.Contains(string(r.Body), `"actor":"anonymous"`) {
		t.Errorf("optional route anonymous = %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/test/optional", nil, bearer(lr.Token)...); r.Status != 200 || !strings.Contains(string(r.Body), u.ID) {
		t.Errorf("optional route with token = %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/test/optional", nil, bearer("junk")...); r.Status != 401 {
		t.Errorf("optional route with a bad token = %d, want 401", r.Status)
	}
	if r := e.do("GET", "/test/optional", nil, "Authorization", "Basic abc"); r.Status != 401 {
		t.Errorf("optional route with Basic auth = %d, want 401", r.Status)
	}
}

// Parallel guesses at one account cannot exceed the limit: attempts are
// counted before the password is checked.
func TestParallelGuessesHeldToTheLimit(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxFailuresPerAccount = 3
	e := newEnv(t, cfg)
	e.register("target@example.com", "password-123")
	const n = 12
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.svc.Login(context.Background(), "target@example.com", "guess-"+strconv.Itoa(i), authMeta())
			if _, limited := auth.RetryAfterOf(err); limited {
				codes[i] = 429
			} else if err != nil {
				codes[i] = 401
			}
		}()
	}
	wg.Wait()
	wrong := 0
	for _, c := range codes {
		if c == 401 {
			wrong++
		}
	}
	if wrong > cfg.MaxFailuresPerAccount {
		t.Errorf("%d of %d parallel guesses were checked, want at most %d", wrong, n, cfg.MaxFailuresPerAccount)
	}
}

// A register call for a taken email keeps the contract's 409 but counts as
// a failure of its IP, the counter failed logins fill: past
// AUTH_MAX_FAILURES_PER_IP the address gets 429 with Retry-After, for
// registering and for logging in, so probing emails is as slow as
// guessing passwords. A fresh email does not count.
func TestTakenEmailCountsAgainstTheIP(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxFailuresPerIP = 4
	e := newEnv(t, cfg)
	for i := range 3 {
		e.register("fresh"+strconv.Itoa(i)+"@example.com", "password-123")
	}
	// One failed login and three probes make the four failures.
	if r := e.do("POST", "/api/auth/login", map[string]string{"email": "fresh0@example.com", "password": "wrong-wrong"}); r.Status != 401 {
		t.Fatalf("failed login = %d, want 401", r.Status)
	}
	for i := range 3 {
		r := e.do("POST", "/api/auth/register", map[string]string{"email": "FRESH" + strconv.Itoa(i) + "@example.com", "password": "password-123"})
		if r.Status != 409 || r.code() != "CONFLICT" {
			t.Fatalf("probe %d = %d %s, want 409 CONFLICT", i+1, r.Status, r.Body)
		}
	}
	for _, tc := range []struct{ path, email string }{
		{"/api/auth/register", "fresh1@example.com"},    // another probe
		{"/api/auth/register", "brand-new@example.com"}, // even a fresh email, from this IP
		{"/api/auth/login", "fresh2@example.com"},       // and logins
	} {
		r := e.do("POST", tc.path, map[string]string{"email": tc.email, "password": "password-123"})
		secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
		if r.Status != 429 || r.code() != "RATE_LIMITED" || err != nil || secs < 1 || secs > int(cfg.FailureWindow/time.Second) {
			t.Fatalf("%s %s past the IP's failures = %d %s (Retry-After %q), want 429 RATE_LIMITED with Retry-After",
				tc.path, tc.email, r.Status, r.Body, r.Header.Get("Retry-After"))
		}
	}
	// After the window the address may register again.
	e.clock.advance(cfg.FailureWindow + time.Second)
	e.register("later@example.com", "password-123")
}
