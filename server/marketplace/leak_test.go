package marketplace_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/canarytest"
	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TestNoSecretLeaks plants canaries where this area takes secrets in
// (API keys, license keys, download URLs, bearer tokens), drives every kind
// of route with good and malformed input carrying them, and then looks for
// them in logs, responses (beyond the one response allowed to show each),
// metrics and tables.
func TestNoSecretLeaks(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	kr := newKeyring(t, db)
	h := canarytest.New(t)
	log := h.Logger()
	srv := server.New(server.Config{}, log, h.Registry)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := auth.New(ctx, auth.Config{Argon2: fastArgon2}, db, kr, nopAuditor{}, log, h.Registry)
	if err != nil {
		t.Fatal(err)
	}
	srv.Mount(a.Routes())
	svc := marketplace.New(db, kr, nopAuditor{}, marketplace.Config{}, log, h.Registry)
	srv.Mount(svc.Routes(authHooks(a)))
	app := srv.App()

	pw := h.Password()
	if _, err := a.Register(ctx, "leak@example.com", pw, auth.RequestMeta{}); err != nil {
		t.Fatal(err)
	}
	res, err := a.Login(ctx, "leak@example.com", pw, auth.RequestMeta{})
	if err != nil {
		t.Fatal(err)
	}
	bearer := []string{"Authorization", "Bearer " + h.Add(res.Token)}
	decode := func(r canarytest.Response) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatalf("body %s: %v", r.Body, err)
		}
		return m
	}

	k := decode(h.Do(app, canarytest.Request("POST", "/api/developer/keys", `{"name":"k","scopes":["whitelist:read"],"rateLimitPerMinute":1000}`, bearer...)))
	key := h.Add(k["key"].(string))
	apiKey := []string{"X-API-Key", key}

	st := decode(h.Do(app, canarytest.Request("POST", "/api/stores", `{"name":"s","slug":"leaky"}`, bearer...)))
	secretPart := h.Secret()
	url := "https://cdn.example.com/" + secretPart
	p := decode(h.Do(app, canarytest.Request("POST", "/api/products", `{"storeId":"`+st["id"].(string)+`","name":"p","priceCents":1,"downloadUrl":"`+url+`"}`, bearer...), canarytest.MayReveal(secretPart)))
	pid := p["id"].(string)
	h.Do(app, canarytest.Request("GET", "/api/products/"+pid, nil, bearer...), canarytest.MayReveal(secretPart))
	h.Do(app, canarytest.Request("GET", "/api/products/"+pid, nil))
	h.Do(app, canarytest.Request("GET", "/api/products?storeId="+st["id"].(string), nil))

	sys := decode(h.Do(app, canarytest.Request("POST", "/api/whitelist/systems", `{"name":"s"}`, bearer...)))["id"].(string)
	wu := decode(h.Do(app, canarytest.Request("POST", "/api/whitelist/systems/"+sys+"/users", `{"robloxUserId":77}`, bearer...)))
	lic := h.Add(wu["licenseKey"].(string))
	h.Do(app, canarytest.Request("GET", "/api/whitelist/systems/"+sys+"/users", nil, bearer...))
	h.Do(app, canarytest.Request("GET", "/api/developer/keys", nil, bearer...))
	h.Do(app, canarytest.Request("POST", "/api/whitelist/check", `{"licenseKey":"`+lic+`"}`, apiKey...))
	h.Do(app, canarytest.Request("POST", "/api/whitelist/check", `{"licenseKey":"`+lic+`","systemId":"`+sys+`"}`, apiKey...))
	h.Do(app, canarytest.Request("POST", "/api/developer/verify", `{}`, apiKey...))

	canary := h.Secret()
	for _, r := range []struct{ method, path string }{
		{"POST", "/api/stores"}, {"PATCH", "/api/stores/" + st["id"].(string)}, {"POST", "/api/products"},
		{"PATCH", "/api/products/" + pid}, {"POST", "/api/whitelist/systems/" + sys + "/users"},
		{"POST", "/api/developer/keys"}, {"GET", "/api/sales"},
	} {
		h.DriveMalformed(app, r.method, r.path, canary, bearer...)
	}
	h.DriveMalformed(app, "POST", "/api/whitelist/check", canary, apiKey...)
	h.DriveMalformed(app, "POST", "/api/developer/verify", canary, apiKey...)

	if err := svc.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.Check(nil)
	h.CheckTables(db, "products", "stores", "whitelist_users", "developer_api_keys", "api_request_logs", "api_rate_limits", "audit_logs")
}
