package admin

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/vault"
)

// Honeytokens is what the honeytoken route needs of the vault.
type Honeytokens interface {
	SetHoneytoken(ctx context.Context, c vault.Caller, name string, on bool) error
}

var _ Honeytokens = (*vault.Service)(nil)

type honeytokenHandler struct{ v Honeytokens }

// HoneytokenRoutes is the route table of tripwire secrets:
// POST /api/admin/honeytokens {name, enabled} marks the secret called name
// as a honeytoken (or clears the mark). Admin only; audited by the vault.
func HoneytokenRoutes(v Honeytokens, requireAdmin fiber.Handler) []server.Route {
	h := &honeytokenHandler{v: v}
	return []server.Route{
		{Method: fiber.MethodPost, Path: "/api/admin/honeytokens", Auth: requireAdmin, BodyLimit: 4 << 10, Timeout: 10 * time.Second, Handler: h.set},
	}
}

type honeytokenRequest struct {
	Name    string `json:"name"`
	Enabled *bool  `json:"enabled"`
}

type honeytokenResponse struct {
	Name       string `json:"name"`
	Honeytoken bool   `json:"honeytoken"`
}

func (h *honeytokenHandler) set(c *fiber.Ctx) error {
	var req honeytokenRequest
	if err := server.DecodeJSON(c, &req); err != nil {
		return err
	}
	on := req.Enabled == nil || *req.Enabled
	a := server.ActorOf(c)
	caller := vault.Caller{Type: a.Type, ID: a.ID, IP: server.ClientIP(c), RequestID: server.RequestID(c)}
	if err := h.v.SetHoneytoken(c.UserContext(), caller, req.Name, on); err != nil {
		return err
	}
	return c.JSON(honeytokenResponse{Name: req.Name, Honeytoken: on})
}
