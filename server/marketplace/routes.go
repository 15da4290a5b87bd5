package marketplace

import (
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase/server"
)

// Small JSON bodies: nothing in this area needs more.
const (
	smallBody = 64 << 10
	tinyBody  = 4 << 10
	// The hot paths answer fast or not at all: a game server retries.
	hotTimeout = 5 * time.Second
)

// Routes is the area's route table. The API-key routes keep the
// server's default body limit and apply tinyBody themselves (checkBodySize),
// so that an oversized body is refused inside APIKeyRoute and still leaves
// its api_request_logs row. Bearer routes use a's middleware;
// product reads accept an anonymous caller; check, verify and obfuscation
// usage take an API key.
func (s *Service) Routes(a Auth) []server.Route {
	user, anyone := a.RequireUser, a.OptionalUser
	key := s.APIKeyRoute() // the handlers authenticate; check needs whitelist:read
	return []server.Route{
		{Method: fiber.MethodGet, Path: "/api/stores", Auth: user, Handler: s.handleListStores(a)},
		{Method: fiber.MethodPost, Path: "/api/stores", Auth: user, BodyLimit: smallBody, Handler: s.handleCreateStore(a)},
		{Method: fiber.MethodGet, Path: "/api/stores/:id", Auth: user, Handler: s.handleGetStore(a)},
		{Method: fiber.MethodPatch, Path: "/api/stores/:id", Auth: user, BodyLimit: smallBody, Handler: s.handleUpdateStore(a)},
		{Method: fiber.MethodPut, Path: "/api/stores/:id", Auth: user, BodyLimit: smallBody, Handler: s.handleUpdateStore(a)},
		{Method: fiber.MethodDelete, Path: "/api/stores/:id", Auth: user, Handler: s.handleDeleteStore(a)},
		{Method: fiber.MethodGet, Path: "/api/stores/:id/stats", Auth: user, Handler: s.handleStoreStats(a)},

		{Method: fiber.MethodGet, Path: "/api/products", Auth: anyone, Handler: s.handleListProducts(a)},
		{Method: fiber.MethodPost, Path: "/api/products", Auth: user, BodyLimit: smallBody, Handler: s.handleCreateProduct(a)},
		{Method: fiber.MethodGet, Path: "/api/products/:id", Auth: anyone, Handler: s.handleGetProduct(a)},
		{Method: fiber.MethodPatch, Path: "/api/products/:id", Auth: user, BodyLimit: smallBody, Handler: s.handleUpdateProduct(a)},
		{Method: fiber.MethodPut, Path: "/api/products/:id", Auth: user, BodyLimit: smallBody, Handler: s.handleUpdateProduct(a)},
		{Method: fiber.MethodDelete, Path: "/api/products/:id", Auth: user, Handler: s.handleDeleteProduct(a)},

		{Method: fiber.MethodGet, Path: "/api/sales", Auth: user, Handler: s.handleListSales(a)},

		{Method: fiber.MethodGet, Path: "/api/whitelist/systems", Auth: user, Handler: s.handleListSystems(a)},
		{Method: fiber.MethodPost, Path: "/api/whitelist/systems", Auth: user, BodyLimit: smallBody, Handler: s.handleCreateSystem(a)},
		{Method: fiber.MethodGet, Path: "/api/whitelist/systems/:id", Auth: user, Handler: s.handleGetSystem(a)},
		{Method: fiber.MethodPatch, Path: "/api/whitelist/systems/:id", Auth: user, BodyLimit: smallBody, Handler: s.handleUpdateSystem(a)},
		{Method: fiber.MethodPut, Path: "/api/whitelist/systems/:id", Auth: user, BodyLimit: smallBody, Handler: s.handleUpdateSystem(a)},
		{Method: fiber.MethodDelete, Path: "/api/whitelist/systems/:id", Auth: user, Handler: s.handleDeleteSystem(a)},
		{Method: fiber.MethodGet, Path: "/api/whitelist/systems/:id/users", Auth: user, Handler: s.handleListWLUsers(a)},
		{Method: fiber.MethodPost, Path: "/api/whitelist/systems/:id/users", Auth: user, BodyLimit: smallBody, Handler: s.handleCreateWLUser(a)},
		{Method: fiber.MethodGet, Path: "/api/whitelist/systems/:id/users/:userId", Auth: user, Handler: s.handleGetWLUser(a)},
		{Method: fiber.MethodPatch, Path: "/api/whitelist/systems/:id/users/:userId", Auth: user, BodyLimit: smallBody, Handler: s.handleUpdateWLUser(a)},
		{Method: fiber.MethodPut, Path: "/api/whitelist/systems/:id/users/:userId", Auth: user, BodyLimit: smallBody, Handler: s.handleUpdateWLUser(a)},
		{Method: fiber.MethodDelete, Path: "/api/whitelist/systems/:id/users/:userId", Auth: user, Handler: s.handleDeleteWLUser(a)},
		{Method: fiber.MethodPost, Path: "/api/whitelist/check", Auth: key, Timeout: hotTimeout, Handler: s.handleCheck},
		{Method: fiber.MethodGet, Path: "/api/me/licenses", Auth: user, Handler: s.handleMyLicenses(a)},

		{Method: fiber.MethodGet, Path: "/api/developer/keys", Auth: user, Handler: s.handleListKeys(a)},
		{Method: fiber.MethodPost, Path: "/api/developer/keys", Auth: user, BodyLimit: tinyBody, Handler: s.handleCreateKey(a)},
		{Method: fiber.MethodGet, Path: "/api/developer/keys/:id", Auth: user, Handler: s.handleGetKey(a)},
		{Method: fiber.MethodPatch, Path: "/api/developer/keys/:id", Auth: user, BodyLimit: tinyBody, Handler: s.handleUpdateKey(a)},
		{Method: fiber.MethodDelete, Path: "/api/developer/keys/:id", Auth: user, Handler: s.handleDeleteKey(a)},
		{Method: fiber.MethodPost, Path: "/api/developer/verify", Auth: key, Timeout: hotTimeout, Handler: s.handleVerify},

		{Method: fiber.MethodGet, Path: "/api/developer/subscription", Auth: user, Handler: s.handleSubscription(a)},
		{Method: fiber.MethodGet, Path: "/api/developer/credits", Auth: user, Handler: s.handleCredits(a)},
		{Method: fiber.MethodPost, Path: "/api/developer/obfuscation/usage", Auth: key, Timeout: hotTimeout, Handler: s.handleUsage},
	}
}
