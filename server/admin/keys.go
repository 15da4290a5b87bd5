package admin

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/rotation"
	"github.com/vectabase/vectabase/store"
)

// KeyService is what the key routes need: *rotation.Service.
type KeyService interface {
	Keys(ctx context.Context) (rotation.KeysView, error)
	Progress(ctx context.Context) (rotation.Progress, error)
	RotateDEK(ctx context.Context, a rotation.Actor) (store.RotationJob, error)
	RotateKEKInPlace(ctx context.Context, a rotation.Actor) (store.RotationJob, error)
	DestroyOld(ctx context.Context, a rotation.Actor) (rotation.DestroyResult, error)
}

var _ KeyService = (*rotation.Service)(nil)

// KeyRoutes is the key-management API (contract section 3), every route
// for administrators only (requireAdmin: auth.(*Service).RequireAdmin()).
func KeyRoutes(svc KeyService, requireAdmin fiber.Handler) []server.Route {
	h := keyHandlers{svc: svc}
	return []server.Route{
		{Method: fiber.MethodGet, Path: "/api/admin/keys", Auth: requireAdmin, Handler: h.keys},
		{Method: fiber.MethodPost, Path: "/api/admin/keys/rotate", Auth: requireAdmin, BodyLimit: 1 << 10, Timeout: 2 * time.Minute, Handler: h.rotate},
		{Method: fiber.MethodGet, Path: "/api/admin/keys/rotation", Auth: requireAdmin, Handler: h.rotation},
		{Method: fiber.MethodPost, Path: "/api/admin/keys/destroy-old", Auth: requireAdmin, BodyLimit: 1 << 10, Timeout: 2 * time.Minute, Handler: h.destroyOld},
	}
}

type keyHandlers struct{ svc KeyService }

func (h keyHandlers) keys(c *fiber.Ctx) error {
	v, err := h.svc.Keys(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(v)
}

func (h keyHandlers) rotation(c *fiber.Ctx) error {
	p, err := h.svc.Progress(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(p)
}

type rotateRequest struct {
	Kind string `json:"kind"`
}

type rotateResponse struct {
	JobID string `json:"jobId"`
	Kind  string `json:"kind"`
	State string `json:"state"`
}

func rotationActor(c *fiber.Ctx) rotation.Actor {
	act := server.ActorOf(c)
	return rotation.Actor{Type: act.Type, ID: utils.CopyString(act.ID), IP: server.ClientIP(c), RequestID: utils.CopyString(server.RequestID(c))}
}

// destroyOld is `vectabase keys destroy-old` over HTTP: 200 {destroyed}
// when every old data key went, 409 CONFLICT naming the keys still in use
// and their ciphertext counts (the census) otherwise. Audited either way.
func (h keyHandlers) destroyOld(c *fiber.Ctx) error {
	if err := noBody(c); err != nil {
		return err
	}
	res, err := h.svc.DestroyOld(c.UserContext(), rotationActor(c))
	if err != nil {
		return err
	}
	if res.Destroyed == nil {
		res.Destroyed = []uint32{}
	}
	return c.JSON(res)
}

func (h keyHandlers) rotate(c *fiber.Ctx) error {
	var req rotateRequest
	if err := server.DecodeJSON(c, &req); err != nil {
		return err
	}
	a := rotationActor(c)
	var (
		job store.RotationJob
		err error
	)
	switch req.Kind {
	case store.RotationDEK:
		job, err = h.svc.RotateDEK(c.UserContext(), a)
	case store.RotationKEK:
		job, err = h.svc.RotateKEKInPlace(c.UserContext(), a)
	default:
		return vectabase.Errorf(vectabase.EVALIDATION, `kind: must be "dek" or "kek"`)
	}
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusAccepted).JSON(rotateResponse{JobID: job.ID, Kind: job.Kind, State: job.State})
}
