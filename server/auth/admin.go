package auth

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store"
)

// AdminRoutes is the administrators' view of accounts: the users with
// their roles, and a role change. Every route needs the admin role
// (RequireAdmin); a role change is audited in the admin's name.
func (s *Service) AdminRoutes() []server.Route {
	admin := s.RequireAdmin()
	return []server.Route{
		{Method: fiber.MethodGet, Path: "/api/admin/users", Auth: admin, BodyLimit: 4 << 10, Handler: s.handleListUsers},
		{Method: fiber.MethodPatch, Path: "/api/admin/users/:id", Auth: admin, BodyLimit: 4 << 10, Timeout: 10 * time.Second, Handler: s.handleSetRole},
	}
}

// UserPage is one page of GET /api/admin/users.
type UserPage struct {
	Items      []store.User `json:"items"`
	NextCursor *string      `json:"nextCursor"`
}

// ListUsers returns a page of at most limit users (1 to 200; 0 means 50),
// oldest first, after the user id cursor. Errors: VALIDATION_FAILED for a
// bad limit or cursor.
func (s *Service) ListUsers(ctx context.Context, cursor string, limit int) (UserPage, error) {
	if limit == 0 {
		limit = 50
	}
	if limit < 1 || limit > 200 {
		return UserPage{}, vectabase.Errorf(vectabase.EVALIDATION, "limit: must be 1 to 200")
	}
	us, err := s.db.ListUsers(ctx, cursor, limit+1)
	if errors.Is(err, store.ErrNotFound) {
		return UserPage{}, vectabase.Errorf(vectabase.EVALIDATION, "cursor: not a cursor of this list")
	}
	if err != nil {
		return UserPage{}, err
	}
	page := UserPage{Items: us}
	if len(us) > limit {
		page.Items = us[:limit]
		next := us[limit-1].ID
		page.NextCursor = &next
	}
	if page.Items == nil {
		page.Items = []store.User{}
	}
	return page, nil
}

// SetRole gives the user userID the role role (admin, developer or user),
// on behalf of the admin actorID, audited as "user.set_role" with the old
// and new role. An admin cannot change their own role (so the last admin
// cannot lock everyone out by mistake). It takes effect on the user's next
// request. Errors: VALIDATION_FAILED for an unknown role, NOT_FOUND for an
// unknown user, CONFLICT for the caller's own account, UNAVAILABLE when the
// audit row cannot be written (the change is then already made).
func (s *Service) SetRole(ctx context.Context, actorID, userID, role string, meta RequestMeta) (store.User, error) {
	if !slices.Contains(Roles, role) {
		return store.User{}, vectabase.Errorf(vectabase.EVALIDATION, "role: must be one of %s", strings.Join(Roles, ", "))
	}
	if userID == actorID {
		return store.User{}, vectabase.Errorf(vectabase.ECONFLICT, "you cannot change your own role")
	}
	u, previous, err := s.db.SetRoleByID(ctx, userID, role)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, vectabase.Errorf(vectabase.ENOTFOUND, "user not found")
	}
	if err != nil {
		return store.User{}, err
	}
	u.PasswordHash = nil
	ev := vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: actorID, Action: "user.set_role",
		ResourceType: "user", ResourceID: u.ID, Result: vectabase.ResultSuccess,
		Details: map[string]any{"from": previous, "to": role}}
	if err := s.audit(ctx, meta, ev); err != nil {
		return store.User{}, vectabase.WrapError(vectabase.EUNAVAILABLE, "the role was changed but its audit row could not be written", err)
	}
	return u, nil
}

func (s *Service) handleListUsers(c *fiber.Ctx) error {
	limit := 0
	if q := c.Query("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 {
			return vectabase.Errorf(vectabase.EVALIDATION, "limit: must be 1 to 200")
		}
		limit = n
	}
	page, err := s.ListUsers(c.UserContext(), utils.CopyString(c.Query("cursor")), limit)
	if err != nil {
		return err
	}
	return c.JSON(page)
}

func (s *Service) handleSetRole(c *fiber.Ctx) error {
	var req struct {
		Role string `json:"role"`
	}
	if err := server.DecodeJSON(c, &req); err != nil {
		return err
	}
	u, err := s.SetRole(c.UserContext(), UserID(c), utils.CopyString(c.Params("id")), req.Role, meta(c))
	if err != nil {
		return err
	}
	return c.JSON(u)
}
