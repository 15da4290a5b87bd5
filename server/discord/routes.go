package discord

import (
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store"
)

// Auth is what the area needs from authentication (server/auth).
type Auth struct {
	RequireUser fiber.Handler
	UserID      func(c *fiber.Ctx) string
}

const (
	smallBody = 4 << 10
	// The install callback calls Discord three times.
	discordTimeout = 30 * time.Second
)

// Routes is the bot's route table. Discord authenticates interactions by
// signature, checked by the handler over the raw body; the install
// callback is authenticated by its signed, single-use state. Without
// a.RequireUser only the interactions route is mounted.
func (s *Service) Routes(a Auth) []server.Route {
	routes := []server.Route{
		{Method: fiber.MethodPost, Path: "/api/discord/interactions", BodyLimit: MaxInteractionBytes, Timeout: 10 * time.Second, Handler: s.handleInteraction},
	}
	if a.RequireUser == nil || a.UserID == nil {
		return routes
	}
	user := a.RequireUser
	return append(routes,
		server.Route{Method: fiber.MethodGet, Path: "/api/discord/install", Auth: user, Handler: s.handleInstall(a)},
		server.Route{Method: fiber.MethodGet, Path: "/api/discord/install/callback", Timeout: discordTimeout, Handler: s.handleInstallCallback},

		server.Route{Method: fiber.MethodGet, Path: "/api/discord/servers", Auth: user, Handler: s.handleListServers(a)},
		server.Route{Method: fiber.MethodGet, Path: "/api/discord/servers/:guildId", Auth: user, Handler: s.handleGetServer(a)},
		server.Route{Method: fiber.MethodPatch, Path: "/api/discord/servers/:guildId", Auth: user, BodyLimit: smallBody, Handler: s.handleUpdateServer(a)},
		server.Route{Method: fiber.MethodDelete, Path: "/api/discord/servers/:guildId", Auth: user, Handler: s.handleRemoveServer(a)},

		server.Route{Method: fiber.MethodGet, Path: "/api/discord/servers/:guildId/products", Auth: user, Handler: s.handleListProducts(a)},
		server.Route{Method: fiber.MethodPost, Path: "/api/discord/servers/:guildId/products", Auth: user, BodyLimit: smallBody, Handler: s.handleAddProduct(a)},
		server.Route{Method: fiber.MethodDelete, Path: "/api/discord/servers/:guildId/products/:id", Auth: user, Handler: s.handleRemoveProduct(a)},

		server.Route{Method: fiber.MethodGet, Path: "/api/discord/servers/:guildId/permissions", Auth: user, Handler: s.handleListPermissions(a)},
		server.Route{Method: fiber.MethodPost, Path: "/api/discord/servers/:guildId/permissions", Auth: user, BodyLimit: smallBody, Handler: s.handlePutPermission(a)},
		server.Route{Method: fiber.MethodDelete, Path: "/api/discord/servers/:guildId/permissions/:id", Auth: user, Handler: s.handleRemovePermission(a)},

		server.Route{Method: fiber.MethodGet, Path: "/api/discord/servers/:guildId/grants", Auth: user, Handler: s.handleListGrants(a)},
		// A retry calls Discord at once, with retries inside the role budget.
		server.Route{Method: fiber.MethodPost, Path: "/api/discord/servers/:guildId/grants/:id/retry", Auth: user, BodyLimit: smallBody, Timeout: discordTimeout, Handler: s.handleRetryGrant(a)},
	)
}

func (s *Service) handleInteraction(c *fiber.Ctx) error {
	resp, err := s.Interact(c.UserContext(), Request{
		Signature: c.Get("X-Signature-Ed25519"),
		Timestamp: c.Get("X-Signature-Timestamp"),
		// Deferred commands outlive the handler: Fiber reuses its buffers.
		Body:      append([]byte(nil), c.Body()...),
		IP:        utils.CopyString(server.ClientIP(c)),
		RequestID: server.RequestID(c),
	})
	if err != nil {
		return err
	}
	// The bytes c.JSON would send, without reflection; SetBody copies
	// them out of the stack buffer.
	var buf [512]byte
	c.Response().SetBody(resp.AppendJSON(buf[:0]))
	c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	return nil
}

func actorOf(c *fiber.Ctx, a Auth) Actor {
	return Actor{Type: vectabase.ActorUser, ID: a.UserID(c), IP: utils.CopyString(server.ClientIP(c)), RequestID: server.RequestID(c)}
}

func param(c *fiber.Ctx, name string) string { return utils.CopyString(c.Params(name)) }

func (s *Service) handleInstall(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		u, err := s.InstallURL(c.UserContext(), a.UserID(c), utils.CopyString(c.Query("storeId")))
		if err != nil {
			return err
		}
		c.Set(fiber.HeaderCacheControl, "no-store")
		c.Location(u)
		return c.Status(fiber.StatusFound).JSON(fiber.Map{"url": u})
	}
}

func (s *Service) handleInstallCallback(c *fiber.Ctx) error {
	res, err := s.InstallCallback(c.UserContext(), Callback{
		Code: utils.CopyString(c.Query("code")), State: utils.CopyString(c.Query("state")),
		GuildID: utils.CopyString(c.Query("guild_id")), Error: utils.CopyString(c.Query("error")),
		IP: utils.CopyString(server.ClientIP(c)), RequestID: server.RequestID(c),
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	status := fiber.StatusOK
	if res.Outcome == "created" {
		status = fiber.StatusCreated
	}
	return c.Status(status).JSON(res)
}

func (s *Service) handleListServers(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		out, err := s.ListServers(c.UserContext(), actorOf(c, a), utils.CopyString(c.Query("storeId")))
		if err != nil {
			return err
		}
		return c.JSON(out)
	}
}

func (s *Service) handleGetServer(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		out, err := s.GetServer(c.UserContext(), actorOf(c, a), param(c, "guildId"))
		if err != nil {
			return err
		}
		return c.JSON(out)
	}
}

func (s *Service) handleUpdateServer(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		var in ServerUpdate
		if err := server.DecodeJSON(c, &in); err != nil {
			return err
		}
		out, err := s.UpdateServer(c.UserContext(), actorOf(c, a), param(c, "guildId"), in)
		if err != nil {
			return err
		}
		return c.JSON(out)
	}
}

func (s *Service) handleRemoveServer(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if err := s.RemoveServer(c.UserContext(), actorOf(c, a), param(c, "guildId")); err != nil {
			return err
		}
		return c.SendStatus(fiber.StatusNoContent)
	}
}

func (s *Service) handleListProducts(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		out, err := s.ListProducts(c.UserContext(), actorOf(c, a), param(c, "guildId"))
		if err != nil {
			return err
		}
		return c.JSON(out)
	}
}

func (s *Service) handleAddProduct(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		var in ProductInput
		if err := server.DecodeJSON(c, &in); err != nil {
			return err
		}
		out, err := s.AddProduct(c.UserContext(), actorOf(c, a), param(c, "guildId"), in)
		if err != nil {
			return err
		}
		return c.Status(fiber.StatusCreated).JSON(out)
	}
}

func (s *Service) handleRemoveProduct(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if err := s.RemoveProduct(c.UserContext(), actorOf(c, a), param(c, "guildId"), param(c, "id")); err != nil {
			return err
		}
		return c.SendStatus(fiber.StatusNoContent)
	}
}

func (s *Service) handleListPermissions(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		out, err := s.ListPermissions(c.UserContext(), actorOf(c, a), param(c, "guildId"))
		if err != nil {
			return err
		}
		return c.JSON(out)
	}
}

func (s *Service) handlePutPermission(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		var in PermissionInput
		if err := server.DecodeJSON(c, &in); err != nil {
			return err
		}
		out, created, err := s.PutPermission(c.UserContext(), actorOf(c, a), param(c, "guildId"), in)
		if err != nil {
			return err
		}
		status := fiber.StatusOK
		if created {
			status = fiber.StatusCreated
		}
		return c.Status(status).JSON(out)
	}
}

func (s *Service) handleRemovePermission(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if err := s.RemovePermission(c.UserContext(), actorOf(c, a), param(c, "guildId"), param(c, "id")); err != nil {
			return err
		}
		return c.SendStatus(fiber.StatusNoContent)
	}
}

// pageOf reads ?limit and ?cursor; ListGrants checks the limit's range.
func pageOf(c *fiber.Ctx) (store.Page, error) {
	var p store.Page
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > MaxGrantPage {
			return p, validation("limit: must be an integer from 1 to 200")
		}
		p.Limit = n
	}
	if raw := c.Query("cursor"); raw != "" {
		cur, err := store.DecodeCursor(raw)
		if err != nil {
			return p, validation("cursor: is not a cursor this API returned")
		}
		p.After = &cur
	}
	return p, nil
}

func (s *Service) handleListGrants(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		p, err := pageOf(c)
		if err != nil {
			return err
		}
		out, err := s.ListGrants(c.UserContext(), actorOf(c, a), param(c, "guildId"), utils.CopyString(c.Query("status")), p)
		if err != nil {
			return err
		}
		return c.JSON(out)
	}
}

func (s *Service) handleRetryGrant(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		out, err := s.RetryGrant(c.UserContext(), actorOf(c, a), param(c, "guildId"), param(c, "id"))
		if err != nil {
			return err
		}
		return c.JSON(out)
	}
}
