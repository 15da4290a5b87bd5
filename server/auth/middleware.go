package auth

import (
	"errors"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store"
)

type localKey string

const (
	localUserID    localKey = "auth.userId"
	localRole      localKey = "auth.role"
	localSessionID localKey = "auth.sessionId"
	localEmail     localKey = "auth.email"
)

var errUnauthorized = vectabase.Errorf(vectabase.EUNAUTHORIZED, "missing, invalid or expired access token")

// bearer returns the token of an "Authorization: Bearer <token>" header, and
// whether the header was present at all.
func bearer(c *fiber.Ctx) (string, bool) {
	h := c.Get(fiber.HeaderAuthorization)
	if h == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(tok), true
}

// authenticate verifies the request's bearer token and checks that its
// session still stands (logout and refresh-token reuse revoke it), reading
// the user's role in the same primary-key look-up. On success it records
// the user on the context.
func (s *Service) authenticate(c *fiber.Ctx, raw string) error {
	if raw == "" || len(raw) > 4096 {
		return errUnauthorized
	}
	ctx := c.UserContext()
	claims, err := s.keys.verifyAccess(ctx, raw, s.cfg.Issuer, s.now())
	if err != nil {
		return errUnauthorized
	}
	st, err := s.db.SessionStateByID(ctx, claims.SessionID)
	if errors.Is(err, store.ErrNotFound) {
		return errUnauthorized
	}
	if err != nil {
		return err
	}
	if !st.Active || st.UserID != claims.Subject {
		return errUnauthorized
	}
	c.Locals(localUserID, utils.CopyString(claims.Subject))
	c.Locals(localRole, st.Role)
	c.Locals(localSessionID, utils.CopyString(claims.SessionID))
	c.Locals(localEmail, utils.CopyString(claims.Email))
	server.SetActor(c, server.Actor{Type: vectabase.ActorUser, ID: claims.Subject})
	return nil
}

// RequireUser admits requests with a valid access token (Authorization:
// Bearer) whose session is still active, and sets the actor to the user.
// Anything else is UNAUTHORIZED.
func (s *Service) RequireUser() fiber.Handler {
	return func(c *fiber.Ctx) error {
		raw, _ := bearer(c)
		if err := s.authenticate(c, raw); err != nil {
			return err
		}
		return c.Next()
	}
}

// OptionalUser sets the actor when the request carries a valid access
// token and lets anonymous requests through; a token that is present but
// invalid is UNAUTHORIZED (a client should know its token is bad).
func (s *Service) OptionalUser() fiber.Handler {
	return func(c *fiber.Ctx) error {
		raw, present := bearer(c)
		if !present {
			return c.Next()
		}
		if err := s.authenticate(c, raw); err != nil {
			return err
		}
		return c.Next()
	}
}

// RequireAdmin is RequireUser plus the user's current profiles.role being
// "admin" (read on every request, so a demotion takes effect at once);
// others get FORBIDDEN.
func (s *Service) RequireAdmin() fiber.Handler {
	return func(c *fiber.Ctx) error {
		raw, _ := bearer(c)
		if err := s.authenticate(c, raw); err != nil {
			return err
		}
		if Role(c) != "admin" {
			return vectabase.Errorf(vectabase.EFORBIDDEN, "admin role required")
		}
		return c.Next()
	}
}

// UserID is the authenticated user's id, or "" for anonymous requests.
func UserID(c *fiber.Ctx) string {
	id, _ := c.Locals(localUserID).(string)
	return id
}

// Role is the authenticated user's profiles.role as read for this request,
// or "" for anonymous requests.
func Role(c *fiber.Ctx) string {
	r, _ := c.Locals(localRole).(string)
	return r
}

// SessionID is the session the request's access token was issued for.
func SessionID(c *fiber.Ctx) string {
	id, _ := c.Locals(localSessionID).(string)
	return id
}

// Email is the email claim of the request's access token.
func Email(c *fiber.Ctx) string {
	e, _ := c.Locals(localEmail).(string)
	return e
}
