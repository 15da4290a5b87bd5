package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/canarytest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/backup"
	"github.com/vectabase/vectabase/store/pgtest"
)

var routeParam = regexp.MustCompile(`:[A-Za-z]+\??|\+|\*`)

// TestProperty16_NoCanaryLeaksAnywhere claims, for the whole server as
// serve wires it: with canaries planted as a password, a secret value, live
// access and refresh tokens and a developer API key, and EVERY registered
// route driven with good and malformed input carrying them (bodies, query
// strings, credential headers), no canary appears in any log line, error
// body, response (beyond the one that legitimately returns it), metric, or
// row of the audit and request-log tables.
func TestProperty16_NoCanaryLeaksAnywhere(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := canarytest.New(t)
	url := pgtest.URL(t)
	db := pgtest.Open(t, url)
	keyFile := filepath.Join(t.TempDir(), "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = store.Config{URL: url}
	cfg.Keyring = keyring.Config{Backend: "local", MasterKeyFile: keyFile}
	cfg.Backup = backup.Config{Dir: t.TempDir(), Keep: 2}
	cfg.Rotation.Disabled = true
	cfg.Marketplace.RequestLogSpoolDir = t.TempDir() // not ./.vectabase/spool inside the repository
	srv := server.New(server.Config{}, h.Logger(), h.Registry)
	d := &deps{cfg: cfg, log: h.Logger(), reg: h.Registry, db: db}
	t.Cleanup(d.close)
	if err := mountAreas(ctx, d, srv); err != nil {
		t.Fatalf("mountAreas err = %v", err)
	}
	app := srv.App()
	do := func(method, target string, body any, opts []canarytest.Option, headers ...string) canarytest.Response {
		var raw []byte
		if body != nil {
			raw, _ = json.Marshal(body)
		}
		return h.Do(app, canarytest.Request(method, target, raw, headers...), opts...)
	}

	// An admin whose password, tokens and secret are canaries.
	password := h.Password()
	if r := do("POST", "/api/auth/register", map[string]string{"email": "leak-admin@example.com", "password": password}, nil); r.Status != 201 {
		t.Fatalf("register = %d %s", r.Status, r.Body)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE profiles SET role = 'admin'`); err != nil {
		t.Fatal(err)
	}
	login := do("POST", "/api/auth/login", map[string]string{"email": "leak-admin@example.com", "password": password}, nil)
	var tokens struct{ Token, RefreshToken string }
	if err := json.Unmarshal(login.Body, &tokens); err != nil || tokens.Token == "" {
		t.Fatalf("login = %d %s", login.Status, login.Body)
	}
	h.Add(tokens.Token)
	h.Add(tokens.RefreshToken)
	admin := []string{"Authorization", "Bearer " + tokens.Token}

	secret := h.Secret()
	if r := do("PUT", "/api/secrets/leak_canary", map[string]any{"value": secret}, nil, admin...); r.Status >= 300 {
		t.Fatalf("put secret = %d %s", r.Status, r.Body)
	}
	do("GET", "/api/secrets/leak_canary", nil, []canarytest.Option{canarytest.MayReveal(secret)}, admin...)

	created := do("POST", "/api/developer/keys",
		map[string]any{"name": "leak", "scopes": []string{"whitelist:read"}, "rateLimitPerMinute": 100000}, nil, admin...)
	var key struct{ Key string }
	if err := json.Unmarshal(created.Body, &key); err != nil || key.Key == "" {
		t.Fatalf("create API key = %d %s", created.Status, created.Body)
	}
	h.Add(key.Key)
	apiKey := []string{"X-API-Key", key.Key}

	// Every route the server registers, logout last (it ends the session
	// the other requests use).
	type route struct{ method, path string }
	var routes []route
	seen := map[route]bool{}
	for _, r := range app.GetRoutes(true) {
		if r.Method == http.MethodHead || r.Method == http.MethodOptions || r.Method == "CONNECT" || r.Method == "TRACE" {
			continue
		}
		p := routeParam.ReplaceAllStringFunc(r.Path, func(string) string { return uuid.NewString() })
		rt := route{r.Method, p}
		if !seen[rt] {
			seen[rt] = true
			routes = append(routes, rt)
		}
	}
	sort.SliceStable(routes, func(i, j int) bool {
		return !strings.HasPrefix(routes[i].path, "/api/auth/logout") && strings.HasPrefix(routes[j].path, "/api/auth/logout")
	})
	if len(routes) < 30 {
		t.Fatalf("only %d routes registered: the wiring is incomplete", len(routes))
	}
	for _, rt := range routes {
		for _, c := range []string{secret, password, key.Key} {
			h.DriveMalformed(app, rt.method, rt.path, c, admin...)
		}
		h.DriveMalformed(app, rt.method, rt.path, tokens.RefreshToken, apiKey...)
	}
	h.Check(nil)
	h.CheckTables(db, "audit_logs", "api_request_logs", "users", "profiles", "sessions", "secrets", "secret_versions", "developer_api_keys")
}
