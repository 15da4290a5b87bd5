package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/server/mail"
	"github.com/vectabase/vectabase/store"
)

// Auditor is what auth needs of the audit trail (implemented by vault/audit).
// Record returns an error when the row could not be written; auth then
// fails the operation it was recording (fail closed) where it still can.
type Auditor interface {
	Record(ctx context.Context, ev vectabase.AuditEvent) error
}

// RequestMeta is what a service call knows of the HTTP request behind it,
// for sessions, throttling and audit.
type RequestMeta struct {
	IP        string
	UserAgent string
	RequestID string
}

// LoginResult is the answer to a successful login, refresh or Discord
// sign-in. Token and RefreshToken are secrets: String redacts them.
type LoginResult struct {
	User         store.User `json:"user"`
	Token        string     `json:"token"`
	RefreshToken string     `json:"refreshToken"`
	TokenType    string     `json:"tokenType"`
	ExpiresIn    int64      `json:"expiresIn"` // seconds
}

// String never shows the tokens.
func (r LoginResult) String() string {
	return fmt.Sprintf("LoginResult{User:%s TokenType:%s ExpiresIn:%d}", r.User.ID, r.TokenType, r.ExpiresIn)
}

// MarshalZerologObject logs a LoginResult without its tokens.
func (r LoginResult) MarshalZerologObject(e *zerolog.Event) {
	e.Str("userId", r.User.ID).Int64("expiresIn", r.ExpiresIn)
}

// Service is authentication: accounts, sessions, tokens, Discord OAuth.
type Service struct {
	cfg   Config
	db    *store.DB
	kr    *keyring.Keyring
	aud   Auditor
	log   zerolog.Logger
	keys  *keySet
	dummy string // argon2id hash of a random password, verified for unknown emails
	now   func() time.Time

	discord *discordClient
	metrics *metrics

	// hashSlots bounds the password hashes computed at once (each holds
	// Argon2.MemoryKiB of memory); a hash waits for a free slot.
	hashSlots chan struct{}

	verifyTimes verifyTimes

	// throttleAudits remembers which throttled buckets this instance has
	// audited in their current window (one row each, not one per request).
	throttleAudits throttleAudits

	// Mails: where links point and how mails read.
	mailCfg   mail.Config
	templates *mail.Templates
}

// Option changes a Service for tests.
type Option func(*Service)

// WithMail sets what the account mails need: the web app's address for
// links (cfg.PublicURL) and the templates (nil: the embedded ones).
func WithMail(cfg mail.Config, t *mail.Templates) Option {
	return func(s *Service) { s.mailCfg, s.templates = cfg, t }
}

// WithClock makes the Service read the time from now (tests of expiry).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New builds the service: it loads the JWT signing keys, creating the first
// one (encrypted through kr) when there is none.
func New(ctx context.Context, cfg Config, db *store.DB, kr *keyring.Keyring, aud Auditor, log zerolog.Logger, reg prometheus.Registerer, opts ...Option) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if db == nil || kr == nil || aud == nil {
		return nil, errors.New("auth: New needs a database, a keyring and an auditor")
	}
	s := &Service{cfg: cfg, db: db, kr: kr, aud: aud, log: log, now: time.Now,
		hashSlots: make(chan struct{}, cfg.MaxConcurrentHashes)}
	for _, o := range opts {
		o(s)
	}
	var err error
	if s.templates == nil {
		if s.templates, err = mail.LoadTemplates(""); err != nil {
			return nil, err
		}
	}
	if s.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	pw, err := RandomPassword(32)
	if err != nil {
		return nil, err
	}
	if s.dummy, err = HashPassword(pw, cfg.Argon2); err != nil {
		return nil, err
	}
	if s.keys, err = newKeySet(ctx, db, kr, cfg.SigningKeyReload, s.now); err != nil {
		return nil, err
	}
	s.discord = newDiscordClient(cfg)
	return s, nil
}

// RotateSigningKey makes a new JWT signing key the current one. The previous
// key stays published in the JWKS and accepted until the next rotation, so
// tokens it signed keep working until they expire. It returns the new kid.
func (s *Service) RotateSigningKey(ctx context.Context) (string, error) {
	return s.keys.rotate(ctx)
}

// RotateSigningKeyIfDue rotates the signing key when the newest one is
// older than SigningKeyRotateEvery (instances doing this at once make one
// key). It reports whether it rotated.
func (s *Service) RotateSigningKeyIfDue(ctx context.Context) (bool, error) {
	if s.cfg.SigningKeyRotateEvery <= 0 {
		return false, nil
	}
	return s.keys.rotateIfOlder(ctx, s.now().Add(-s.cfg.SigningKeyRotateEvery))
}

// RunKeyRotation rotates the signing key on schedule until ctx ends. Run it
// in its own goroutine; failures are logged and retried at the next tick.
func (s *Service) RunKeyRotation(ctx context.Context) {
	if s.cfg.SigningKeyRotateEvery <= 0 {
		return
	}
	tick := time.NewTicker(min(s.cfg.SigningKeyRotateEvery/10, time.Hour))
	defer tick.Stop()
	for {
		rotated, err := s.RotateSigningKeyIfDue(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error().Str("error", err.Error()).Msg("rotate JWT signing key")
		case rotated:
			s.log.Info().Msg("rotated the JWT signing key")
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// JWKS returns the public keys that verify access tokens.
func (s *Service) JWKS() any { return s.keys.jwks() }

const (
	minPasswordLen = 8
	maxPasswordLen = 128
	maxEmailLen    = 254
)

func normalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

func validEmail(email string) bool {
	if len(email) == 0 || len(email) > maxEmailLen {
		return false
	}
	a, err := netmail.ParseAddress(email)
	return err == nil && a.Address == email && a.Name == "" && strings.Contains(email[strings.LastIndexByte(email, '@'):], ".")
}

// Register creates a user with an argon2id hash of password. Errors:
// VALIDATION_FAILED for a malformed email or a password outside 8 to 128
// characters, CONFLICT for a taken email, RATE_LIMITED past the per-IP limit.
func (s *Service) Register(ctx context.Context, email, password string, meta RequestMeta) (store.User, error) {
	email = normalizeEmail(email)
	if !validEmail(email) || strings.ContainsRune(email, 0) {
		return store.User{}, vectabase.Errorf(vectabase.EVALIDATION, "email: must be a valid address")
	}
	if n := utf8.RuneCountInString(password); n < minPasswordLen || n > maxPasswordLen || !utf8.ValidString(password) {
		return store.User{}, vectabase.Errorf(vectabase.EVALIDATION, "password: must be %d to %d characters", minPasswordLen, maxPasswordLen)
	}
	if err := s.checkRegister(ctx, email, meta); err != nil {
		return store.User{}, err
	}
	hash, err := s.hashPassword(ctx, password)
	if err != nil {
		return store.User{}, err
	}
	// The confirmation mail and its token are written with the user: one
	// exists exactly when the other does.
	u, err := s.db.CreateUserThen(ctx, store.NewUser{Email: email, PasswordHash: hash}, func(tx pgx.Tx, u store.User) error {
		id, err := store.CreateAuthToken(ctx, tx, u.ID, store.TokenEmailConfirm, "", s.now().Add(s.cfg.ConfirmTTL))
		if err != nil {
			return err
		}
		return store.EnqueueMail(ctx, tx, store.NewMail{To: email, Template: mail.TemplateEmailConfirm,
			Data: map[string]any{"email": email, "tokenId": id}})
	})
	if errors.Is(err, store.ErrConflict) {
		// Registered in the meantime: a probe all the same.
		return store.User{}, s.emailTaken(ctx, meta)
	}
	if err != nil {
		return store.User{}, err
	}
	if err := s.audit(ctx, meta, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: u.ID,
		Action: "auth.register", ResourceType: "user", ResourceID: u.ID, Result: vectabase.ResultSuccess}); err != nil {
		return store.User{}, err
	}
	return u, nil
}

var errInvalidCredentials = vectabase.Errorf(vectabase.EUNAUTHORIZED, "invalid email or password")

// Login checks an email and password and starts a session. An unknown
// email, a user without a password and a wrong password all give the same
// UNAUTHORIZED after the same time (one verification, then a wait up to
// the slowest kind: see verifyTimes); RATE_LIMITED (with the wait
// in the error chain, see RetryAfter) when the IP or the account is
// throttled. Imported bcrypt hashes are replaced by argon2id on success.
func (s *Service) Login(ctx context.Context, email, password string, meta RequestMeta) (LoginResult, error) {
	email = normalizeEmail(email)
	if email == "" || password == "" {
		return LoginResult{}, vectabase.Errorf(vectabase.EVALIDATION, "email and password are required")
	}
	if len(email) > maxEmailLen || len(password) > 4*maxPasswordLen || !utf8.ValidString(email) || strings.ContainsRune(email, 0) {
		// Too long to be a registered email or password; refuse before hashing.
		return LoginResult{}, errInvalidCredentials
	}
	acct := s.accountBucket(email)
	u, known, err := s.checkLogin(ctx, acct, email, meta)
	if err != nil {
		return LoginResult{}, err
	}
	hash := s.dummy
	if known && u.PasswordHash != nil {
		hash = *u.PasswordHash
	}
	rehash, took, verr := s.verifyPassword(ctx, hash, password)
	if errors.Is(verr, errNoHashSlot) {
		return LoginResult{}, verr
	}
	if !known || u.PasswordHash == nil || verr != nil {
		s.padFailure(ctx, took)
		reason := "wrong_password"
		switch {
		case !known:
			reason = "unknown_email"
		case u.PasswordHash == nil:
			reason = "no_password"
		case !errors.Is(verr, ErrMismatch):
			reason = "unusable_hash"
			s.log.Warn().Str("userId", u.ID).Msg("password hash in an unknown format")
		}
		return LoginResult{}, s.loginFailed(ctx, u.ID, reason, meta)
	}

	if s.cfg.RequireConfirmedEmail {
		ok, err := s.db.EmailConfirmed(ctx, u.ID)
		if err != nil {
			return LoginResult{}, err
		}
		if !ok {
			return LoginResult{}, vectabase.Errorf(vectabase.EFORBIDDEN, "email not confirmed: open the link in the confirmation mail")
		}
	}

	var newHash, oldHash string
	if rehash {
		if newHash, err = s.hashPassword(ctx, password); err != nil {
			return LoginResult{}, err
		}
		oldHash = hash
	}
	signedIn := s.now().UTC()
	u.LastSignInAt = &signedIn
	details := map[string]any{"method": "password"}
	if rehash {
		details["rehashed"] = true
	}
	return s.startSession(ctx, u, &store.SignIn{NewHash: newHash, OldHash: oldHash, ResetBucket: acct}, "auth.login", details, meta)
}

// loginFailed counts a failure against the IP (the account counted it up
// front), audits it and returns the uniform UNAUTHORIZED.
func (s *Service) loginFailed(ctx context.Context, userID, reason string, meta RequestMeta) error {
	s.metrics.logins.WithLabelValues("failure").Inc()
	if err := s.countFailure(ctx, meta); err != nil {
		return err
	}
	ev := vectabase.AuditEvent{ActorType: vectabase.ActorAnonymous, Action: "auth.login_failed",
		ResourceType: "user", ResourceID: userID, Result: vectabase.ResultFailure,
		Details: map[string]any{"reason": reason}}
	if err := s.audit(ctx, meta, ev); err != nil {
		return err
	}
	return errInvalidCredentials
}

// startSession creates the first session of a new chain (recording the
// sign-in si in the same statement), audits it and issues its token pair.
func (s *Service) startSession(ctx context.Context, u store.User, si *store.SignIn, action string, details map[string]any, meta RequestMeta) (LoginResult, error) {
	token, err := newRefreshToken()
	if err != nil {
		return LoginResult{}, err
	}
	h, err := s.kr.MAC("refresh_token", []byte(token))
	if err != nil {
		return LoginResult{}, err
	}
	now := s.now().Truncate(time.Microsecond)
	sess, err := s.db.CreateSession(ctx, store.NewSession{UserID: u.ID, TokenHash: h, IP: meta.IP,
		UserAgent: meta.UserAgent, CreatedAt: now, ExpiresAt: now.Add(s.cfg.RefreshTTL)}, si)
	if err != nil {
		return LoginResult{}, err
	}
	details["sessionId"] = sess.ID
	if err := s.audit(ctx, meta, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: u.ID,
		Action: action, ResourceType: "user", ResourceID: u.ID, Result: vectabase.ResultSuccess, Details: details}); err != nil {
		// Fail closed: a sign-in that cannot be audited does not happen.
		_, _ = s.db.RevokeFamily(context.WithoutCancel(ctx), u.ID, sess.FamilyID, "audit_failed")
		return LoginResult{}, err
	}
	s.metrics.logins.WithLabelValues("success").Inc()
	return s.pair(ctx, u.ID, derefString(u.Email), sess.ID, sess.CreatedAt, token, u)
}

func (s *Service) pair(ctx context.Context, userID, email, sessionID string, iat time.Time, refresh string, u store.User) (LoginResult, error) {
	access, err := s.keys.issueAccess(ctx, s.cfg.Issuer, s.cfg.AccessTTL, userID, email, sessionID, iat)
	if err != nil {
		return LoginResult{}, err
	}
	return LoginResult{User: u, Token: access, RefreshToken: refresh, TokenType: "Bearer",
		ExpiresIn: int64(s.cfg.AccessTTL / time.Second)}, nil
}

func derefString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// refreshTokenBytes is the entropy of a refresh token: 256 bits.
const refreshTokenBytes = 32

func newRefreshToken() (string, error) {
	b := make([]byte, refreshTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: refresh token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// successorToken derives the refresh token that replaces token. It is a
// keyed PRF of the presented token, so it is as unguessable as a random
// token to anyone without the keyring, yet the server can compute it again:
// a client that refreshes twice at once (within JWT_REFRESH_REUSE_INTERVAL)
// gets the same successor without the successor ever being stored.
func (s *Service) successorToken(token string) (string, error) {
	b, err := s.kr.MAC("refresh_successor", []byte(token))
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

var errBadRefresh = vectabase.Errorf(vectabase.EUNAUTHORIZED, "invalid or expired refresh token")

// Refresh exchanges a refresh token for a new pair; the presented token
// stops working. A token presented again after it was used revokes its
// whole session chain, is audited, and gets UNAUTHORIZED — unless it comes
// within RefreshReuseInterval of its first use and its successor is still
// unused, in which case the same successor pair is returned.
func (s *Service) Refresh(ctx context.Context, token string, meta RequestMeta) (LoginResult, error) {
	if len(token) != base64.RawURLEncoding.EncodedLen(refreshTokenBytes) {
		return LoginResult{}, errBadRefresh
	}
	if _, err := base64.RawURLEncoding.DecodeString(token); err != nil {
		return LoginResult{}, errBadRefresh
	}
	oldHash, err := s.kr.MAC("refresh_token", []byte(token))
	if err != nil {
		return LoginResult{}, err
	}
	next, err := s.successorToken(token)
	if err != nil {
		return LoginResult{}, err
	}
	nextHash, err := s.kr.MAC("refresh_token", []byte(next))
	if err != nil {
		return LoginResult{}, err
	}
	for try := 0; try < 2; try++ {
		now := s.now().Truncate(time.Microsecond)
		succ, err := s.db.RotateSession(ctx, oldHash, store.NewSession{TokenHash: nextHash, IP: meta.IP,
			UserAgent: meta.UserAgent, CreatedAt: now, ExpiresAt: now.Add(s.cfg.RefreshTTL)})
		if err == nil {
			s.metrics.refreshes.WithLabelValues("rotated").Inc()
			return s.refreshed(ctx, succ, next)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return LoginResult{}, err
		}
		grace := func(usedAt time.Time) bool {
			return s.cfg.RefreshReuseInterval > 0 && now.Sub(usedAt) <= s.cfg.RefreshReuseInterval
		}
		out, err := s.db.SessionForRefresh(ctx, oldHash, nextHash, now, grace, "refresh_token_reuse")
		switch {
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrSessionRevoked), errors.Is(err, store.ErrSessionExpired):
			s.metrics.refreshes.WithLabelValues("refused").Inc()
			return LoginResult{}, errBadRefresh
		case err != nil:
			return LoginResult{}, err
		case out.Successor != nil:
			s.metrics.refreshes.WithLabelValues("grace").Inc()
			return s.refreshed(ctx, *out.Successor, next)
		case out.Revoked:
			s.metrics.refreshes.WithLabelValues("reuse").Inc()
			ev := vectabase.AuditEvent{ActorType: vectabase.ActorAnonymous, Action: "auth.refresh_reuse",
				ResourceType: "session", ResourceID: out.Session.FamilyID, Result: vectabase.ResultDenied,
				Details: map[string]any{"userId": out.Session.UserID, "sessionId": out.Session.ID, "revoked": "family"}}
			if err := s.audit(ctx, meta, ev); err != nil {
				return LoginResult{}, err
			}
			return LoginResult{}, errBadRefresh
		}
		// The session was unused after all (a concurrent refresh rolled
		// back): try the fast path once more.
	}
	return LoginResult{}, errBadRefresh
}

func (s *Service) refreshed(ctx context.Context, succ store.SessionWithUser, token string) (LoginResult, error) {
	u := succ.User
	if u.ID == "" {
		full, err := s.db.UserByID(ctx, succ.UserID)
		if err != nil {
			return LoginResult{}, err
		}
		u = full
	}
	u.PasswordHash = nil
	return s.pair(ctx, succ.UserID, derefString(succ.Email), succ.ID, succ.CreatedAt, token, u)
}

// Logout ends the caller's current session chain, or every session of the
// user when all is set.
func (s *Service) Logout(ctx context.Context, userID, sessionID string, all bool, meta RequestMeta) error {
	var n int64
	var err error
	if all {
		n, err = s.db.RevokeUserSessions(ctx, userID, "logout_all")
	} else {
		var sess store.Session
		sess, err = s.db.SessionByID(ctx, sessionID)
		if errors.Is(err, store.ErrNotFound) {
			return vectabase.Errorf(vectabase.EUNAUTHORIZED, "session not found")
		}
		if err != nil {
			return err
		}
		n, err = s.db.RevokeFamily(ctx, userID, sess.FamilyID, "logout")
	}
	if err != nil {
		return err
	}
	return s.audit(ctx, meta, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: userID,
		Action: "auth.logout", ResourceType: "session", ResourceID: sessionID, Result: vectabase.ResultSuccess,
		Details: map[string]any{"all": all, "revoked": n}})
}

// Me is the current user and profile.
type Me struct {
	User    store.User     `json:"user"`
	Profile *store.Profile `json:"profile"`
}

// Me returns the user and profile of userID; NOT_FOUND if the user is gone.
func (s *Service) Me(ctx context.Context, userID string) (Me, error) {
	u, err := s.db.UserByID(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return Me{}, vectabase.Errorf(vectabase.EUNAUTHORIZED, "user no longer exists")
	}
	if err != nil {
		return Me{}, err
	}
	me := Me{User: u}
	p, err := s.db.ProfileByUserID(ctx, userID)
	switch {
	case err == nil:
		me.Profile = &p
	case !errors.Is(err, store.ErrNotFound):
		return Me{}, err
	}
	return me, nil
}

// audit records ev with the request's IP and id.
func (s *Service) audit(ctx context.Context, meta RequestMeta, ev vectabase.AuditEvent) error {
	ev.IP, ev.RequestID = meta.IP, meta.RequestID
	if ev.Time.IsZero() {
		ev.Time = s.now()
	}
	if err := s.aud.Record(ctx, ev); err != nil {
		s.metrics.auditFailures.Inc()
		return vectabase.WrapInternal(fmt.Errorf("auth: audit %s: %w", ev.Action, err))
	}
	return nil
}
