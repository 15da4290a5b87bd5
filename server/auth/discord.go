package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store"
)

// stateTTL is how long a Discord OAuth state stays valid: long enough to
// sign in at Discord, short enough that a leaked one is soon useless.
const stateTTL = 10 * time.Minute

// discordClient talks to Discord's OAuth2 token endpoint and /users/@me.
type discordClient struct {
	base, authorize, clientID, secret, redirect string
	http                                        *http.Client
}

func newDiscordClient(cfg Config) *discordClient {
	base := strings.TrimRight(cfg.DiscordAPIBase, "/")
	authz := cfg.DiscordAuthorizeURL
	if authz == "" {
		authz = base + "/oauth2/authorize"
	}
	return &discordClient{base: base, authorize: authz, clientID: cfg.DiscordClientID,
		secret: cfg.DiscordClientSecret, redirect: cfg.DiscordRedirectURI,
		http: &http.Client{Timeout: 10 * time.Second}}
}

// configured reports whether sign-in can work: the redirect URI may be left
// out when the Discord application registers exactly one.
func (d *discordClient) configured() bool {
	return d.clientID != "" && d.secret != ""
}

// DiscordUser is what /users/@me answers (the fields auth uses).
type DiscordUser struct {
	ID         string  `json:"id"`
	Username   string  `json:"username"`
	GlobalName *string `json:"global_name"`
	Avatar     *string `json:"avatar"`
	Email      *string `json:"email"`
	Verified   *bool   `json:"verified"`
}

var errDiscordRefused = vectabase.Errorf(vectabase.EUNAUTHORIZED, "Discord did not accept the authorization code")

// exchange trades an authorization code, with the PKCE verifier of the
// sign-in that asked for it, for the user's Discord profile. The Discord
// access token is used once here and never stored or logged.
func (d *discordClient) exchange(ctx context.Context, code, verifier string) (DiscordUser, error) {
	var du DiscordUser
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"client_id":     {d.clientID},
		"client_secret": {d.secret},
		"code_verifier": {verifier},
	}
	if d.redirect != "" {
		form.Set("redirect_uri", d.redirect)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return du, fmt.Errorf("auth: discord token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := d.do(req, &tok); err != nil {
		return du, err
	}
	if tok.AccessToken == "" || (tok.TokenType != "" && !strings.EqualFold(tok.TokenType, "Bearer")) {
		return du, errDiscordRefused
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/users/@me", nil)
	if err != nil {
		return du, fmt.Errorf("auth: discord user request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Accept", "application/json")
	if err := d.do(req, &du); err != nil {
		return du, err
	}
	if du.ID == "" || len(du.ID) > 32 || strings.Trim(du.ID, "0123456789") != "" {
		return du, vectabase.Errorf(vectabase.EUNAVAILABLE, "Discord returned an unusable user")
	}
	return du, nil
}

// do sends req and decodes a 2xx JSON answer into v. A 4xx from Discord
// means the code (or the app's credentials) was refused; anything else is
// Discord being unavailable. Response bodies are not logged: they may hold tokens.
func (d *discordClient) do(req *http.Request, v any) error {
	resp, err := d.http.Do(req)
	if err != nil {
		return vectabase.WrapError(vectabase.EUNAVAILABLE, "Discord is unavailable", fmt.Errorf("auth: discord %s: %s", req.URL.Path, describeHTTPError(err)))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return vectabase.WrapError(vectabase.EUNAVAILABLE, "Discord is unavailable", fmt.Errorf("auth: discord %s: read: %w", req.URL.Path, err))
	}
	switch {
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return errDiscordRefused
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return vectabase.Errorf(vectabase.EUNAVAILABLE, "Discord is unavailable")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return vectabase.Errorf(vectabase.EUNAVAILABLE, "Discord returned malformed JSON")
	}
	return nil
}

// describeHTTPError drops the URL from a client error (it is our own
// configuration, but keep log lines short and free of query strings).
func describeHTTPError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// The browser binding of a Discord sign-in. GET /api/auth/discord sets a
// short-lived cookie holding a random nonce (HttpOnly, SameSite=Lax, Secure
// unless the redirect URI is plain HTTP) and puts the nonce's SHA-256 into
// the signed state, so a state only completes sign-in in the browser that
// started it (no login CSRF: an attacker cannot have a victim finish the
// attacker's sign-in). The PKCE verifier (RFC 7636, S256) is derived from
// the nonce with a keyring MAC, so it is recovered at the callback from the
// cookie and never stored; Discord checks it against the code_challenge
// sent with the authorize redirect.
const (
	stateCookie    = "vb_discord_oauth"
	stateCookieTTL = stateTTL
	nonceLen       = 32
	statePayload   = 16 + 8 + sha256.Size // state id, expiry, SHA-256 of the cookie nonce
)

// newState makes a signed, expiring OAuth state bound to a fresh browser
// nonce: payload (state id, expiry, SHA-256 of the nonce) MACed by the
// keyring. It returns the state, the cookie value (the nonce) and the PKCE
// code challenge. It is checked and consumed by useState.
//
// A state that links Discord to a signed-in account (linkUser, a user id)
// carries the user id after the nonce's hash and is MACed under its own
// purpose, so a sign-in state can never be taken for a link state or the
// other way round, and the user id cannot be changed.
func (s *Service) newState(linkUser string) (state, cookie, challenge string, err error) {
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return "", "", "", err
	}
	purpose, size := "discord_oauth_state", statePayload
	var uid uuid.UUID
	if linkUser != "" {
		if uid, err = uuid.Parse(linkUser); err != nil {
			return "", "", "", err
		}
		purpose, size = "discord_oauth_link_state", statePayload+16
	}
	payload := make([]byte, size)
	if _, err := rand.Read(payload[:16]); err != nil {
		return "", "", "", err
	}
	binary.BigEndian.PutUint64(payload[16:24], uint64(s.now().Add(stateTTL).Unix()))
	h := sha256.Sum256(nonce)
	copy(payload[24:], h[:])
	if linkUser != "" {
		copy(payload[statePayload:], uid[:])
	}
	mac, err := s.kr.MAC(purpose, payload)
	if err != nil {
		return "", "", "", err
	}
	verifier, err := s.pkceVerifier(nonce)
	if err != nil {
		return "", "", "", err
	}
	b64 := base64.RawURLEncoding
	sum := sha256.Sum256([]byte(verifier))
	return b64.EncodeToString(payload) + "." + b64.EncodeToString(mac), b64.EncodeToString(nonce), b64.EncodeToString(sum[:]), nil
}

// pkceVerifier is the PKCE code verifier of the sign-in whose cookie holds
// nonce: 43 or more characters of base64url (RFC 7636 section 4.1).
func (s *Service) pkceVerifier(nonce []byte) (string, error) {
	m, err := s.kr.MAC("discord_pkce_verifier", nonce)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(m), nil
}

var (
	errBadState = vectabase.Errorf(vectabase.EUNAUTHORIZED, "invalid, expired or already used OAuth state")
	// errStateNotBound: a genuine state presented without the cookie of
	// the browser that started sign-in, or with another one's.
	errStateNotBound = vectabase.Errorf(vectabase.EBADREQUEST, "this sign-in was started in another browser; start it again here")
)

// useState checks a state's signature and expiry and that cookie (the
// browser's nonce) is the one it was made for, marks it used (a second use
// is refused: replay) and returns the PKCE verifier, and for a link state
// the user id it links to ("" for a sign-in state).
func (s *Service) useState(ctx context.Context, state, cookie string) (verifier, linkUser string, err error) {
	b64 := base64.RawURLEncoding
	p, m, ok := strings.Cut(state, ".")
	if !ok || len(state) > 200 {
		return "", "", errBadState
	}
	payload, err1 := b64.DecodeString(p)
	mac, err2 := b64.DecodeString(m)
	purpose := "discord_oauth_state"
	switch {
	case err1 != nil || err2 != nil:
		return "", "", errBadState
	case len(payload) == statePayload+16:
		purpose = "discord_oauth_link_state"
	case len(payload) != statePayload:
		return "", "", errBadState
	}
	want, err := s.kr.MAC(purpose, payload)
	if err != nil {
		return "", "", err
	}
	if !hmac.Equal(mac, want) {
		return "", "", errBadState
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(payload[16:24])), 0)
	if !s.now().Before(exp) {
		return "", "", errBadState
	}
	nonce, err := b64.DecodeString(cookie)
	if err != nil || len(nonce) != nonceLen {
		return "", "", errStateNotBound
	}
	if h := sha256.Sum256(nonce); !hmac.Equal(h[:], payload[24:statePayload]) {
		return "", "", errStateNotBound
	}
	err = s.db.UseOAuthState(ctx, hex.EncodeToString(payload[:16]), exp)
	if errors.Is(err, store.ErrConflict) {
		return "", "", errBadState
	}
	if err != nil {
		return "", "", err
	}
	if len(payload) > statePayload {
		uid, _ := uuid.FromBytes(payload[statePayload:])
		linkUser = uid.String()
	}
	verifier, err = s.pkceVerifier(nonce)
	return verifier, linkUser, err
}

var errDiscordOff = vectabase.Errorf(vectabase.EUNAVAILABLE, "Discord sign-in is not configured")

// DiscordAuthorizeURL returns the URL to send a user to for Discord
// sign-in, with a fresh signed state and PKCE challenge, and the value of
// the browser cookie the state is bound to (the caller sets it).
// UNAVAILABLE when Discord OAuth is not configured.
func (s *Service) DiscordAuthorizeURL() (authorizeURL, cookie string, err error) {
	return s.discordAuthorizeURL("")
}

// DiscordLinkURL is DiscordAuthorizeURL for linking a Discord account to
// the signed-in user userID: the callback links instead of signing in.
func (s *Service) DiscordLinkURL(userID string) (authorizeURL, cookie string, err error) {
	if userID == "" {
		return "", "", vectabase.Errorf(vectabase.EUNAUTHORIZED, "sign in first")
	}
	return s.discordAuthorizeURL(userID)
}

func (s *Service) discordAuthorizeURL(linkUser string) (authorizeURL, cookie string, err error) {
	if !s.discord.configured() {
		return "", "", errDiscordOff
	}
	state, cookie, challenge, err := s.newState(linkUser)
	if err != nil {
		return "", "", err
	}
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {s.discord.clientID},
		"scope":                 {"identify email"},
		"state":                 {state},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
	if s.discord.redirect != "" {
		q.Set("redirect_uri", s.discord.redirect)
	}
	return s.discord.authorize + "?" + q.Encode(), cookie, nil
}

// DiscordCallback completes Discord sign-in: it consumes the state,
// exchanges the code, and signs in the user linked to that Discord id, or
// creates one (with the Discord email when Discord says it is verified and
// no other account holds it). It answers like Login. UNAUTHORIZED for a
// forged, expired or replayed state or a refused code; BAD_REQUEST for a
// state presented without the cookie (the browser nonce) it was made for.
// A bad state is not audited row by row: the handler counts it as a
// refusal (server.Refuse), since anyone can send one.
func (s *Service) DiscordCallback(ctx context.Context, code, state, cookie string, meta RequestMeta) (LoginResult, error) {
	res, _, err := s.discordCallback(ctx, code, state, cookie, meta)
	return res, err
}

// discordCallback is DiscordCallback, or, for a state made by
// DiscordLinkURL, the link of the Discord account to that state's user
// (linked is then that user, and no session starts).
func (s *Service) discordCallback(ctx context.Context, code, state, cookie string, meta RequestMeta) (_ LoginResult, linked *store.User, _ error) {
	if !s.discord.configured() {
		return LoginResult{}, nil, errDiscordOff
	}
	verifier, linkUser, err := s.useState(ctx, state, cookie)
	if err != nil {
		return LoginResult{}, nil, err
	}
	if code == "" || len(code) > 512 {
		return LoginResult{}, nil, vectabase.Errorf(vectabase.EVALIDATION, "code: required")
	}
	du, err := s.discord.exchange(ctx, code, verifier)
	if err != nil {
		return LoginResult{}, nil, err
	}
	if linkUser != "" {
		u, err := s.linkDiscord(ctx, linkUser, du, meta)
		return LoginResult{}, &u, err
	}
	res, err := s.discordSignIn(ctx, du, meta)
	return res, nil, err
}

// discordSignIn signs in (or creates) the user linked to du.
func (s *Service) discordSignIn(ctx context.Context, du DiscordUser, meta RequestMeta) (LoginResult, error) {
	name := du.Username
	if len(name) > 100 {
		name = name[:100]
	}
	details := map[string]any{"method": "discord", "discordId": du.ID}
	u, err := s.db.UserByDiscordID(ctx, du.ID)
	switch {
	case err == nil:
		if u, err = s.db.LinkDiscord(ctx, u.ID, du.ID, name); err != nil {
			return LoginResult{}, err
		}
	case errors.Is(err, store.ErrNotFound):
		nu := store.NewUser{DiscordID: du.ID, DiscordUsername: name}
		if du.Email != nil && du.Verified != nil && *du.Verified {
			if e := normalizeEmail(*du.Email); validEmail(e) {
				if _, err := s.db.UserByEmail(ctx, e); errors.Is(err, store.ErrNotFound) {
					nu.Email = e
				}
			}
		}
		u, err = s.db.CreateUser(ctx, nu)
		if errors.Is(err, store.ErrConflict) {
			// Created at the same moment by another request for this
			// Discord id (or the email was just taken): sign in whoever holds it.
			u, err = s.db.UserByDiscordID(ctx, du.ID)
		}
		if err != nil {
			return LoginResult{}, err
		}
		details["created"] = true
	default:
		return LoginResult{}, err
	}
	return s.startSession(ctx, u, &store.SignIn{}, "auth.login", details, meta)
}

func (s *Service) handleDiscord(c *fiber.Ctx) error {
	if e := c.Query("error"); e != "" {
		return vectabase.Errorf(vectabase.EUNAUTHORIZED, "Discord sign-in was not granted")
	}
	code, state := c.Query("code"), c.Query("state")
	if code == "" && state == "" {
		u, cookie, err := s.DiscordAuthorizeURL()
		if err != nil {
			return err
		}
		s.setStateCookie(c, cookie, stateCookieTTL)
		c.Set(fiber.HeaderCacheControl, "no-store")
		return c.Redirect(u, fiber.StatusFound)
	}
	if code == "" || state == "" {
		return vectabase.Errorf(vectabase.EVALIDATION, "code and state are both required")
	}
	cookie := strings.Clone(c.Cookies(stateCookie))
	res, linked, err := s.discordCallback(c.UserContext(), strings.Clone(code), strings.Clone(state), cookie, meta(c))
	if code := vectabase.ErrorCode(err); err != nil && (code == vectabase.EUNAUTHORIZED || code == vectabase.EBADREQUEST) {
		return server.Refuse(c, "oauth_state", err)
	}
	if err != nil {
		return err
	}
	// The nonce has served: forget it.
	s.setStateCookie(c, "", -time.Hour)
	c.Set(fiber.HeaderCacheControl, "no-store")
	if linked != nil {
		return c.JSON(fiber.Map{"user": linked, "linked": true})
	}
	return c.JSON(res)
}

// setStateCookie sets (or, with a negative ttl, clears) the browser
// binding cookie. Secure unless sign-in returns to a plain-HTTP redirect URI
// (local development); without a configured redirect URI, Secure when the
// request came over HTTPS.
func (s *Service) setStateCookie(c *fiber.Ctx, value string, ttl time.Duration) {
	secure := c.Protocol() == "https"
	if s.discord.redirect != "" {
		secure = !strings.HasPrefix(strings.ToLower(s.discord.redirect), "http://")
	}
	ck := &fiber.Cookie{Name: stateCookie, Value: value, Path: "/api/auth/discord", HTTPOnly: true,
		Secure: secure, SameSite: fiber.CookieSameSiteLaxMode}
	if ttl > 0 {
		ck.Expires = s.now().Add(ttl)
		ck.MaxAge = int(ttl / time.Second)
	} else {
		ck.Expires = time.Unix(0, 0)
		ck.MaxAge = -1
	}
	c.Cookie(ck)
}
