package admin_test

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/admin"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault"
	"github.com/vectabase/vectabase/vault/audit"
)

// TestHoneytokenRoute: the admin marks a secret; bad bodies get the
// contract's errors; a missing secret is 404.
func TestHoneytokenRoute(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	l := audit.New(db, kr, zerolog.Nop(), nil)
	t.Cleanup(l.Close)
	pol, err := policies.AccessPolicy()
	if err != nil {
		t.Fatal(err)
	}
	v := vault.New(db, kr, l, pol, vault.Config{}, nil)
	if _, err := v.Put(context.Background(), vault.LocalOperator, "prod/decoy", []byte("AKIAIOSFODNN7EXAMPLE"), nil); err != nil {
		t.Fatal(err)
	}
	// Stands in for auth's RequireAdmin: the caller is an operator.
	asOperator := func(c *fiber.Ctx) error {
		server.SetActor(c, server.Actor{Type: vectabase.ActorLocalOperator})
		return c.Next()
	}
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount(admin.HoneytokenRoutes(v, asOperator))
	post := func(body string) (int, string) {
		req := httptest.NewRequest("POST", "/api/admin/honeytokens", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"name":"prod/decoy","enabled":true}`, 200, `"honeytoken":true`},
		{`{"name":"prod/decoy","enabled":false}`, 200, `"honeytoken":false`},
		{`{"name":"prod/decoy"}`, 200, `"honeytoken":true`},
		{`{"name":"prod/missing"}`, 404, `"NOT_FOUND"`},
		{`{"name":"bad//name"}`, 400, `"VALIDATION_FAILED"`},
		{`{"name":"prod/decoy","extra":1}`, 400, `"BAD_REQUEST"`},
		{`not json`, 400, `"BAD_REQUEST"`},
	} {
		if status, body := post(tc.body); status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("POST %s = %d %s, want %d with %s", tc.body, status, body, tc.status, tc.want)
		}
	}
}
