package admin

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/vault/audit"
)

// Checkpoints is what the public checkpoint routes need of vault/audit.
type Checkpoints interface {
	Latest(ctx context.Context) ([]byte, error)
	VerifierKey(ctx context.Context) (vkey, origin string, err error)
}

var _ Checkpoints = (*audit.Checkpointer)(nil)

type checkpointHandler struct{ c Checkpoints }

// CheckpointRoutes is the route table of the audit log's public proofs:
// GET /api/audit/checkpoint (the newest signed checkpoint, a C2SP signed
// note, text/plain) and GET /api/audit/checkpoint/key (the note verifier
// key that checks it). Both are public on purpose: anyone may keep copies
// and later hold the log to them. Neither reveals a row.
func CheckpointRoutes(c Checkpoints) []server.Route {
	h := &checkpointHandler{c: c}
	return []server.Route{
		{Method: fiber.MethodGet, Path: "/api/audit/checkpoint", Auth: nil, BodyLimit: 4 << 10, Timeout: 10 * time.Second, Handler: h.checkpoint},
		{Method: fiber.MethodGet, Path: "/api/audit/checkpoint/key", Auth: nil, BodyLimit: 4 << 10, Timeout: 10 * time.Second, Handler: h.key},
	}
}

func (h *checkpointHandler) checkpoint(c *fiber.Ctx) error {
	note, err := h.c.Latest(c.UserContext())
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, "text/plain; charset=utf-8")
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Send(note)
}

func (h *checkpointHandler) key(c *fiber.Ctx) error {
	vkey, _, err := h.c.VerifierKey(c.UserContext())
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, "text/plain; charset=utf-8")
	return c.SendString(vkey + "\n")
}
