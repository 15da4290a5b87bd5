package auth

import (
	"context"
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

// Principal is who an access token speaks for, as checked just now.
type Principal struct {
	UserID    string
	Email     string
	Role      string // profiles.role, read at verification time
	SessionID string
}

// Authenticate verifies an access token and checks that its session still
// stands (logout and refresh-token reuse revoke it), reading the user's
// current role in the same primary-key look-up. For callers that get a
// token other than from the Authorization header (the realtime socket's
// access_token query or first message). Any failure of the token is
// UNAUTHORIZED.
func (s *Service) Authenticate(ctx context.Context, token string) (Principal, error) {
	if token == "" || len(token) > 4096 {
		return Principal{}, errUnauthorized
	}
	claims, err := s.keys.verifyAccess(ctx, token, s.cfg.Issuer, s.now())
	if err != nil {
		return Principal{}, errUnauthorized
	}
	st, err := s.db.SessionStateByID(ctx, claims.SessionID)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, errUnauthorized
	}
	if err != nil {
		return Principal{}, err
	}
	if !st.Active || st.UserID != claims.Subject {
		return Principal{}, errUnauthorized
	}
	return Principal{UserID: claims.Subject, Email: claims.Email, Role: st.Role, SessionID: claims.SessionID}, nil
}

// authenticate runs Authenticate on the request's bearer token and records
// the user on the context.
func (s *Service) authenticate(c *fiber.Ctx, raw string) error {
	p, err := s.Authenticate(c.UserContext(), raw)
	if err != nil {
		return err
	}
	c.Locals(localUserID, utils.CopyString(p.UserID))
	c.Locals(localRole, p.Role)
	c.Locals(localSessionID, utils.CopyString(p.SessionID))
	c.Locals(localEmail, utils.CopyString(p.Email))
	server.SetActor(c, server.Actor{Type: vectabase.ActorUser, ID: p.UserID, Role: p.Role, RoleKnown: true})
	return nil
}

// refused passes an authentication failure through server.Refuse: a
// request refused for its token gets no durable row of its own, is counted
// per client address and minute, and is throttled (429) past the refusal
// limit. Other errors (the database failing) pass unchanged.
func refused(c *fiber.Ctx, present bool, err error) error {
	if vectabase.ErrorCode(err) != vectabase.EUNAUTHORIZED {
		return err
	}
	reason := "bearer_invalid"
	if !present {
		reason = "bearer_missing"
	}
	return server.Refuse(c, reason, err)
}

// RequireUser admits requests with a valid access token (Authorization:
// Bearer) whose session is still active, and sets the actor to the user.
// Anything else is UNAUTHORIZED (429 RATE_LIMITED once the address is past
// the refusal limit).
func (s *Service) RequireUser() fiber.Handler {
	return func(c *fiber.Ctx) error {
		raw, present := bearer(c)
		if err := s.authenticate(c, raw); err != nil {
			return refused(c, present, err)
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
			return refused(c, present, err)
		}
		return c.Next()
	}
}

// RequireAdmin is RequireUser plus the user's current profiles.role being
// "admin" (read on every request, so a demotion takes effect at once);
// others get FORBIDDEN.
func (s *Service) RequireAdmin() fiber.Handler {
	return func(c *fiber.Ctx) error {
		raw, present := bearer(c)
		if err := s.authenticate(c, raw); err != nil {
			return refused(c, present, err)
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
