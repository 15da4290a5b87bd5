package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/store/supabase/supabasetest"
)

// supabaseSource is a fresh database holding the Supabase fixtures named.
func supabaseSource(t *testing.T, files ...string) string {
	t.Helper()
	url := pgtest.EmptyURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, f := range files {
		if _, err := conn.Exec(ctx, supabasetest.File(f)); err != nil {
			t.Fatalf("load %s: %v", f, err)
		}
	}
	return url
}

// TestImportSupabaseThroughTheAPI runs `vectabase import-supabase` on the
// sample project as an operator would, then serves the target with the
// real wiring and checks what users and API clients see: sample users log
// in with their Supabase passwords, the Discord-only user cannot use a
// password, the live API key verifies and the revoked one does not, and the
// Vault secrets read back from the secrets vault.
func TestImportSupabaseThroughTheAPI(t *testing.T) {
	t.Parallel()
	src := supabaseSource(t, "schema.sql", "sample.sql")
	target := pgtest.URL(t)
	dir := tempDir(t)
	key := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	envv := baseEnv("DATABASE_URL="+target, "KEYRING_MASTER_KEY_FILE="+key)

	// Bad usage exits 2.
	for _, args := range [][]string{
		{"import-supabase"},
		{"import-supabase", "--source", src, "--from-dir", dir},
		{"import-supabase", "--from-dir", dir, "--export-dir", dir},
	} {
		if r := run(t, dir, envv, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, r.code, r.stderr)
		}
	}

	// A dry run commits nothing and says so in JSON.
	r := run(t, dir, envv, "import-supabase", "--source", src, "--dry-run", "--json")
	if r.code != 0 {
		t.Fatalf("dry run: exit %d, stderr %s", r.code, r.stderr)
	}
	var dry struct {
		DryRun, Committed bool
		Checks            []struct{ OK bool }
	}
	if err := json.Unmarshal([]byte(r.stdout), &dry); err != nil || !dry.DryRun || dry.Committed || len(dry.Checks) == 0 {
		t.Fatalf("dry run JSON: %+v (%v)\n%s", dry, err, r.stdout)
	}

	// The import itself, with a report file and plain progress lines.
	report := filepath.Join(dir, "report.json")
	r = run(t, dir, envv, "import-supabase", "--source", src, "--report", report)
	if r.code != 0 {
		t.Fatalf("import: exit %d, stderr %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "committed") || !strings.Contains(r.stdout, "Checks: ") {
		t.Errorf("summary does not say committed and the checks:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "import: public.sales -> sales 3/3 rows done") {
		t.Errorf("stderr has no plain progress line for sales:\n%s", r.stderr)
	}
	if b, err := os.ReadFile(report); err != nil || !bytes.Contains(b, []byte(`"committed": true`)) {
		t.Errorf("report file: %v\n%s", err, b)
	} else {
		// The report counts the licenses carried: the sample's whitelist
		// users and its two whitelist_entries (one active and bound to a
		// hardware id, one revoked).
		var rep struct {
			Licenses struct{ Total, System, Product, Active, Revoked, HWIDBound int64 }
		}
		if err := json.Unmarshal(b, &rep); err != nil || rep.Licenses.Product != 2 || rep.Licenses.Revoked < 1 ||
			rep.Licenses.HWIDBound < 1 || rep.Licenses.Total != rep.Licenses.System+rep.Licenses.Product {
			t.Errorf("report licenses = %+v (%v), want 2 of developer products, one revoked, one HWID-bound", rep.Licenses, err)
		}
	}
	if !strings.Contains(r.stdout, "Licenses: ") {
		t.Errorf("summary does not count the licenses:\n%s", r.stdout)
	}
	for _, secret := range []string{"correct horse", "vb_live_4f1d", "sk_test_51Fixture", "MIIfixture", "LIC-AAAA"} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("output holds the secret %q", secret)
		}
	}

	// The committed import is in the audit trail, as the local operator.
	var audited int
	conn, err := pgx.Connect(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	err = conn.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs WHERE action = 'import.supabase' AND actor_type = 'local-operator'
		AND result = 'success' AND (details->>'committed')::boolean`).Scan(&audited)
	if err != nil || audited != 1 {
		t.Errorf("audit rows for the committed import = %d (%v), want 1", audited, err)
	}
	// The imported personal values were sealed under their owners' keys
	// right after the commit, each batch audited: the sample's profiles
	// carry Stripe customer ids, its developer subscriptions Stripe ids.
	var sealedTables []string
	err = conn.QueryRow(context.Background(), `SELECT coalesce(array_agg(DISTINCT resource_id ORDER BY resource_id), '{}') FROM audit_logs
		WHERE action = 'keys.seal_personal' AND actor_type = 'local-operator' AND result = 'success'`).Scan(&sealedTables)
	if err != nil || !slices.Contains(sealedTables, "profiles") || !slices.Contains(sealedTables, "developer_subscriptions") {
		t.Errorf("keys.seal_personal audit rows name %v (%v), want profiles and developer_subscriptions among them", sealedTables, err)
	}
	var keys int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM user_keys`).Scan(&keys); err != nil || keys == 0 {
		t.Errorf("personal keys after the import = %d (%v), want some", keys, err)
	}
	var trail string
	if err := conn.QueryRow(context.Background(), `SELECT string_agg(a::text, E'\n') FROM audit_logs a`).Scan(&trail); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
	for _, secret := range []string{"correct horse", "vb_live_4f1d", "sk_test_51Fixture", "MIIfixture", "LIC-AAAA", "$2a$10$"} {
		if strings.Contains(trail, secret) {
			t.Errorf("audit trail holds the secret %q", secret)
		}
	}

	// Again: refused with one line naming --replace, exit 1.
	r = run(t, dir, envv, "import-supabase", "--source", src)
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "--replace") {
		t.Errorf("second import: exit %d, last line %q, want 1 and a line naming --replace", r.code, lastLine(r.stderr))
	}

	// Serve the target with the production wiring.
	var cfg Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: map[string]string{"DATABASE_URL": target, "KEYRING_MASTER_KEY_FILE": key}}); err != nil {
		t.Fatal(err)
	}
	cfg.Marketplace.RequestLogSpoolDir = t.TempDir() // not ./.vectabase/spool inside the repository
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := pgtest.Open(t, target)
	reg := prometheus.NewRegistry()
	srv := server.New(cfg.Server, zerolog.Nop(), reg)
	d := &deps{cfg: cfg, log: zerolog.Nop(), reg: reg, db: db}
	if err := mountAreas(ctx, d, srv); err != nil {
		t.Fatalf("mountAreas: %v", err)
	}
	defer d.close()
	call := func(method, path string, body any, header ...string) (int, map[string]any) {
		t.Helper()
		raw, _ := json.Marshal(body)
		req := httptest.NewRequest(method, path, bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := srv.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return res.StatusCode, m
	}

	tokens := map[string]string{}
	for email, pw := range map[string]string{
		"alice@example.com": "correct horse battery staple",
		"bob@example.com":   "Tr0ub4dor&3",
		"zoë@example.com":   "pässwörd-ünïcode-🔑",
	} {
		status, body := call(http.MethodPost, "/api/auth/login", map[string]string{"email": email, "password": pw})
		token, _ := body["token"].(string)
		if status != http.StatusOK || token == "" {
			t.Errorf("login %s: %d %v, want 200 with a token", email, status, body)
		}
		tokens[email] = token
		if status, _ := call(http.MethodPost, "/api/auth/login", map[string]string{"email": email, "password": pw + "!"}); status != http.StatusUnauthorized {
			t.Errorf("login %s with a wrong password: %d, want 401", email, status)
		}
	}
	// carol has no password: only Discord signs her in.
	if status, _ := call(http.MethodPost, "/api/auth/login", map[string]string{"email": "carol.discord@users.example", "password": "anything-at-all"}); status != http.StatusUnauthorized {
		t.Errorf("login carol with a password: %d, want 401", status)
	}
	var discordID string
	if err := db.Pool.QueryRow(ctx, `SELECT discord_id FROM users WHERE email = 'carol.discord@users.example'`).Scan(&discordID); err != nil || discordID != "309876543210987654" {
		t.Errorf("carol's discord_id = %q (%v), want 309876543210987654", discordID, err)
	}

	// The live API key verifies with the key it always had; the revoked does not.
	status, body := call(http.MethodPost, "/api/developer/verify", map[string]any{}, "X-API-Key", "vb_live_4f1d2c3b4a5968778695a4b3c2d1e0f1")
	if status != http.StatusOK || body["valid"] != true || body["keyId"] != "b0000000-0000-0000-0000-000000000001" {
		t.Errorf("verify live key: %d %v, want 200 valid with keyId b0000000-…01", status, body)
	}
	if status, _ := call(http.MethodPost, "/api/developer/verify", map[string]any{}, "X-API-Key", "vb_live_00000000000000000000000000000000"); status != http.StatusUnauthorized {
		t.Errorf("verify revoked key: %d, want 401", status)
	}

	// Imported license keys answer the game servers' check, however the
	// player types them.
	for _, lic := range []string{"LIC-DDDD-EEEE-FFFF", " lic-dddd-eeee-ffff "} {
		status, body := call(http.MethodPost, "/api/whitelist/check", map[string]any{"licenseKey": lic}, "X-API-Key", "vb_live_4f1d2c3b4a5968778695a4b3c2d1e0f1")
		if status != http.StatusOK || body["whitelisted"] != true {
			t.Errorf("whitelist check %q: %d %v, want 200 whitelisted", lic, status, body)
		}
	}
	if status, body := call(http.MethodPost, "/api/whitelist/check", map[string]any{"licenseKey": "LIC-TEST-0000-0001"}, "X-API-Key", "vb_live_4f1d2c3b4a5968778695a4b3c2d1e0f1"); status != http.StatusOK || body["whitelisted"] != false {
		t.Errorf("whitelist check of another developer's key: %d %v, want 200 not whitelisted", status, body)
	}

	// Licenses developers sold through their API keys (Supabase's
	// whitelist_entries) keep working the minute after the import: the live
	// key belongs to developer product "Obfuscator Loader", which holds
	// DEV-1111-2222 (Roblox user 2002, bound to hardware id hw-2002) and the
	// revoked DEV-3333-4444 (Roblox user 3003).
	const liveKey = "vb_live_4f1d2c3b4a5968778695a4b3c2d1e0f1"
	const loader = "a0000000-0000-0000-0000-000000000001"
	for _, c := range []struct {
		body   map[string]any
		want   bool
		reason string
	}{
		{map[string]any{"licenseKey": "DEV-1111-2222"}, true, ""},
		{map[string]any{"licenseKey": " dev-1111-2222"}, true, ""},
		{map[string]any{"licenseKey": "DEV-1111-2222", "hwid": "hw-2002"}, true, ""},
		{map[string]any{"licenseKey": "DEV-1111-2222", "hwid": "another-machine"}, false, "hwid_mismatch"},
		{map[string]any{"productId": loader, "robloxUserId": 2002}, true, ""},
		{map[string]any{"productId": loader, "robloxUserId": "2002", "hwid": "hw-2002"}, true, ""},
		{map[string]any{"licenseKey": "DEV-3333-4444"}, false, "revoked"},
		{map[string]any{"productId": loader, "robloxUserId": 3003}, false, "revoked"},
		{map[string]any{"productId": loader, "robloxUserId": 9999}, false, "not_found"},
	} {
		status, body := call(http.MethodPost, "/api/whitelist/check", c.body, "X-API-Key", liveKey)
		if status != http.StatusOK || body["whitelisted"] != c.want || (c.reason != "" && body["reason"] != c.reason) {
			t.Errorf("whitelist check %v: %d %v, want 200 whitelisted %v reason %q", c.body, status, body, c.want, c.reason)
		}
	}

	// The Vault secrets read back through the secrets API: zoë is an admin
	// in the sample (profiles.role), alice a developer, who may not.
	for name, want := range map[string]string{
		"stripe_secret_key": "sk_test_51Fixture0000000000000000000000000000000000",
		"multiline_pem":     "-----BEGIN PRIVATE KEY-----\nMIIfixture\n-----END PRIVATE KEY-----\n",
	} {
		status, body := call(http.MethodGet, "/api/secrets/"+name, nil, "Authorization", "Bearer "+tokens["zoë@example.com"])
		if status != http.StatusOK || body["value"] != want || body["version"] != float64(1) {
			t.Errorf("GET /api/secrets/%s as admin: %d, version %v, value matches %v", name, status, body["version"], body["value"] == want)
		}
		if status, _ := call(http.MethodGet, "/api/secrets/"+name, nil, "Authorization", "Bearer "+tokens["alice@example.com"]); status != http.StatusForbidden {
			t.Errorf("GET /api/secrets/%s as a developer: %d, want 403", name, status)
		}
	}
	if status, _ := call(http.MethodGet, "/api/secrets/no_such_secret", nil, "Authorization", "Bearer "+tokens["zoë@example.com"]); status != http.StatusNotFound {
		t.Errorf("GET a missing secret: %d, want 404", status)
	}
}
