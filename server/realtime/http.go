package realtime

import (
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
)

// Routes is the realtime area's route table. The socket authenticates
// itself (access_token query or first message), so the route has no Auth
// handler: a browser cannot set an Authorization header on a WebSocket.
func (h *Hub) Routes() []server.Route {
	return []server.Route{
		{Method: fiber.MethodGet, Path: "/api/realtime", BodyLimit: 0, Timeout: 10 * time.Second, Handler: h.handleUpgrade},
	}
}

func (h *Hub) handleUpgrade(c *fiber.Ctx) error {
	if !websocket.IsWebSocketUpgrade(c) {
		return vectabase.Errorf(vectabase.EBADREQUEST, "/api/realtime is a WebSocket endpoint: connect with an Upgrade: websocket request")
	}
	if h.Connections() >= h.cfg.MaxConnections {
		return vectabase.Errorf(vectabase.EUNAVAILABLE, "too many realtime connections on this server; retry later")
	}
	return h.upgrader(c)
}

func (h *Hub) newUpgrader() fiber.Handler {
	return websocket.New(func(c *websocket.Conn) {
		// serve gets the underlying connection: the contrib Conn is
		// recycled when this function returns.
		h.serve(c.Conn, c.Query("access_token"))
	}, websocket.Config{
		// Any origin may connect: the socket is authorized by a bearer
		// token the page must hold, never by cookies, so a foreign page
		// gains nothing from opening it.
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   4096,
		WriteBufferSize:  4096,
		// The default recover handler writes the panic value to the client
		// and stderr; a panic value may hold anything. Log its type only.
		RecoverHandler: func(c *websocket.Conn) {
			if r := recover(); r != nil {
				h.log.Error().Str("panic", typeName(r)).Msg("realtime: connection handler panicked")
			}
		},
	})
}
