package auth_test

import (
	"context"
	"io"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/server/auth"
	mailer "github.com/vectabase/vectabase/server/mail"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// smtpServer is an in-process SMTP server (github.com/emersion/go-smtp)
// that keeps every mail it accepts.
type smtpServer struct {
	addr string
	srv  *smtp.Server

	mu    sync.Mutex
	mails []receivedMail
}

type receivedMail struct {
	From, To, Subject, Body string
}

func (s *smtpServer) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{s: s}, nil }

type smtpSession struct {
	s        *smtpServer
	from     string
	rcpt     []string
	accepted bool
}

func (ss *smtpSession) Mail(from string, _ *smtp.MailOptions) error { ss.from = from; return nil }
func (ss *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.rcpt = append(ss.rcpt, to)
	return nil
}
func (ss *smtpSession) Data(r io.Reader) error {
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(msg.Body)
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	for _, to := range ss.rcpt {
		ss.s.mails = append(ss.s.mails, receivedMail{From: ss.from, To: to, Subject: msg.Header.Get("Subject"), Body: string(body)})
	}
	return nil
}
func (ss *smtpSession) Reset()        { ss.rcpt = nil }
func (ss *smtpSession) Logout() error { return nil }

// startSMTP serves on addr ("" : a free loopback port).
func startSMTP(t *testing.T, addr string) *smtpServer {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{addr: ln.Addr().String()}
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "localhost"
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

func (s *smtpServer) received() []receivedMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mails)
}

// to returns the mails sent to addr.
func (s *smtpServer) to(addr string) []receivedMail {
	var out []receivedMail
	for _, m := range s.received() {
		if m.To == addr {
			out = append(out, m)
		}
	}
	return out
}

// decodedBody is the mail's body with quoted-printable undone (go-mail
// folds long lines and escapes '=').
func decodedBody(m receivedMail) string {
	b, _ := io.ReadAll(quotedprintable.NewReader(strings.NewReader(m.Body)))
	return string(b)
}

var tokenInLink = regexp.MustCompile(`token=([A-Za-z0-9_-]+)`)

func linkToken(t *testing.T, m receivedMail) string {
	t.Helper()
	got := tokenInLink.FindStringSubmatch(decodedBody(m))
	if got == nil {
		t.Fatalf("mail %q to %s has no link with a token:\n%s", m.Subject, m.To, m.Body)
	}
	return got[1]
}

// mailEnv is an auth env whose mails go to an in-process SMTP server
// through the real outbox worker.
type mailEnv struct {
	*env
	smtp   *smtpServer
	worker *mailer.Worker
}

func mailConfig(addr string) mailer.Config {
	return mailer.Config{SMTPURL: "smtp://" + addr + "?tls=none", From: "Vectabase <no-reply@example.com>",
		PublicURL: "https://app.example.com", MaxAttempts: 5, SendTimeout: 5 * time.Second}
}

func newMailEnv(t *testing.T, cfg auth.Config) *mailEnv {
	t.Helper()
	s := startSMTP(t, "")
	mcfg := mailConfig(s.addr)
	db := pgtest.New(t)
	e := newEnvOn(t, db, keyringtest.New(t, db.Pool), cfg, auth.WithMail(mcfg, nil))
	return &mailEnv{env: e, smtp: s, worker: newWorker(t, e, mcfg)}
}

func newWorker(t *testing.T, e *env, cfg mailer.Config) *mailer.Worker {
	t.Helper()
	sender, err := mailer.NewSender(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := mailer.NewWorker(cfg, e.db, sender, e.svc.PrepareMail, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// flush sends every due mail now.
func (e *mailEnv) flush(t *testing.T) {
	t.Helper()
	if _, err := e.worker.SendDue(context.Background()); err != nil {
		t.Fatalf("SendDue: %v", err)
	}
}

func (e *mailEnv) forgot(t *testing.T, email string) response {
	t.Helper()
	return e.do("POST", "/api/auth/password/forgot", map[string]string{"email": email})
}

func TestPasswordResetByMail(t *testing.T) {
	t.Parallel()
	e := newMailEnv(t, testConfig())
	e.register("reset@example.com", "old password 1")
	before := e.login("reset@example.com", "old password 1")

	if r := e.forgot(t, "reset@example.com"); r.Status != 202 {
		t.Fatalf("forgot = %d %s, want 202", r.Status, r.Body)
	}
	e.flush(t)
	mails := e.smtp.to("reset@example.com")
	var reset *receivedMail
	for i := range mails {
		if mails[i].Subject == "Reset your password" {
			reset = &mails[i]
		}
	}
	if reset == nil {
		t.Fatalf("no reset mail among %+v", mails)
	}
	if !strings.Contains(decodedBody(*reset), "https://app.example.com/reset-password?token=") {
		t.Errorf("reset mail's link does not point at PUBLIC_URL:\n%s", reset.Body)
	}
	tok := linkToken(t, *reset)

	// The token is stored nowhere: not in the outbox, not in auth_tokens.
	var leaks int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM mail_outbox m WHERE m::text LIKE '%' || $1 || '%') +
		(SELECT count(*) FROM auth_tokens a WHERE a::text LIKE '%' || $1 || '%')`, tok).Scan(&leaks); err != nil {
		t.Fatal(err)
	}
	if leaks != 0 {
		t.Errorf("the reset token is stored in %d rows", leaks)
	}

	if r := e.do("POST", "/api/auth/password/reset", map[string]string{"token": tok, "password": "new password 2"}); r.Status != 204 {
		t.Fatalf("reset = %d %s, want 204", r.Status, r.Body)
	}
	// Every session of the user ended; the new password works, the old not.
	if r := e.do("POST", "/api/auth/refresh", map[string]string{"refreshToken": before.RefreshToken}); r.Status != 401 {
		t.Errorf("refresh of a session from before the reset = %d, want 401", r.Status)
	}
	if r := e.do("GET", "/api/auth/me", nil, bearer(before.Token)...); r.Status != 401 {
		t.Errorf("access token from before the reset = %d, want 401", r.Status)
	}
	e.login("reset@example.com", "new password 2")
	if r := e.do("POST", "/api/auth/login", map[string]string{"email": "reset@example.com", "password": "old password 1"}); r.Status != 401 {
		t.Errorf("login with the old password = %d, want 401", r.Status)
	}
	// Once only.
	r := e.do("POST", "/api/auth/password/reset", map[string]string{"token": tok, "password": "third password 3"})
	if r.Status != 400 || r.code() != "VALIDATION_FAILED" {
		t.Errorf("second use of a reset token = %d %s, want 400 VALIDATION_FAILED", r.Status, r.Body)
	}
	if e.aud.count("auth.password_reset") != 1 || e.aud.count("auth.password_reset_requested") != 1 {
		t.Errorf("audit = %v, want one password_reset_requested and one password_reset", e.aud.actions())
	}
	// A tampered token is refused like a used one.
	bad := tok[:len(tok)-2] + "AA"
	if r := e.do("POST", "/api/auth/password/reset", map[string]string{"token": bad, "password": "third password 3"}); r.Status != 400 {
		t.Errorf("tampered token = %d, want 400", r.Status)
	}
}

func TestPasswordResetTokenExpires(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.ResetTTL = time.Hour
	e := newMailEnv(t, cfg)
	e.register("late@example.com", "old password 1")
	e.forgot(t, "late@example.com")
	e.flush(t)
	tok := linkToken(t, e.smtp.to("late@example.com")[1])
	e.clock.advance(61 * time.Minute)
	if r := e.do("POST", "/api/auth/password/reset", map[string]string{"token": tok, "password": "new password 2"}); r.Status != 400 {
		t.Fatalf("reset after AUTH_RESET_TTL = %d %s, want 400", r.Status, r.Body)
	}
	e.login("late@example.com", "old password 1")
}

// An unknown address and a known one get the same status and body, the
// same rows written, and (medians of interleaved requests) times within
// 10%. The work is the same statements in both cases, so a difference
// beyond noise means the code branches on the address.
func TestForgotAnswersAlikeForKnownAndUnknownEmails(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxResetsPerEmail = 1000
	e := newMailEnv(t, cfg)
	e.register("known@example.com", "a password 1")
	known, unknown := e.forgot(t, "known@example.com"), e.forgot(t, "nobody@example.com")
	if known.Status != 202 || unknown.Status != 202 || string(known.Body) != string(unknown.Body) {
		t.Fatalf("known = %d %s, unknown = %d %s: want the same 202", known.Status, known.Body, unknown.Status, unknown.Body)
	}
	counts, err := e.db.MailOutboxCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if counts.Pending != 3 { // the registration's confirmation, and one each
		t.Errorf("outbox pending = %d, want 3 (both requests queue a mail)", counts.Pending)
	}
	median := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	// Noise on a shared machine can swamp one round; a real difference
	// shows in every round, so one round within 10% of three is enough.
	var ratios []float64
	for round := 0; round < 3; round++ {
		var tk, tu []time.Duration
		for i := 0; i < 40; i++ {
			for _, addr := range []string{"known@example.com", "nobody@example.com"} {
				start := time.Now()
				if r := e.forgot(t, addr); r.Status != 202 {
					t.Fatalf("forgot %s = %d %s", addr, r.Status, r.Body)
				}
				if addr == "known@example.com" {
					tk = append(tk, time.Since(start))
				} else {
					tu = append(tu, time.Since(start))
				}
			}
		}
		mk, mu := median(tk), median(tu)
		ratio := float64(max(mk, mu)) / float64(min(mk, mu))
		ratios = append(ratios, ratio)
		if ratio <= 1.10 {
			return
		}
	}
	t.Errorf("known vs unknown email forgot medians differ by more than 10%% in every round: ratios %v", ratios)
}

func TestForgotIsThrottledPerEmail(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxResetsPerEmail = 2
	e := newMailEnv(t, cfg)
	for i := 0; i < 2; i++ {
		if r := e.forgot(t, "someone@example.com"); r.Status != 202 {
			t.Fatalf("forgot #%d = %d", i+1, r.Status)
		}
	}
	r := e.forgot(t, "someone@example.com")
	if r.Status != 429 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("third forgot = %d (Retry-After %q), want 429 with Retry-After", r.Status, r.Header.Get("Retry-After"))
	}
	if r := e.forgot(t, "not an address"); r.Status != 400 {
		t.Errorf("malformed address = %d, want 400", r.Status)
	}
}

func TestRegistrationConfirmsEmail(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.RequireConfirmedEmail = true
	e := newMailEnv(t, cfg)
	e.register("confirm@example.com", "a password 1")
	r := e.do("POST", "/api/auth/login", map[string]string{"email": "confirm@example.com", "password": "a password 1"})
	if r.Status != 403 {
		t.Fatalf("login before confirming with AUTH_REQUIRE_CONFIRMED_EMAIL = %d %s, want 403", r.Status, r.Body)
	}
	e.flush(t)
	mails := e.smtp.to("confirm@example.com")
	if len(mails) != 1 || mails[0].Subject != "Confirm your email address" {
		t.Fatalf("mails = %+v, want one confirmation", mails)
	}
	tok := linkToken(t, mails[0])
	if r := e.do("POST", "/api/auth/email/confirm", map[string]string{"token": tok}); r.Status != 204 {
		t.Fatalf("confirm = %d %s, want 204", r.Status, r.Body)
	}
	e.login("confirm@example.com", "a password 1")
	if r := e.do("POST", "/api/auth/email/confirm", map[string]string{"token": tok}); r.Status != 400 {
		t.Errorf("second confirm = %d, want 400", r.Status)
	}
	// A confirmation token is no reset token.
	if r := e.do("POST", "/api/auth/password/reset", map[string]string{"token": tok, "password": "new password 2"}); r.Status != 400 {
		t.Errorf("confirmation token used to reset = %d, want 400", r.Status)
	}
}

func TestEmailChangeConfirmedOnTheNewAddress(t *testing.T) {
	t.Parallel()
	e := newMailEnv(t, testConfig())
	e.register("old@example.com", "a password 1")
	e.register("taken@example.com", "a password 1")
	lb := e.login("old@example.com", "a password 1")
	if r := e.do("PATCH", "/api/auth/me", map[string]string{"email": "taken@example.com"}, bearer(lb.Token)...); r.Status != 409 {
		t.Errorf("change to a taken address = %d, want 409", r.Status)
	}
	if r := e.do("PATCH", "/api/auth/me", map[string]string{"email": "new@example.com"}, bearer(lb.Token)...); r.Status != 200 {
		t.Fatalf("PATCH me email = %d %s", r.Status, r.Body)
	}
	e.flush(t)
	newMails, oldMails := e.smtp.to("new@example.com"), e.smtp.to("old@example.com")
	if len(newMails) != 1 || newMails[0].Subject != "Confirm your new email address" {
		t.Fatalf("mails to the new address = %+v", newMails)
	}
	var notice bool
	for _, m := range oldMails {
		notice = notice || m.Subject == "Your email address is being changed"
	}
	if !notice {
		t.Errorf("no notice to the old address among %+v", oldMails)
	}
	// Until confirmed, the account keeps its address.
	e.login("old@example.com", "a password 1")
	if r := e.do("POST", "/api/auth/email/confirm", map[string]string{"token": linkToken(t, newMails[0])}); r.Status != 204 {
		t.Fatalf("confirm change = %d %s", r.Status, r.Body)
	}
	e.login("new@example.com", "a password 1")
	if r := e.do("POST", "/api/auth/login", map[string]string{"email": "old@example.com", "password": "a password 1"}); r.Status != 401 {
		t.Errorf("login with the old address after the change = %d, want 401", r.Status)
	}
}

func TestChangePasswordEndsOtherSessions(t *testing.T) {
	t.Parallel()
	e := newMailEnv(t, testConfig())
	e.register("change@example.com", "old password 1")
	a := e.login("change@example.com", "old password 1")
	b := e.login("change@example.com", "old password 1")
	r := e.do("POST", "/api/auth/password", map[string]string{"current": "wrong password", "new": "new password 2"}, bearer(a.Token)...)
	if r.Status != 400 || r.code() != "VALIDATION_FAILED" {
		t.Fatalf("wrong current = %d %s, want 400", r.Status, r.Body)
	}
	if r := e.do("POST", "/api/auth/password", map[string]string{"current": "old password 1", "new": "short"}, bearer(a.Token)...); r.Status != 400 {
		t.Errorf("too short a new password = %d, want 400", r.Status)
	}
	if r := e.do("POST", "/api/auth/password", map[string]string{"current": "old password 1", "new": "new password 2"}, bearer(a.Token)...); r.Status != 204 {
		t.Fatalf("change = %d %s, want 204", r.Status, r.Body)
	}
	if r := e.do("GET", "/api/auth/me", nil, bearer(a.Token)...); r.Status != 200 {
		t.Errorf("the session that changed the password = %d, want 200", r.Status)
	}
	if r := e.do("GET", "/api/auth/me", nil, bearer(b.Token)...); r.Status != 401 {
		t.Errorf("another session after the change = %d, want 401", r.Status)
	}
	e.login("change@example.com", "new password 2")
	e.flush(t)
	var notified bool
	for _, m := range e.smtp.to("change@example.com") {
		notified = notified || m.Subject == "Your password was changed"
	}
	if !notified {
		t.Error("no password-changed notice")
	}
}

func TestSessionsListAndRevoke(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	e.register("sess@example.com", "a password 1")
	a := e.login("sess@example.com", "a password 1")
	b := e.login("sess@example.com", "a password 1")
	other := e.register("other@example.com", "a password 1")
	_ = other
	o := e.login("other@example.com", "a password 1")

	r := e.do("GET", "/api/auth/sessions", nil, bearer(a.Token)...)
	var list struct {
		Items []store.SignedInSession `json:"items"`
	}
	r.json(t, &list)
	if r.Status != 200 || len(list.Items) != 2 {
		t.Fatalf("sessions = %d %s, want two", r.Status, r.Body)
	}
	var mine, theirs string
	for _, s := range list.Items {
		if s.Current {
			mine = s.ID
		} else {
			theirs = s.ID
		}
	}
	if mine == "" || theirs == "" {
		t.Fatalf("sessions %+v: want one current and one other", list.Items)
	}
	// Another user cannot end them.
	if r := e.do("DELETE", "/api/auth/sessions/"+theirs, nil, bearer(o.Token)...); r.Status != 404 {
		t.Errorf("another user's DELETE = %d, want 404", r.Status)
	}
	if r := e.do("DELETE", "/api/auth/sessions/"+theirs, nil, bearer(a.Token)...); r.Status != 204 {
		t.Fatalf("DELETE = %d %s, want 204", r.Status, r.Body)
	}
	if r := e.do("GET", "/api/auth/me", nil, bearer(b.Token)...); r.Status != 401 {
		t.Errorf("ended session's token = %d, want 401", r.Status)
	}
	if r := e.do("DELETE", "/api/auth/sessions/not-a-uuid", nil, bearer(a.Token)...); r.Status != 404 {
		t.Errorf("DELETE of a malformed id = %d, want 404", r.Status)
	}
	if e.aud.count("auth.session_revoke") != 1 {
		t.Errorf("audit = %v, want one session_revoke", e.aud.actions())
	}
}

func TestUpdateMeValidates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	e.register("prof@example.com", "a password 1")
	lb := e.login("prof@example.com", "a password 1")
	for _, c := range []struct {
		body any
		want int
	}{
		{map[string]string{"username": "ab"}, 400},
		{map[string]string{"username": "has space"}, 400},
		{map[string]string{"avatarUrl": "http://example.com/a.png"}, 400},
		{map[string]string{"avatarUrl": "javascript:alert(1)"}, 400},
		{map[string]string{"avatarUrl": "https://user:pw@example.com/a.png"}, 400},
		{map[string]string{"unknown": "x"}, 400},
		{map[string]string{"username": "good_name", "avatarUrl": "https://cdn.example.com/a.png"}, 200},
		{map[string]string{"avatarUrl": ""}, 200},
	} {
		if r := e.do("PATCH", "/api/auth/me", c.body, bearer(lb.Token)...); r.Status != c.want {
			t.Errorf("PATCH me %v = %d %s, want %d", c.body, r.Status, r.Body, c.want)
		}
	}
	var me auth.Me
	e.do("GET", "/api/auth/me", nil, bearer(lb.Token)...).json(t, &me)
	if me.Profile == nil || me.Profile.Username == nil || *me.Profile.Username != "good_name" || me.Profile.AvatarURL == nil || *me.Profile.AvatarURL != "" {
		t.Errorf("profile after changes = %+v", me.Profile)
	}
	e.register("prof2@example.com", "a password 1")
	lb2 := e.login("prof2@example.com", "a password 1")
	if r := e.do("PATCH", "/api/auth/me", map[string]string{"username": "good_name"}, bearer(lb2.Token)...); r.Status != 409 {
		t.Errorf("taken username = %d, want 409", r.Status)
	}
}

// Two instances' workers draining one outbox at once send every mail
// exactly once.
func TestMailSentOnceWithTwoInstances(t *testing.T) {
	t.Parallel()
	e := newMailEnv(t, testConfig())
	second := newWorker(t, e.env, mailConfig(e.smtp.addr))
	const n = 30
	for i := 0; i < n; i++ {
		if err := e.db.EnqueueMail(context.Background(), store.NewMail{To: "many@example.com",
			Template: mailer.TemplatePasswordChanged, Data: map[string]any{"email": "many@example.com"}}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for _, w := range []*mailer.Worker{e.worker, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := w.SendDue(context.Background()); err != nil {
				t.Errorf("SendDue: %v", err)
			}
		}()
	}
	wg.Wait()
	if got := len(e.smtp.to("many@example.com")); got != n {
		t.Errorf("received %d mails, want %d (each once)", got, n)
	}
	c, err := e.db.MailOutboxCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.Pending != 0 || c.Sent != n {
		t.Errorf("outbox = %+v, want all %d sent", c, n)
	}
}

// With the relay down, a mail stays queued with a later retry; once the
// relay is back it is sent, once.
func TestMailRetriedWhenSMTPIsDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	// A port that refuses: listen, note it, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	w := newWorker(t, e, mailConfig(addr))
	e.register("down@example.com", "a password 1")
	ctx := context.Background()
	if _, err := w.SendDue(ctx); err != nil {
		t.Fatalf("SendDue with the relay down: %v", err)
	}
	var attempts int
	var next time.Time
	if err := e.db.Pool.QueryRow(ctx, `SELECT attempts, next_attempt_at FROM mail_outbox WHERE to_address = 'down@example.com'`).Scan(&attempts, &next); err != nil {
		t.Fatal(err)
	}
	if attempts != 1 || !next.After(time.Now()) {
		t.Fatalf("after a failed attempt: attempts %d, next %v; want 1 and a later retry", attempts, next)
	}
	// Nothing is due yet: a second pass sends nothing.
	if n, _ := w.SendDue(ctx); n != 0 {
		t.Errorf("SendDue before the retry time handled %d mails", n)
	}
	s := startSMTP(t, addr)
	if _, err := e.db.Pool.Exec(ctx, `UPDATE mail_outbox SET next_attempt_at = now()`); err != nil {
		t.Fatal(err)
	}
	if _, err := w.SendDue(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.to("down@example.com"); len(got) != 1 {
		t.Errorf("after the relay came back: %d mails, want 1", len(got))
	}
}
