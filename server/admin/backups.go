package admin

import (
	"bytes"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store/backup"
)

// backupWork bounds a create, verify or restore request: the work is a
// whole pg_dump or pg_restore, minutes on a large database.
const backupWork = time.Hour

type backupHandler struct{ svc *backup.Service }

// BackupRoutes is the route table of the backups' admin API (contract
// section 7), every route behind requireAdmin and audited by the service:
//
//	GET    /api/admin/backups              list, newest first: {items, nextCursor}
//	POST   /api/admin/backups              create: 201 with the backup
//	GET    /api/admin/backups/:id          one backup
//	POST   /api/admin/backups/:id/verify   decrypt, checksum, scratch restore, row counts
//	POST   /api/admin/backups/:id/restore  replace the live data (all or nothing)
//	DELETE /api/admin/backups/:id          204
//
// The POST bodies are empty or {}. A backup that fails verification or
// cannot be unwrapped by the KEK is VALIDATION_FAILED; a missing one
// NOT_FOUND; an operation while another runs CONFLICT.
func BackupRoutes(svc *backup.Service, requireAdmin fiber.Handler) []server.Route {
	h := &backupHandler{svc: svc}
	const small = 4 << 10
	return []server.Route{
		{Method: fiber.MethodGet, Path: "/api/admin/backups", Auth: requireAdmin, BodyLimit: small, Timeout: 30 * time.Second, Handler: h.list},
		{Method: fiber.MethodPost, Path: "/api/admin/backups", Auth: requireAdmin, BodyLimit: small, Timeout: backupWork, Handler: h.create},
		{Method: fiber.MethodGet, Path: "/api/admin/backups/:id", Auth: requireAdmin, BodyLimit: small, Timeout: 30 * time.Second, Handler: h.get},
		{Method: fiber.MethodPost, Path: "/api/admin/backups/:id/verify", Auth: requireAdmin, BodyLimit: small, Timeout: backupWork, Handler: h.verify},
		{Method: fiber.MethodPost, Path: "/api/admin/backups/:id/restore", Auth: requireAdmin, BodyLimit: small, Timeout: backupWork, Handler: h.restore},
		{Method: fiber.MethodDelete, Path: "/api/admin/backups/:id", Auth: requireAdmin, BodyLimit: small, Timeout: 30 * time.Second, Handler: h.delete},
	}
}

// actor is who calls, for the audit trail.
func backupActor(c *fiber.Ctx) backup.Actor {
	a := server.ActorOf(c)
	return backup.Actor{Type: a.Type, ID: a.ID, IP: server.ClientIP(c), RequestID: server.RequestID(c)}
}

// noBody accepts an empty body or an empty JSON object, and refuses any
// field (the strict decoder's 400).
func noBody(c *fiber.Ctx) error {
	if len(bytes.TrimSpace(c.Body())) == 0 {
		return nil
	}
	var v struct{}
	return server.DecodeJSON(c, &v)
}

// backupID copies the :id parameter out of Fiber's buffer and checks its
// shape before it reaches the service.
func backupID(c *fiber.Ctx) (string, error) {
	id := utils.CopyString(c.Params("id"))
	if !backup.ValidID(id) {
		return "", vectabase.Errorf(vectabase.EVALIDATION, "id: not a backup id (like 20260109T120000Z-1a2b3c4d)")
	}
	return id, nil
}

func (h *backupHandler) list(c *fiber.Ctx) error {
	items, err := h.svc.List(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"items": items, "nextCursor": nil})
}

func (h *backupHandler) create(c *fiber.Ctx) error {
	if err := noBody(c); err != nil {
		return err
	}
	b, err := h.svc.Create(c.UserContext(), backupActor(c), nil)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(b)
}

func (h *backupHandler) get(c *fiber.Ctx) error {
	id, err := backupID(c)
	if err != nil {
		return err
	}
	b, err := h.svc.Get(c.UserContext(), id)
	if err != nil {
		return err
	}
	return c.JSON(b)
}

func (h *backupHandler) verify(c *fiber.Ctx) error {
	id, err := backupID(c)
	if err != nil {
		return err
	}
	if err := noBody(c); err != nil {
		return err
	}
	res, err := h.svc.Verify(c.UserContext(), backupActor(c), id, nil)
	if err != nil {
		return err
	}
	return c.JSON(res)
}

func (h *backupHandler) restore(c *fiber.Ctx) error {
	id, err := backupID(c)
	if err != nil {
		return err
	}
	if err := noBody(c); err != nil {
		return err
	}
	res, err := h.svc.Restore(c.UserContext(), backupActor(c), id, nil)
	if err != nil {
		return err
	}
	return c.JSON(res)
}

func (h *backupHandler) delete(c *fiber.Ctx) error {
	id, err := backupID(c)
	if err != nil {
		return err
	}
	if err := h.svc.Delete(c.UserContext(), backupActor(c), id); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}
