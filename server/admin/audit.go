package admin

import (
	"context"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/vault/audit"
)

// AuditLog is what the audit routes need of vault/audit.
type AuditLog interface {
	audit.Recorder
	Query(ctx context.Context, f audit.Filter) (audit.Page, error)
	Verify(ctx context.Context) (audit.VerifyResult, error)
}

var _ AuditLog = (*audit.Log)(nil)

type auditHandler struct{ log AuditLog }

// AuditRoutes is the route table of the audit log's admin API:
// GET /api/admin/audit (filtered, paged, newest first) and
// GET /api/admin/audit/verify (the hash chain check). Both are admin
// actions and are themselves audited; if that fails they fail closed.
func AuditRoutes(al AuditLog, requireAdmin fiber.Handler) []server.Route {
	h := &auditHandler{log: al}
	return []server.Route{
		{Method: fiber.MethodGet, Path: "/api/admin/audit", Auth: requireAdmin, BodyLimit: 4 << 10, Timeout: 30 * time.Second, Handler: h.list},
		{Method: fiber.MethodGet, Path: "/api/admin/audit/verify", Auth: requireAdmin, BodyLimit: 4 << 10, Timeout: 5 * time.Minute, Handler: h.verify},
	}
}

// record audits an admin action; an error becomes UNAVAILABLE.
func (h *auditHandler) record(c *fiber.Ctx, action, result string, details map[string]any) error {
	a := server.ActorOf(c)
	err := h.log.Record(c.UserContext(), vectabase.AuditEvent{
		ActorType: a.Type, ActorID: a.ID, Action: action, ResourceType: "audit_log",
		Result: result, IP: server.ClientIP(c), RequestID: server.RequestID(c), Details: details,
	})
	if err != nil {
		return vectabase.WrapError(vectabase.EUNAVAILABLE, "the audit trail cannot be written, so the request was refused", err)
	}
	return nil
}

func parseTime(c *fiber.Ctx, key string) (time.Time, error) {
	s := c.Query(key)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, vectabase.Errorf(vectabase.EVALIDATION, "%s: must be an RFC 3339 time", key)
	}
	return t, nil
}

func (h *auditHandler) filter(c *fiber.Ctx) (audit.Filter, error) {
	q := func(k string) string { return utils.CopyString(c.Query(k)) }
	f := audit.Filter{
		ActorType: q("actorType"), ActorID: q("actorId"), Action: q("action"),
		ResourceType: q("resourceType"), ResourceID: q("resourceId"), Result: q("result"),
		Cursor: q("cursor"),
	}
	var err error
	if f.Since, err = parseTime(c, "since"); err != nil {
		return f, err
	}
	if f.Until, err = parseTime(c, "until"); err != nil {
		return f, err
	}
	if s := c.Query("limit"); s != "" {
		if f.Limit, err = strconv.Atoi(s); err != nil || f.Limit <= 0 {
			return f, vectabase.Errorf(vectabase.EVALIDATION, "limit: must be a positive integer")
		}
	}
	return f, nil
}

func (h *auditHandler) list(c *fiber.Ctx) error {
	f, err := h.filter(c)
	if err == nil {
		var page audit.Page
		page, err = h.log.Query(c.UserContext(), f)
		if err == nil {
			if err := h.record(c, "audit.query", vectabase.ResultSuccess, map[string]any{"count": len(page.Items)}); err != nil {
				return err
			}
			return c.JSON(page)
		}
	}
	if rerr := h.record(c, "audit.query", vectabase.ResultFailure, map[string]any{"error": vectabase.ErrorCode(err)}); rerr != nil {
		return rerr
	}
	return err
}

func (h *auditHandler) verify(c *fiber.Ctx) error {
	res, err := h.log.Verify(c.UserContext())
	if err != nil {
		return err
	}
	result := vectabase.ResultSuccess
	if !res.OK {
		result = vectabase.ResultFailure
	}
	if err := h.record(c, "audit.verify", result, map[string]any{"ok": res.OK, "rows": res.Rows, "firstBroken": res.FirstBroken}); err != nil {
		return err
	}
	return c.JSON(res)
}
