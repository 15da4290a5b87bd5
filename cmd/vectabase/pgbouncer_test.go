package main

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TestServeThroughPgBouncer runs the production wiring through a real
// PgBouncer in transaction mode, started from deploy/pgbouncer/pgbouncer.ini
// (skipped, saying why, where PgBouncer is not installed):
//   - without DB_PGBOUNCER=true, serve refuses to start with one clear line;
//     with DB_PGBOUNCER=true but no direct URL, serve and migrate refuse too;
//   - import-supabase, then serve with DATABASE_URL through PgBouncer and
//     DATABASE_DIRECT_URL to PostgreSQL: login, refresh (and reuse
//     detection), developer key verify, whitelist check, secrets, a
//     realtime change (LISTEN on the direct URL), a DEK rotation run by the
//     worker to the end, and a backup created and verified.
func TestServeThroughPgBouncer(t *testing.T) {
	t.Parallel()
	direct := pgtest.URL(t)
	pooled := pgtest.PgBouncer(t, direct, readDeploy(t, "pgbouncer/pgbouncer.ini"))
	dir := tempDir(t)
	key := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	common := []string{"KEYRING_MASTER_KEY_FILE=" + key, "BACKUP_DIR=" + filepath.Join(dir, "backups")}

	// Refusals, before anything else touches the database.
	r := run(t, dir, baseEnv(append(common, "DATABASE_URL="+pooled, "DATABASE_DIRECT_URL="+direct)...), "serve")
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "DB_PGBOUNCER=true") || strings.Contains(r.stderr, ":pgtest@") {
		t.Fatalf("serve through PgBouncer without DB_PGBOUNCER: exit %d, stderr %q; want 1 and one line naming DB_PGBOUNCER=true, no password", r.code, r.stderr)
	}
	r = run(t, dir, baseEnv(append(common, "DATABASE_URL="+pooled, "DB_PGBOUNCER=true")...), "serve")
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "DATABASE_DIRECT_URL") {
		t.Fatalf("serve through PgBouncer without a direct URL: exit %d, stderr %q; want 1 and a line naming DATABASE_DIRECT_URL", r.code, r.stderr)
	}

	r = run(t, dir, baseEnv(append(common, "DATABASE_URL="+pooled, "DB_PGBOUNCER=true")...), "migrate", "up")
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "DATABASE_DIRECT_URL") {
		t.Fatalf("migrate up through PgBouncer: exit %d, stderr %q; want 1 and a line naming DATABASE_DIRECT_URL", r.code, r.stderr)
	}

	env := baseEnv(append(common, "DATABASE_URL="+pooled, "DB_PGBOUNCER=true", "DATABASE_DIRECT_URL="+direct,
		"ROTATION_POLL_INTERVAL=200ms", "ROTATION_RELOAD_INTERVAL=500ms", "ROTATION_SETTLE=1s", "ROTATION_BATCH_PAUSE=0s")...)
	src := supabaseSource(t, "schema.sql", "sample.sql")
	if r := run(t, dir, env, "import-supabase", "--source", src); r.code != 0 {
		t.Fatalf("import-supabase with the PgBouncer configuration: exit %d, %s", r.code, r.stderr)
	}

	s := startServe(t, env)
	c := &apiClient{t: t, base: "http://" + s.addr}
	login := c.do("POST", "/api/auth/login", "", `{"email":"zoë@example.com","password":"pässwörd-ünïcode-🔑"}`, 200)
	admin, _ := login["token"].(string)
	refresh, _ := login["refreshToken"].(string)
	pair := c.do("POST", "/api/auth/refresh", "", fmt.Sprintf(`{"refreshToken":%q}`, refresh), 200)
	if pair["token"] == "" || pair["refreshToken"] == refresh {
		t.Fatalf("refresh gave %v", pair)
	}
	// Reuse of the old refresh token revokes the session (the new pair
	// too); sign in again.
	c.do("POST", "/api/auth/refresh", "", fmt.Sprintf(`{"refreshToken":%q}`, refresh), 401)
	c.do("GET", "/api/auth/me", pair["token"].(string), "", 401)
	admin = c.login("zoë@example.com", "pässwörd-ünïcode-🔑")

	const liveKey = "vb_live_4f1d2c3b4a5968778695a4b3c2d1e0f1"
	for i := 0; i < 20; i++ { // many statements, so they spread over PgBouncer's server connections
		if v := c.doKey("POST", "/api/developer/verify", "", liveKey, `{}`, 200); v["valid"] != true {
			t.Fatalf("verify = %v", v)
		}
		if w := c.doKey("POST", "/api/whitelist/check", "", liveKey, `{"licenseKey":"LIC-DDDD-EEEE-FFFF"}`, 200); w["whitelisted"] != true {
			t.Fatalf("whitelist check = %v", w)
		}
	}
	if v := c.do("GET", "/api/secrets/stripe_secret_key", admin, "", 200); v["version"] != float64(1) {
		t.Fatalf("GET imported secret = %v", v)
	}
	c.do("PUT", "/api/secrets/pgbouncer-check", admin, `{"value":"through the pooler"}`, 201)
	if v := c.do("GET", "/api/secrets/pgbouncer-check", admin, "", 200); v["value"] != "through the pooler" {
		t.Fatalf("GET secret = %v", v)
	}

	// Realtime: the change of a store created through PgBouncer arrives
	// over the LISTEN connection on the direct URL.
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+s.addr+"/api/realtime?access_token="+url.QueryEscape(admin), nil)
	if err != nil {
		t.Fatalf("dial realtime: %v", err)
	}
	defer ws.Close()
	read := func() map[string]any {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		var m map[string]any
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatalf("realtime read: %v", err)
		}
		return m
	}
	if m := read(); m["type"] != "authenticated" {
		t.Fatalf("got %v, want authenticated", m)
	}
	if err := ws.WriteJSON(map[string]string{"type": "subscribe", "topic": "stores"}); err != nil {
		t.Fatal(err)
	}
	if m := read(); m["type"] != "subscribed" {
		t.Fatalf("got %v, want subscribed", m)
	}
	st := c.do("POST", "/api/stores", admin, `{"name":"Pooled","slug":"pooled-shop"}`, 201)
	if m := read(); m["type"] != "change" || m["id"] != st["id"] {
		t.Fatalf("got %v, want the insert of store %v", m, st["id"])
	}

	// A DEK rotation: the worker in serve re-encrypts everything through
	// PgBouncer (row leases in transactions, no session locks).
	job := c.do("POST", "/api/admin/keys/rotate", admin, `{"kind":"dek"}`, 202)
	deadline := time.Now().Add(90 * time.Second)
	for {
		p := c.do("GET", "/api/admin/keys/rotation", admin, "", 200)
		j, _ := p["job"].(map[string]any)
		if j != nil && j["jobId"] == job["jobId"] && j["state"] == "done" {
			break
		}
		if j != nil && j["state"] == "failed" {
			t.Fatalf("rotation failed: %v", p)
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotation not done within 90 s: %v", p)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v := c.do("GET", "/api/secrets/pgbouncer-check", admin, "", 200); v["value"] != "through the pooler" {
		t.Fatalf("GET secret after rotation = %v", v)
	}

	// A backup (pg_dump on the direct URL), verified by a scratch restore.
	b := c.do("POST", "/api/admin/backups", admin, `{}`, 201)
	id, _ := b["id"].(string)
	if id == "" {
		t.Fatalf("backup create = %v", b)
	}
	if v := c.do("POST", "/api/admin/backups/"+id+"/verify", admin, `{}`, 200); v["ok"] != true {
		t.Fatalf("backup verify = %v", v)
	}
}
