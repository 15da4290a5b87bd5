package marketplace

import (
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store"
)

// AdminRoutes is the administrators' view of developer API keys:
// GET /api/admin/api-keys/usage?hours=24&limit=20, the keys with the most
// requests in the last hours (1 to 720) with how many of those were
// refused with 429 by the key's rate limit. requireAdmin is
// auth.(*Service).RequireAdmin().
func (s *Service) AdminRoutes(requireAdmin fiber.Handler) []server.Route {
	return []server.Route{
		{Method: fiber.MethodGet, Path: "/api/admin/api-keys/usage", Auth: requireAdmin, BodyLimit: tinyBody, Timeout: 30 * time.Second, Handler: s.handleKeyUsage},
	}
}

// KeyUsagePage is the body of GET /api/admin/api-keys/usage.
type KeyUsagePage struct {
	Since time.Time        `json:"since"`
	Items []store.KeyUsage `json:"items"`
}

func intParam(c *fiber.Ctx, name string, def, lo, hi int) (int, error) {
	q := c.Query(name)
	if q == "" {
		return def, nil
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < lo || n > hi {
		return 0, vectabase.Errorf(vectabase.EVALIDATION, "%s: must be an integer from %d to %d", name, lo, hi)
	}
	return n, nil
}

func (s *Service) handleKeyUsage(c *fiber.Ctx) error {
	hours, err := intParam(c, "hours", 24, 1, 720)
	if err != nil {
		return err
	}
	limit, err := intParam(c, "limit", 20, 1, 100)
	if err != nil {
		return err
	}
	since := time.Now().UTC().Add(-time.Duration(hours) * time.Hour)
	items, err := s.repo.TopAPIKeys(c.UserContext(), since, limit)
	if err != nil {
		return err
	}
	if items == nil {
		items = []store.KeyUsage{}
	}
	return c.JSON(KeyUsagePage{Since: since, Items: items})
}
