// Package secrets is the HTTP API of the secrets vault, /api/secrets. Every
// call reaches the audit trail: those the vault serves or refuses by
// policy through the vault itself, and those refused earlier (no valid
// token, a body that does not decode) through Service.Refused.
//
// A name with '/' goes in the path either percent-encoded as one segment
// (/api/secrets/dev%2Fme%2Fkey) or as it is (/api/secrets/dev/me/key); in
// the second form a trailing /versions asks for the versions.
package secrets

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/vault"
)

type handler struct{ svc *vault.Service }

// Routes is the vault's route table. requireUser authenticates the bearer
// token and sets the actor (auth.(*Service).RequireUser()).
func Routes(svc *vault.Service, requireUser fiber.Handler) []server.Route {
	h := &handler{svc: svc}
	a := func(action string) fiber.Handler { return h.audited(action, requireUser) }
	const t = 10 * time.Second
	return []server.Route{
		{Method: fiber.MethodGet, Path: "/api/secrets", Auth: a(vault.ActionList), BodyLimit: 4 << 10, Timeout: t, Handler: h.list},
		{Method: fiber.MethodPost, Path: "/api/secrets", Auth: a(vault.ActionWrite), Timeout: t, Handler: h.create},
		{Method: fiber.MethodGet, Path: "/api/secrets/:name/versions", Auth: a(vault.ActionVersions), BodyLimit: 4 << 10, Timeout: t, Handler: h.versions},
		{Method: fiber.MethodGet, Path: "/api/secrets/:name", Auth: a(vault.ActionRead), BodyLimit: 4 << 10, Timeout: t, Handler: h.get},
		{Method: fiber.MethodPut, Path: "/api/secrets/:name", Auth: a(vault.ActionWrite), Timeout: t, Handler: h.put},
		{Method: fiber.MethodDelete, Path: "/api/secrets/:name", Auth: a(vault.ActionDelete), BodyLimit: 4 << 10, Timeout: t, Handler: h.delete},
		// Names with unencoded slashes.
		{Method: fiber.MethodGet, Path: "/api/secrets/+", Auth: a(""), BodyLimit: 4 << 10, Timeout: t, Handler: h.getOrVersions},
		{Method: fiber.MethodPut, Path: "/api/secrets/+", Auth: a(vault.ActionWrite), Timeout: t, Handler: h.put},
		{Method: fiber.MethodDelete, Path: "/api/secrets/+", Auth: a(vault.ActionDelete), BodyLimit: 4 << 10, Timeout: t, Handler: h.delete},
	}
}

type localKey string

const localReached localKey = "secrets.reached"

// audited runs requireUser and audits its refusals: a request that never
// reached a handler was refused by authentication. Refusals for a missing
// or bad token (UNAUTHORIZED, or RATE_LIMITED past the refusal limit) are
// not audited one row each: requireUser counted them in the per-address,
// per-minute aggregate (server.Refuse), so an anonymous flood cannot fill
// the audit queue that signed-in reads and writes fail closed on. A
// signed-in caller the policy refuses is still audited row by row.
func (h *handler) audited(action string, requireUser fiber.Handler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		reached := false
		c.Locals(localReached, &reached)
		err := requireUser(c)
		if err == nil || reached {
			return err
		}
		if code := vectabase.ErrorCode(err); code == vectabase.EUNAUTHORIZED || code == vectabase.ERATELIMITED {
			return err
		}
		name, versions := nameOf(c)
		if action == "" {
			action = vault.ActionRead
			if versions {
				action = vault.ActionVersions
			}
		}
		return h.svc.Refused(c.UserContext(), caller(c), action, name, err)
	}
}

func reach(c *fiber.Ctx) {
	if p, ok := c.Locals(localReached).(*bool); ok {
		*p = true
	}
}

func caller(c *fiber.Ctx) vault.Caller {
	a := server.ActorOf(c)
	return vault.Caller{Type: a.Type, ID: a.ID, IP: server.ClientIP(c), RequestID: server.RequestID(c), Role: a.Role, RoleKnown: a.RoleKnown}
}

// HeaderReason carries why a secret is read (the console's reveal dialog);
// the "reason" query parameter does the same. It goes into the read's audit
// row.
const HeaderReason = "X-Access-Reason"

// reason is the request's access reason, validated (vault.ValidReason).
func reason(c *fiber.Ctx) (string, error) {
	r := c.Query("reason")
	if r == "" {
		r = c.Get(HeaderReason)
	}
	r = strings.TrimSpace(r)
	if err := vault.ValidReason(r); err != nil {
		return "", err
	}
	return utils.CopyString(r), nil
}

// nameOf returns the secret name in the path, and whether the path asks for
// its versions. An undecodable name comes back as "" (and fails validation).
func nameOf(c *fiber.Ctx) (name string, versions bool) {
	raw := c.Params("name")
	if raw == "" {
		raw = c.Params("+")
		if c.Method() == fiber.MethodGet {
			raw, versions = strings.CutSuffix(raw, "/versions")
		}
	} else {
		versions = strings.HasSuffix(c.Route().Path, "/versions")
	}
	name, err := url.PathUnescape(raw)
	if err != nil {
		return "", versions
	}
	return utils.CopyString(name), versions
}

// intQuery parses an optional integer query parameter; a malformed one is
// -1, which the vault refuses (and audits) as invalid.
func intQuery(c *fiber.Ctx, key string) int {
	s := c.Query(key)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

type valueResponse struct {
	Name      string    `json:"name"`
	Value     string    `json:"value"`
	Version   int       `json:"version"`
	UpdatedAt time.Time `json:"updatedAt"`
}

func (h *handler) get(c *fiber.Ctx) error {
	reach(c)
	name, _ := nameOf(c)
	who := caller(c)
	r, err := reason(c)
	if err != nil {
		return h.svc.Refused(c.UserContext(), who, vault.ActionRead, name, err)
	}
	who.Reason = r
	v, err := h.svc.Get(c.UserContext(), who, name, intQuery(c, "version"))
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(valueResponse{Name: v.Name, Value: string(v.Value), Version: v.Version, UpdatedAt: v.UpdatedAt})
}

func (h *handler) getOrVersions(c *fiber.Ctx) error {
	if _, versions := nameOf(c); versions {
		return h.versions(c)
	}
	return h.get(c)
}

type putRequest struct {
	Value           *string `json:"value"`
	ExpectedVersion *int    `json:"expectedVersion"`
}

type createRequest struct {
	Name            string  `json:"name"`
	Value           *string `json:"value"`
	ExpectedVersion *int    `json:"expectedVersion"`
}

func (h *handler) put(c *fiber.Ctx) error {
	reach(c)
	name, _ := nameOf(c)
	var req putRequest
	if err := server.DecodeJSON(c, &req); err != nil {
		return h.svc.Refused(c.UserContext(), caller(c), vault.ActionWrite, name, err)
	}
	return h.write(c, name, req.Value, req.ExpectedVersion)
}

func (h *handler) create(c *fiber.Ctx) error {
	reach(c)
	var req createRequest
	if err := server.DecodeJSON(c, &req); err != nil {
		return h.svc.Refused(c.UserContext(), caller(c), vault.ActionWrite, "", err)
	}
	return h.write(c, req.Name, req.Value, req.ExpectedVersion)
}

func (h *handler) write(c *fiber.Ctx, name string, value *string, expected *int) error {
	if value == nil {
		return h.svc.Refused(c.UserContext(), caller(c), vault.ActionWrite, name,
			vectabase.Errorf(vectabase.EVALIDATION, "value: is required"))
	}
	m, err := h.svc.Put(c.UserContext(), caller(c), name, []byte(*value), expected)
	if err != nil {
		return err
	}
	status := fiber.StatusOK
	if m.Version == 1 {
		status = fiber.StatusCreated
	}
	return c.Status(status).JSON(m)
}

func (h *handler) delete(c *fiber.Ctx) error {
	reach(c)
	name, _ := nameOf(c)
	if err := h.svc.Delete(c.UserContext(), caller(c), name); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

type versionsResponse struct {
	Items      []vault.Version `json:"items"`
	NextCursor *string         `json:"nextCursor"`
}

func (h *handler) versions(c *fiber.Ctx) error {
	reach(c)
	name, _ := nameOf(c)
	vs, err := h.svc.Versions(c.UserContext(), caller(c), name)
	if err != nil {
		return err
	}
	return c.JSON(versionsResponse{Items: vs})
}

func (h *handler) list(c *fiber.Ctx) error {
	reach(c)
	page, err := h.svc.List(c.UserContext(), caller(c), intQuery(c, "limit"), utils.CopyString(c.Query("cursor")))
	if err != nil {
		return err
	}
	return c.JSON(page)
}
