package openapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/admin"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/console"
	"github.com/vectabase/vectabase/server/discord"
	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/server/openapi"
	"github.com/vectabase/vectabase/server/payments"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault/audit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type nopAuditor struct{}

func (nopAuditor) Record(context.Context, vectabase.AuditEvent) error { return nil }

// TestDocumentMatchesRoutes mounts auth and the marketplace the way cmd/
// does and fails when a registered route is missing from the document, or
// the document lists a route of those areas that nothing serves.
// cmd/vectabase runs the full check over the app with every area wired.
func TestDocumentMatchesRoutes(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	reg := prometheus.NewRegistry()
	srv := server.New(server.Config{}, zerolog.Nop(), reg)
	a, err := auth.New(context.Background(), auth.Config{}, db, kr, nopAuditor{}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Mount(a.Routes())
	mk := marketplace.New(db, kr, nopAuditor{}, marketplace.Config{}, zerolog.Nop(), reg)
	t.Cleanup(func() { _ = mk.Close(context.Background()) })
	srv.Mount(mk.Routes(marketplace.Auth{RequireUser: a.RequireUser(), OptionalUser: a.OptionalUser(), UserID: auth.UserID}))
	bot, err := discord.New(discord.Config{}, store.NewBot(db, kr), nopAuditor{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv.Mount(bot.Routes(discord.Auth{RequireUser: a.RequireUser(), UserID: auth.UserID}))
	pay := payments.New(db, kr, payments.Config{}, nil, zerolog.Nop(), reg)
	srv.Mount(pay.Routes(payments.Auth{RequireUser: a.RequireUser(), OptionalUser: a.OptionalUser(), UserID: auth.UserID}))
	srv.Mount(openapi.Routes())
	srv.Mount(console.New(a, nopAuditor{}).Routes())
	srv.Mount(a.AdminRoutes())
	srv.Mount(mk.AdminRoutes(a.RequireAdmin()))
	cps := audit.NewCheckpointer(db, kr, audit.CheckpointConfig{}, zerolog.Nop())
	srv.Mount(admin.CheckpointRoutes(cps))
	auditLog := audit.New(db, kr, zerolog.Nop(), nil)
	t.Cleanup(auditLog.Close)
	srv.Mount(admin.ProofRoutes(audit.NewProver(auditLog, cps), a.RequireAdmin()))

	missing, extra, err := openapi.Diff(srv.App())
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("registered routes missing from openapi.json:\n  %s", strings.Join(missing, "\n  "))
	}
	var ours []string
	for _, op := range extra {
		// The vault, admin and realtime areas are not mounted here.
		if !strings.Contains(op, " /api/secrets") && !strings.Contains(op, " /api/admin/") && !strings.Contains(op, " /api/realtime") {
			ours = append(ours, op)
		}
	}
	if len(ours) > 0 {
		t.Errorf("openapi.json lists routes nothing serves:\n  %s", strings.Join(ours, "\n  "))
	}

	res, err := srv.App().Test(httptest.NewRequest("GET", "/api/openapi.json", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") || string(body) != string(openapi.Document) {
		t.Fatalf("GET /api/openapi.json = %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

// TestDiffSeesDrift makes sure the check is not vacuous: a route added to
// the app but not the document, and the document's routes on an empty app,
// are both reported.
func TestDiffSeesDrift(t *testing.T) {
	t.Parallel()
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount([]server.Route{{Method: "GET", Path: "/api/undocumented/:id", Handler: func(c *fiber.Ctx) error { return nil }}})
	missing, extra, err := openapi.Diff(srv.App())
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 1 || missing[0] != "GET /api/undocumented/:id" {
		t.Fatalf("missing = %v, want the undocumented route", missing)
	}
	if len(extra) == 0 {
		t.Fatal("extra is empty on an app without the documented routes")
	}
}

// TestDocumentIsWellFormed checks the document's shape: OpenAPI 3.1, every
// $ref resolves, every operation has responses and declares its path
// parameters, and every error response uses the contract's Error body.
func TestDocumentIsWellFormed(t *testing.T) {
	t.Parallel()
	var doc map[string]any
	if err := json.Unmarshal(openapi.Document, &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi = %v, want 3.1.0", doc["openapi"])
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				if !resolves(doc, ref) {
					t.Errorf("$ref %s does not resolve", ref)
				}
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(doc)
	for path, item := range doc["paths"].(map[string]any) {
		for method, raw := range item.(map[string]any) {
			if strings.HasPrefix(method, "x-") {
				continue
			}
			op := raw.(map[string]any)
			if len(op["responses"].(map[string]any)) == 0 {
				t.Errorf("%s %s has no responses", method, path)
			}
			declared := map[string]bool{}
			if ps, ok := op["parameters"].([]any); ok {
				for _, p := range ps {
					pm := p.(map[string]any)
					if pm["in"] == "path" {
						declared[pm["name"].(string)] = true
					}
				}
			}
			for _, seg := range strings.Split(path, "/") {
				if strings.HasPrefix(seg, "{") && !declared[strings.Trim(seg, "{}")] {
					t.Errorf("%s %s does not declare path parameter %s", method, path, seg)
				}
			}
		}
	}
}

func resolves(doc map[string]any, ref string) bool {
	if !strings.HasPrefix(ref, "#/") {
		return false
	}
	var cur any = doc
	for _, part := range strings.Split(ref[2:], "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}
