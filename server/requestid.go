package server

import (
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
)

// HeaderRequestID carries the request id both ways.
const HeaderRequestID = "X-Request-ID"

type localKey string

const (
	localRequestID localKey = "requestId"
	localActor     localKey = "actor"
	localCoding    localKey = "contentCoding"
	localClientIP  localKey = "clientIP"
)

func newRequestID() string { return uuid.NewString() }

// requestIDMiddleware keeps the client's X-Request-ID when it is a valid
// UUID and makes a new one otherwise; the response always carries it.
func requestIDMiddleware(c *fiber.Ctx) error {
	id := c.Get(HeaderRequestID)
	if u, err := uuid.Parse(id); err != nil || len(id) != 36 {
		id = newRequestID()
	} else {
		id = u.String()
	}
	c.Locals(localRequestID, id)
	c.Set(HeaderRequestID, id)
	return c.Next()
}

// RequestID returns the request's id.
func RequestID(c *fiber.Ctx) string {
	id, _ := c.Locals(localRequestID).(string)
	return id
}

// Actor is who made the request, for logs and audit: set by the auth
// middleware of each area.
type Actor struct {
	Type string // user | api_key | anonymous
	ID   string
	// Role is a user's profiles.role as the authentication read it for
	// this request (with the session check, in one look-up), so services
	// need not read it again; RoleKnown says it was read.
	Role      string
	RoleKnown bool
}

// SetActor records who is calling.
func SetActor(c *fiber.Ctx, a Actor) { c.Locals(localActor, a) }

// ActorOf returns who is calling (anonymous when no auth ran).
func ActorOf(c *fiber.Ctx) Actor {
	if a, ok := c.Locals(localActor).(Actor); ok {
		return a
	}
	return Actor{Type: "anonymous"}
}
