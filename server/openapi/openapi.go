// Package openapi holds the API's OpenAPI 3.1 document, served at
// GET /api/openapi.json, and the check that keeps it in step with the routes
// an app actually registers.
package openapi

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase/server"
)

// Document is the OpenAPI 3.1 document, embedded in the binary.
//
//go:embed openapi.json
var Document []byte

// Routes is the route table of the document itself.
func Routes() []server.Route {
	return []server.Route{
		{Method: fiber.MethodGet, Path: "/api/openapi.json", Handler: func(c *fiber.Ctx) error {
			c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
			return c.Send(Document)
		}},
	}
}

// Operations returns every operation of the document as "METHOD /path" in
// Fiber's path syntax (/api/stores/:id), sorted. A path item's
// "x-fiber-aliases" (Fiber paths OpenAPI cannot express, such as the greedy
// /api/secrets/+ for names with slashes) serve each of its operations too.
func Operations() ([]string, error) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(Document, &doc); err != nil {
		return nil, fmt.Errorf("openapi: document is not JSON: %w", err)
	}
	var out []string
	for path, ops := range doc.Paths {
		fps := []string{toFiber(path)}
		if raw, ok := ops["x-fiber-aliases"]; ok {
			var aliases []string
			if err := json.Unmarshal(raw, &aliases); err != nil {
				return nil, fmt.Errorf("openapi: %s: x-fiber-aliases must be a list of paths", path)
			}
			fps = append(fps, aliases...)
		}
		for method := range ops {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				for _, fp := range fps {
					out = append(out, strings.ToUpper(method)+" "+fp)
				}
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// toFiber turns /a/{id} into /a/:id.
func toFiber(path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") {
			parts[i] = ":" + p[1:len(p)-1]
		}
	}
	return strings.Join(parts, "/")
}

// StaticPrefixes are paths that serve files, not API operations: routes
// under them (the console's embedded scripts and styles) need no entry in
// the document. The pages that load them (GET /console) are documented.
var StaticPrefixes = []string{"/console/assets/"}

func static(path string) bool {
	for _, p := range StaticPrefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// Diff compares the routes app has registered with the document: missing
// are registered routes the document does not describe, extra are
// operations of the document no route serves. HEAD routes Fiber adds beside
// GET and middleware (Use) are not routes of the API, nor are GET routes
// under StaticPrefixes.
func Diff(app *fiber.App) (missing, extra []string, err error) {
	ops, err := Operations()
	if err != nil {
		return nil, nil, err
	}
	registered := map[string]bool{}
	for _, r := range app.GetRoutes(true) {
		if r.Method == fiber.MethodHead || r.Method == fiber.MethodConnect || (r.Method == fiber.MethodGet && static(r.Path)) {
			continue
		}
		registered[r.Method+" "+r.Path] = true
	}
	documented := map[string]bool{}
	for _, op := range ops {
		documented[op] = true
		if !registered[op] {
			extra = append(extra, op)
		}
	}
	for r := range registered {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	slices.Sort(missing)
	return missing, extra, nil
}
