package supabase_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/store/supabase"
)

// samplePasswords are the passwords sample.sql lists for its users.
var samplePasswords = map[string]string{
	"alice@example.com": "correct horse battery staple",
	"bob@example.com":   "Tr0ub4dor&3",
	"zoë@example.com":   "pässwörd-ünïcode-🔑",
}

// samplePlaintexts are sensitive values of sample.sql that must not appear
// anywhere in the target.
var samplePlaintexts = []string{
	"cus_Alice0001", "acct_1AliceFixture", "https://files.example/dl?sig=abc123", "pi_Fixture0001",
	"cs_test_Fixture0001", "LIC-AAAA-BBBB-CCCC", "hwid-bob-01", "secret-token-abc", "sub_Fixture0001",
	"DEV-1111-2222", "hw-2002", "vb_live_4f1d2c3b4a5968778695a4b3c2d1e0f1", "sk_test_51Fixture",
	"whsec_fixture", "MIIfixture",
}

func TestImportSample(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := newSource(t, fixture(t, "sample.sql"))
	tg := newTarget(t)
	rep := tg.mustRun(t, supabase.Options{Source: src})
	if !rep.Committed || rep.Error != "" {
		t.Fatalf("report: committed=%v error=%q, want committed", rep.Committed, rep.Error)
	}
	for _, c := range rep.Checks {
		if !c.OK {
			t.Errorf("check %s %s failed: %s", c.Name, c.Subject, c.Detail)
		}
	}

	// Every sample user can sign in with the password sample.sql lists.
	for email, pw := range samplePasswords {
		var hash *string
		if err := tg.conn.QueryRow(ctx, `SELECT password_hash FROM users WHERE email = $1`, email).Scan(&hash); err != nil {
			t.Fatalf("user %s: %v", email, err)
		}
		if hash == nil {
			t.Fatalf("user %s has no password hash", email)
		}
		if _, err := auth.VerifyPassword(*hash, pw, auth.OWASPArgon2); err != nil {
			t.Errorf("VerifyPassword(%s) err = %v, want nil", email, err)
		}
		if _, err := auth.VerifyPassword(*hash, pw+"x", auth.OWASPArgon2); err == nil {
			t.Errorf("VerifyPassword(%s, wrong) err = nil, want a mismatch", email)
		}
	}

	// carol signs in only through Discord.
	var carolHash, discordName *string
	var discordID string
	if err := tg.conn.QueryRow(ctx, `SELECT password_hash, discord_id, discord_username FROM users WHERE id = '33333333-3333-3333-3333-333333333333'`).
		Scan(&carolHash, &discordID, &discordName); err != nil {
		t.Fatal(err)
	}
	if carolHash != nil || discordID != "309876543210987654" || discordName == nil || *discordName != "carol" {
		t.Errorf("carol: hash=%v discord_id=%q username=%v, want no hash, 309876543210987654, carol", carolHash, discordID, discordName)
	}
	var aliceDiscord string
	if err := tg.conn.QueryRow(ctx, `SELECT discord_id FROM users WHERE email = 'alice@example.com'`).Scan(&aliceDiscord); err != nil || aliceDiscord != "201234567890123456" {
		t.Errorf("alice discord_id = %q (%v), want 201234567890123456", aliceDiscord, err)
	}

	// The live API key's keyed hash is stored; the revoked one stays revoked.
	for _, k := range []struct {
		key     string
		revoked bool
	}{{"vb_live_4f1d2c3b4a5968778695a4b3c2d1e0f1", false}, {"vb_live_00000000000000000000000000000000", true}} {
		mac, err := tg.kr.MAC("api_key", []byte(k.key))
		if err != nil {
			t.Fatal(err)
		}
		var prefix string
		var revoked bool
		if err := tg.conn.QueryRow(ctx, `SELECT key_prefix, revoked_at IS NOT NULL FROM developer_api_keys WHERE key_hash = $1`, mac).Scan(&prefix, &revoked); err != nil {
			t.Fatalf("API key %s…: no row with its hash: %v", k.key[:12], err)
		}
		if prefix != k.key[:12] || revoked != k.revoked {
			t.Errorf("API key %s…: prefix %q revoked %v, want %q %v", k.key[:12], prefix, revoked, k.key[:12], k.revoked)
		}
	}

	// Vault secrets decrypt back, the multi-line PEM included.
	wantSecrets := map[string]string{
		"stripe_secret_key":     "sk_test_51Fixture0000000000000000000000000000000000",
		"stripe_webhook_secret": "whsec_fixture0000000000000000000000",
		"discord_bot_token":     "MTAxMDEw.fixture.bot-token-with-dots_and-dashes",
		"multiline_pem":         "-----BEGIN PRIVATE KEY-----\nMIIfixture\n-----END PRIVATE KEY-----\n",
	}
	rows, err := tg.conn.Query(ctx, `SELECT s.name, s.current_version, s.created_by, v.version, v.value FROM secrets s JOIN secret_versions v ON v.secret_id = s.id`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var name, by string
		var cur, ver int
		var ct []byte
		if err := rows.Scan(&name, &cur, &by, &ver, &ct); err != nil {
			t.Fatal(err)
		}
		pt, err := tg.kr.Decrypt(ctx, keyring.Location{Table: "secret_versions", Column: "value", RowID: name + "@1"}, ct)
		if err != nil {
			t.Fatalf("secret %s: Decrypt err = %v", name, err)
		}
		if cur != 1 || ver != 1 || by != "import" {
			t.Errorf("secret %s: current_version %d version %d created_by %q, want 1 1 import", name, cur, ver, by)
		}
		got[name] = string(pt)
	}
	if diff := cmp.Diff(wantSecrets, got); diff != "" {
		t.Errorf("secrets (-want +got):\n%s", diff)
	}

	// License keys are findable through their blind index.
	bidx, _ := tg.kr.BlindIndex("whitelist_users", "license_key", []byte("LIC-DDDD-EEEE-FFFF"))
	var roblox int64
	if err := tg.conn.QueryRow(ctx, `SELECT roblox_user_id FROM whitelist_users WHERE license_key_bidx = $1`, bidx).Scan(&roblox); err != nil || roblox != 3003 {
		t.Errorf("license key by blind index: roblox %d (%v), want 3003", roblox, err)
	}

	// Every sensitive value is a ciphertext of the keyring, bound to its row.
	cols, _ := policies.SensitiveColumns()
	for _, c := range cols {
		if c.Table == "secret_versions" {
			continue
		}
		rows, err := tg.conn.Query(ctx, "SELECT id::text, "+c.Column+" FROM "+c.Table+" WHERE "+c.Column+" IS NOT NULL")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			var ct []byte
			if err := rows.Scan(&id, &ct); err != nil {
				t.Fatal(err)
			}
			if _, err := tg.kr.Decrypt(ctx, keyring.Location{Table: c.Table, Column: c.Column, RowID: id}, ct); err != nil {
				t.Errorf("%s row %s: Decrypt err = %v, want nil", c, id, err)
			}
		}
	}
	// No plaintext anywhere in the target, in any column of any table.
	snap := tg.snapshot(t)
	for table, content := range snap {
		for _, p := range samplePlaintexts {
			if strings.Contains(content, p) {
				t.Errorf("table %s holds the plaintext %q", table, p)
			}
		}
	}
	// Nor in the report.
	js, _ := json.Marshal(rep)
	var text bytes.Buffer
	rep.WriteText(&text)
	for _, p := range append(samplePlaintexts, "correct horse", "$2a$10$") {
		if strings.Contains(string(js), p) || strings.Contains(text.String(), p) {
			t.Errorf("report holds %q", p)
		}
	}

	// Rows with the same ids; Supabase sessions left behind.
	wantCounts := map[string]int64{"users": 4, "profiles": 4, "stores": 2, "products": 3, "sales": 3, "payment_transactions": 4,
		"whitelist_systems": 2, "whitelist_users": 3, "discord_servers": 1, "bot_products": 1, "bot_whitelisted_users": 2,
		"bot_command_permissions": 2, "developer_products": 1, "developer_api_keys": 2, "developer_subscriptions": 1,
		"obfuscation_credits": 1, "obfuscation_usage": 2, "whitelist_entries": 2, "api_request_logs": 2,
		"secrets": 4, "secret_versions": 4, "sessions": 0}
	for table, want := range wantCounts {
		if got := tg.count(t, table); got != want {
			t.Errorf("count(%s) = %d, want %d", table, got, want)
		}
	}
	var desc string
	if err := tg.conn.QueryRow(ctx, `SELECT description FROM stores WHERE slug = 'zoes-shop'`).Scan(&desc); err != nil || desc != "line one\nline two" {
		t.Errorf("multi-line description = %q (%v)", desc, err)
	}
	// New log rows do not collide with imported ids.
	if _, err := tg.conn.Exec(ctx, `INSERT INTO api_request_logs (request_id, method, path, status_code, latency_ms) VALUES (gen_random_uuid(), 'GET', '/', 200, 1)`); err != nil {
		t.Errorf("insert after import: %v", err)
	}
	var skippedSessions int64
	for _, tr := range rep.Tables {
		if tr.Source == "auth.refresh_tokens" {
			skippedSessions = tr.Skipped
		}
	}
	if skippedSessions != 1 {
		t.Errorf("report: auth.refresh_tokens skipped %d, want 1", skippedSessions)
	}

	// A second import into the now full target is refused.
	before := tg.snapshot(t)
	_, err = tg.run(t, supabase.Options{Source: src})
	if vectabase.ErrorCode(err) != vectabase.ECONFLICT {
		t.Errorf("second import err = %v, want CONFLICT", err)
	}
	if diff := cmp.Diff(before, tg.snapshot(t)); diff != "" {
		t.Errorf("refused import changed the target (-before +after):\n%s", diff)
	}
	// With --replace it goes through again, and gives the same data.
	tg.mustRun(t, supabase.Options{Source: src, Replace: true})
	if got := tg.count(t, "users"); got != 4 {
		t.Errorf("after --replace: %d users, want 4", got)
	}
}
