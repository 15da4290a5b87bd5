// Package console is the security admins' web console at /console: plain
// HTML, CSS and JavaScript modules embedded in the binary (no build step),
// served under a strict Content-Security-Policy, over the admin APIs the
// other areas serve.
//
// Sign-in keeps the access token in the page's memory only. The refresh
// token lives in an HttpOnly, SameSite=Strict cookie scoped to /console
// (Secure whenever the request came over HTTPS), which only the console's
// own session routes read. Those routes take JSON with a custom header
// (X-Vectabase-Console) and refuse a foreign Origin, so another site can
// neither post a form to them nor read their answer. Only administrators
// get a console session: anyone else's sign-in is refused and their new
// session revoked at once.
package console

import (
	"context"
	"embed"
	"io/fs"
	"mime"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/store"
)

//go:embed assets
var assets embed.FS

// CSP is the console's Content-Security-Policy: its own scripts, styles
// and API only, no inline code, no frames, no third party.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// CookieName is the refresh-token cookie; CookiePath scopes it.
const (
	CookieName   = "vb_console_refresh"
	CookiePath   = "/console"
	HeaderMarker = "X-Vectabase-Console"
)

// Auth is what the console needs of authentication: *auth.Service.
type Auth interface {
	Login(ctx context.Context, email, password string, meta auth.RequestMeta) (auth.LoginResult, error)
	Refresh(ctx context.Context, token string, meta auth.RequestMeta) (auth.LoginResult, error)
	Logout(ctx context.Context, userID, sessionID string, all bool, meta auth.RequestMeta) error
	Authenticate(ctx context.Context, token string) (auth.Principal, error)
}

var _ Auth = (*auth.Service)(nil)

// Auditor records the console's own refusals (a non-admin's sign-in).
type Auditor interface {
	Record(ctx context.Context, ev vectabase.AuditEvent) error
}

// Console serves the console's page, assets and session routes.
type Console struct {
	auth Auth
	aud  Auditor
}

// New returns the console over a (authentication) and aud (the audit
// trail).
func New(a Auth, aud Auditor) *Console { return &Console{auth: a, aud: aud} }

// Routes is the console's route table. The page and its assets are public
// (they hold no data); the session routes do their own checks.
func (cs *Console) Routes() []server.Route {
	return []server.Route{
		{Method: fiber.MethodGet, Path: "/console", BodyLimit: 1 << 10, Handler: cs.page},
		{Method: fiber.MethodGet, Path: "/console/assets/*", BodyLimit: 1 << 10, Handler: cs.asset},
		{Method: fiber.MethodPost, Path: "/console/session", BodyLimit: 8 << 10, Timeout: 10 * time.Second, Handler: cs.login},
		{Method: fiber.MethodPost, Path: "/console/session/refresh", BodyLimit: 1 << 10, Timeout: 10 * time.Second, Handler: cs.refresh},
		{Method: fiber.MethodDelete, Path: "/console/session", BodyLimit: 1 << 10, Timeout: 10 * time.Second, Handler: cs.logout},
	}
}

// secure sets the headers every console response carries.
func secure(c *fiber.Ctx) {
	c.Set("Content-Security-Policy", CSP)
	c.Set("X-Content-Type-Options", "nosniff")
	c.Set("X-Frame-Options", "DENY")
	c.Set("Referrer-Policy", "no-referrer")
	c.Set("Cross-Origin-Opener-Policy", "same-origin")
	c.Set("Cross-Origin-Resource-Policy", "same-origin")
}

func (cs *Console) page(c *fiber.Ctx) error {
	b, err := assets.ReadFile("assets/index.html")
	if err != nil {
		return err
	}
	secure(c)
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return c.Send(b)
}

func (cs *Console) asset(c *fiber.Ctx) error {
	name := c.Params("*")
	if name == "" || strings.Contains(name, "..") || strings.HasPrefix(name, "/") || name == "index.html" {
		return vectabase.Errorf(vectabase.ENOTFOUND, "not found")
	}
	b, err := fs.ReadFile(assets, "assets/"+name)
	if err != nil {
		return vectabase.Errorf(vectabase.ENOTFOUND, "not found")
	}
	secure(c)
	ct := mime.TypeByExtension(path.Ext(name))
	if path.Ext(name) == ".js" {
		ct = "text/javascript; charset=utf-8"
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	c.Set(fiber.HeaderContentType, ct)
	c.Set(fiber.HeaderCacheControl, "no-cache")
	return c.Send(b)
}

// sameOrigin is the CSRF check of the session routes: the custom header
// (a cross-site form cannot send it, and a cross-site fetch that does needs
// a CORS preflight the console never grants) and, when the browser sent
// one, an Origin naming the request's own host.
func sameOrigin(c *fiber.Ctx) error {
	if c.Get(HeaderMarker) != "1" {
		return vectabase.Errorf(vectabase.EFORBIDDEN, "%s: 1 is required", HeaderMarker)
	}
	if o := c.Get(fiber.HeaderOrigin); o != "" {
		u, err := url.Parse(o)
		// The host only: a TLS-terminating proxy may not say the scheme.
		if err != nil || u.Host == "" || !strings.EqualFold(u.Host, c.Hostname()) {
			return vectabase.Errorf(vectabase.EFORBIDDEN, "cross-origin request refused")
		}
	}
	return nil
}

func meta(c *fiber.Ctx) auth.RequestMeta {
	return auth.RequestMeta{IP: server.ClientIP(c), UserAgent: utils.CopyString(c.Get(fiber.HeaderUserAgent)), RequestID: server.RequestID(c)}
}

func (cs *Console) setCookie(c *fiber.Ctx, value string, expires time.Time) {
	c.Cookie(&fiber.Cookie{
		Name: CookieName, Value: value, Path: CookiePath, Expires: expires,
		HTTPOnly: true, Secure: c.Protocol() == "https", SameSite: fiber.CookieSameSiteStrictMode,
	})
}

func (cs *Console) clearCookie(c *fiber.Ctx) {
	cs.setCookie(c, "", time.Unix(1, 0))
}

// session is the body of a successful sign-in or refresh: no refresh
// token (it is in the cookie).
type session struct {
	User      store.User `json:"user"`
	Token     string     `json:"token"`
	TokenType string     `json:"tokenType"`
	ExpiresIn int64      `json:"expiresIn"`
}

var errNotAdmin = vectabase.Errorf(vectabase.EFORBIDDEN, "the console is for administrators only")

// admit answers res when its user is an admin, and otherwise revokes the
// session res started, audits the refusal and answers FORBIDDEN.
func (cs *Console) admit(c *fiber.Ctx, res auth.LoginResult, action string) error {
	p, err := cs.auth.Authenticate(c.UserContext(), res.Token)
	if err != nil {
		return err
	}
	if p.Role != "admin" {
		_ = cs.auth.Logout(c.UserContext(), p.UserID, p.SessionID, false, meta(c))
		cs.clearCookie(c)
		if err := cs.aud.Record(c.UserContext(), vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: p.UserID,
			Action: action, ResourceType: "console", Result: vectabase.ResultDenied, IP: server.ClientIP(c),
			RequestID: server.RequestID(c), Details: map[string]any{"reason": "not an admin"}}); err != nil {
			return vectabase.WrapError(vectabase.EUNAVAILABLE, "the audit trail cannot be written, so the request was refused", err)
		}
		return errNotAdmin
	}
	cs.setCookie(c, res.RefreshToken, time.Now().Add(time.Duration(30*24)*time.Hour))
	c.Set(fiber.HeaderCacheControl, "no-store")
	u := res.User
	u.PasswordHash = nil
	return c.JSON(session{User: u, Token: res.Token, TokenType: "Bearer", ExpiresIn: res.ExpiresIn})
}

func (cs *Console) login(c *fiber.Ctx) error {
	secure(c)
	if err := sameOrigin(c); err != nil {
		return err
	}
	var req struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := server.DecodeJSON(c, &req); err != nil {
		return err
	}
	res, err := cs.auth.Login(c.UserContext(), req.Email, req.Password, meta(c))
	if err != nil {
		if wait, ok := auth.RetryAfterOf(err); ok {
			c.Set(fiber.HeaderRetryAfter, (&auth.RetryAfter{Wait: wait}).Seconds())
		}
		return err
	}
	return cs.admit(c, res, "console.login")
}

func (cs *Console) refresh(c *fiber.Ctx) error {
	secure(c)
	if err := sameOrigin(c); err != nil {
		return err
	}
	tok := c.Cookies(CookieName)
	if tok == "" {
		return vectabase.Errorf(vectabase.EUNAUTHORIZED, "no console session")
	}
	res, err := cs.auth.Refresh(c.UserContext(), utils.CopyString(tok), meta(c))
	if err != nil {
		cs.clearCookie(c)
		return err
	}
	return cs.admit(c, res, "console.refresh")
}

// logout ends the console session of the bearer token and clears the
// cookie; without a valid token it still clears the cookie.
func (cs *Console) logout(c *fiber.Ctx) error {
	secure(c)
	if err := sameOrigin(c); err != nil {
		return err
	}
	cs.clearCookie(c)
	h := c.Get(fiber.HeaderAuthorization)
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
		if p, err := cs.auth.Authenticate(c.UserContext(), strings.TrimSpace(tok)); err == nil {
			if err := cs.auth.Logout(c.UserContext(), p.UserID, p.SessionID, false, meta(c)); err != nil {
				return err
			}
		}
	}
	return c.SendStatus(fiber.StatusNoContent)
}
