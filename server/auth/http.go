package auth

import (
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
)

// credentialsBodyLimit bounds login and register bodies: an email and a
// password of at most 128 characters fit many times over.
const credentialsBodyLimit = 8 << 10

// Routes is authentication's route table.
func (s *Service) Routes() []server.Route {
	return []server.Route{
		{Method: fiber.MethodPost, Path: "/api/auth/register", BodyLimit: credentialsBodyLimit, Timeout: 10 * time.Second, Handler: s.handleRegister},
		{Method: fiber.MethodPost, Path: "/api/auth/login", BodyLimit: credentialsBodyLimit, Timeout: 10 * time.Second, Handler: s.handleLogin},
		{Method: fiber.MethodPost, Path: "/api/auth/refresh", BodyLimit: 4 << 10, Timeout: 10 * time.Second, Handler: s.handleRefresh},
		{Method: fiber.MethodPost, Path: "/api/auth/logout", Auth: s.RequireUser(), BodyLimit: 4 << 10, Handler: s.handleLogout},
		{Method: fiber.MethodGet, Path: "/api/auth/me", Auth: s.RequireUser(), Handler: s.handleMe},
		{Method: fiber.MethodPatch, Path: "/api/auth/me", Auth: s.RequireUser(), BodyLimit: 8 << 10, Handler: s.handleUpdateMe},
		{Method: fiber.MethodDelete, Path: "/api/auth/me", Auth: s.RequireUser(), BodyLimit: credentialsBodyLimit, Timeout: 30 * time.Second, Handler: s.handleDeleteMe},
		{Method: fiber.MethodPost, Path: "/api/auth/password/forgot", BodyLimit: credentialsBodyLimit, Timeout: 10 * time.Second, Handler: s.handleForgot},
		{Method: fiber.MethodPost, Path: "/api/auth/password/reset", BodyLimit: credentialsBodyLimit, Timeout: 10 * time.Second, Handler: s.handleReset},
		{Method: fiber.MethodPost, Path: "/api/auth/password", Auth: s.RequireUser(), BodyLimit: credentialsBodyLimit, Timeout: 10 * time.Second, Handler: s.handleChangePassword},
		{Method: fiber.MethodPost, Path: "/api/auth/email/confirm", BodyLimit: 4 << 10, Handler: s.handleConfirmEmail},
		{Method: fiber.MethodGet, Path: "/api/auth/sessions", Auth: s.RequireUser(), Handler: s.handleSessions},
		{Method: fiber.MethodDelete, Path: "/api/auth/sessions/:id", Auth: s.RequireUser(), Handler: s.handleRevokeSession},
		{Method: fiber.MethodGet, Path: "/api/auth/discord", Timeout: 20 * time.Second, Handler: s.handleDiscord},
		{Method: fiber.MethodGet, Path: "/api/auth/discord/link", Auth: s.RequireUser(), Handler: s.handleDiscordLink},
		{Method: fiber.MethodDelete, Path: "/api/auth/discord", Auth: s.RequireUser(), Handler: s.handleDiscordUnlink},
		{Method: fiber.MethodGet, Path: "/.well-known/jwks.json", Handler: s.handleJWKS},
	}
}

func meta(c *fiber.Ctx) RequestMeta {
	return RequestMeta{IP: server.ClientIP(c), UserAgent: utils.CopyString(c.Get(fiber.HeaderUserAgent)), RequestID: server.RequestID(c)}
}

// withRetryAfter sets Retry-After when err is a throttling refusal.
func withRetryAfter(c *fiber.Ctx, err error) error {
	if wait, ok := RetryAfterOf(err); ok {
		c.Set(fiber.HeaderRetryAfter, (&RetryAfter{Wait: wait}).Seconds())
	}
	return err
}

type credentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func (s *Service) handleRegister(c *fiber.Ctx) error {
	var req credentials
	if err := server.DecodeJSON(c, &req); err != nil {
		return err
	}
	u, err := s.Register(c.UserContext(), req.Email, req.Password, meta(c))
	if err != nil {
		return withRetryAfter(c, err)
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"user": u})
}

func (s *Service) handleLogin(c *fiber.Ctx) error {
	var req credentials
	if err := server.DecodeJSON(c, &req); err != nil {
		return err
	}
	res, err := s.Login(c.UserContext(), req.Email, req.Password, meta(c))
	if vectabase.ErrorCode(err) == vectabase.ERATELIMITED {
		// Throttled before any password was checked: a refusal, counted
		// per address and minute rather than audited one row each.
		return server.Refuse(c, "login_throttled", withRetryAfter(c, err))
	}
	if err != nil {
		return withRetryAfter(c, err)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(res)
}

func (s *Service) handleRefresh(c *fiber.Ctx) error {
	var req struct {
		RefreshToken string `json:"refreshToken"`
	}
	if err := server.DecodeJSON(c, &req); err != nil {
		return err
	}
	res, err := s.Refresh(c.UserContext(), req.RefreshToken, meta(c))
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(res)
}

func (s *Service) handleLogout(c *fiber.Ctx) error {
	all, err := strconv.ParseBool(c.Query("all", "false"))
	if err != nil {
		return vectabase.Errorf(vectabase.EVALIDATION, "all: must be true or false")
	}
	if err := s.Logout(c.UserContext(), UserID(c), SessionID(c), all, meta(c)); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Service) handleMe(c *fiber.Ctx) error {
	me, err := s.Me(c.UserContext(), UserID(c))
	if err != nil {
		return err
	}
	return c.JSON(me)
}

func (s *Service) handleUpdateMe(c *fiber.Ctx) error {
	var req ProfileChange
	if err := server.DecodeJSON(c, &req); err != nil {
		return err
	}
	me, err := s.UpdateMe(c.UserContext(), UserID(c), req, meta(c))
	if err != nil {
		return err
	}
	return c.JSON(me)
}

// forgotAccepted is the one answer of /api/auth/password/forgot, whether
// or not the address has an account.
var forgotAccepted = fiber.Map{"message": "if an account uses this address, a reset link is on its way"}

func (s *Service) handleForgot(c *fiber.Ctx) error {
	var req struct {
		Email string `json:"email"`
	}
	if err := server.DecodeJSON(c, &req); err != nil {
		return err
	}
	if err := s.ForgotPassword(c.UserContext(), req.Email, meta(c)); err != nil {
		return withRetryAfter(c, err)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(fiber.StatusAccepted).JSON(forgotAccepted)
}

func (s *Service) handleReset(c *fiber.Ctx) error {
	var req struct {
		Token    string `json:"token"`
		Password string `json:"password"`
	}
	if err := server.DecodeJSON(c, &req); err != nil {
		return err
	}
	if err := s.ResetPassword(c.UserContext(), req.Token, req.Password, meta(c)); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Service) handleChangePassword(c *fiber.Ctx) error {
	var req struct {
		Current string `json:"current"`
		New     string `json:"new"`
	}
	if err := server.DecodeJSON(c, &req); err != nil {
		return err
	}
	if err := s.ChangePassword(c.UserContext(), UserID(c), SessionID(c), req.Current, req.New, meta(c)); err != nil {
		return withRetryAfter(c, err)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Service) handleConfirmEmail(c *fiber.Ctx) error {
	var req struct {
		Token string `json:"token"`
	}
	if err := server.DecodeJSON(c, &req); err != nil {
		return err
	}
	if err := s.ConfirmEmail(c.UserContext(), req.Token, meta(c)); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Service) handleSessions(c *fiber.Ctx) error {
	items, err := s.Sessions(c.UserContext(), UserID(c), SessionID(c))
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"items": items, "nextCursor": nil})
}

func (s *Service) handleRevokeSession(c *fiber.Ctx) error {
	if err := s.RevokeSession(c.UserContext(), UserID(c), utils.CopyString(c.Params("id")), meta(c)); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Service) handleJWKS(c *fiber.Ctx) error {
	// Short, so verifiers that cache it see a rotation's new key soon (those
	// that refetch on an unknown kid see it at once).
	c.Set(fiber.HeaderCacheControl, "public, max-age=60")
	return c.JSON(s.keys.jwks())
}
