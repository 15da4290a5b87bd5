package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stripe/stripe-go/v76/webhook"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/canarytest"
	"github.com/vectabase/vectabase/server/payments"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/backup"
	"github.com/vectabase/vectabase/store/pgtest"
)

// viaAPI are the sensitive columns of policies/sensitive_columns.json
// whose values a client sends through the HTTP API (or, for a license key,
// receives from it), driven by TestProperty5_SensitiveDataEncryption.
var viaAPI = map[string]bool{
	"products.download_url":                         true, // POST and PATCH /api/products
	"secret_versions.value":                         true, // PUT /api/secrets/:name
	"whitelist_users.license_key":                   true, // POST /api/whitelist/systems/:id/users (generated, returned once)
	"sales.stripe_payment_intent_id":                true, // POST /api/stripe/webhook checkout.session.completed
	"payment_transactions.stripe_session_id":        true, // the same event
	"payment_transactions.stripe_payment_intent_id": true,
}

// noAPIPath are the listed sensitive columns no client value reaches
// through the HTTP API, and why. The Supabase importer writes all of them
// but jwt_signing_keys.private_key; store/supabase's
// TestProperty5_ImportStoresNoPlaintext drives those with random values.
var noAPIPath = map[string]string{
	"profiles.stripe_customer_id":                    "no route sets a Stripe customer; only the importer writes it",
	"stores.stripe_account_id":                       "POST /api/stripe/onboard stores the id Stripe's API returns, not a client's value (server/payments checks it is not stored in clear against stripe-mock); the importer writes it",
	"whitelist_users.hwid":                           "no route binds a hardware id (PATCH only clears it); only the importer writes it",
	"discord_servers.webhook_url":                    "no route registers a guild's webhook; only the importer writes it",
	"developer_subscriptions.stripe_customer_id":     "no route writes developer subscriptions; only the importer does",
	"developer_subscriptions.stripe_subscription_id": "no route writes developer subscriptions; only the importer does",
	"whitelist_entries.license_key":                  "no route writes whitelist entries; only the importer does",
	"whitelist_entries.hwid":                         "no route writes whitelist entries; only the importer does",
	"jwt_signing_keys.private_key":                   "generated inside the server by the token signer; no value enters from outside",
	"user_keys.keyset":                               "a user's personal key, generated inside the server; no value enters from outside",
	"audit_signing_key.private_key":                  "generated inside the server by the audit checkpointer; no value enters from outside",
	"bot_role_grants.interaction_token":              "written by a bot command from a Discord-signed interaction (server/discord's grant tests drive it against a Discord double, and the column's CHECK refuses anything without Tink's prefix); no route of this test's API writes it",
}

var p5Tag atomic.Int64

// core is a unique ASCII run inside a value that any copy of the value
// keeps verbatim however it was escaped; a value rapid shrinks to
// "AAAA…" therefore cannot appear in a ciphertext by chance.
func core(rt *rapid.T, label string) string {
	return rapid.StringMatching(`[A-Za-z0-9]{12}`).Draw(rt, label+" core") + fmt.Sprintf("Q%d", p5Tag.Add(1))
}

// stripeID draws the start of what Stripe's ids are: printable ASCII
// without spaces.
func stripeID(rt *rapid.T, prefix, label string) string {
	r := rapid.RuneFrom(nil, &unicode.RangeTable{R16: []unicode.Range16{{Lo: '!', Hi: '~', Stride: 1}}})
	return prefix + rapid.StringOfN(r, 0, 40, -1).Draw(rt, label)
}

// TestProperty5_SensitiveDataEncryption claims, for the server as serve
// wires it: random values sent through the HTTP API into every sensitive
// column a client can reach (download URLs on create and update, secret
// values of any text, Stripe session and payment intent ids in signed
// webhook events, and the license keys the API generates) are stored
// only as ciphertext: read raw from PostgreSQL, no table holds any of them
// as text or as bytes. Every listed column is driven here or named in
// noAPIPath with the reason. rapid's default 100 iterations on one
// database.
func TestProperty5_SensitiveDataEncryption(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cols, err := policies.SensitiveColumns()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cols {
		_, none := noAPIPath[c.String()]
		switch {
		case viaAPI[c.String()] && none:
			t.Errorf("%s is both driven through the API and listed in noAPIPath", c)
		case !viaAPI[c.String()] && !none:
			t.Errorf("sensitive column %s has no API write path driven here and no reason in noAPIPath", c)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

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
	const webhookSecret = "whsec_p5_test_secret"
	cfg.Store = store.Config{URL: url}
	cfg.Keyring = keyring.Config{Backend: "local", MasterKeyFile: keyFile}
	cfg.Backup = backup.Config{Dir: t.TempDir(), Keep: 2}
	cfg.Rotation.Disabled = true
	cfg.Marketplace.RequestLogSpoolDir = t.TempDir() // not ./.vectabase/spool inside the repository
	cfg.Stripe = payments.Config{SecretKey: "sk_test_p5", WebhookSecret: webhookSecret}
	log, reg := zerolog.Nop(), prometheus.NewRegistry()
	srv := server.New(server.Config{}, log, reg)
	d := &deps{cfg: cfg, log: log, reg: reg, db: db}
	t.Cleanup(d.close)
	if err := mountAreas(ctx, d, srv); err != nil {
		t.Fatalf("mountAreas err = %v", err)
	}
	app := srv.App()
	call := func(f interface{ Fatalf(string, ...any) }, method, target string, body any, headers ...string) (int, []byte) {
		var raw []byte
		switch b := body.(type) {
		case nil:
		case []byte:
			raw = b
		default:
			raw, _ = json.Marshal(b)
		}
		var rd any
		if raw != nil {
			rd = raw
		}
		resp, err := app.Test(canarytest.Request(method, target, rd, headers...), -1)
		if err != nil {
			f.Fatalf("%s %s: %v", method, target, err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, out
	}
	decode := func(f interface{ Fatalf(string, ...any) }, raw []byte, v any) {
		if err := json.Unmarshal(raw, v); err != nil {
			f.Fatalf("decode %s: %v", raw, err)
		}
	}

	// An admin (secrets need the role) who owns a store and a whitelist
	// system.
	const password = "p5-correct-horse"
	if s, raw := call(t, "POST", "/api/auth/register", map[string]string{"email": "p5@example.com", "password": password}); s != 201 {
		t.Fatalf("register = %d %s", s, raw)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE profiles SET role = 'admin'`); err != nil {
		t.Fatal(err)
	}
	_, raw := call(t, "POST", "/api/auth/login", map[string]string{"email": "p5@example.com", "password": password})
	var login struct{ Token string }
	decode(t, raw, &login)
	bearer := []string{"Authorization", "Bearer " + login.Token}
	var storeRes, system struct{ ID string }
	if s, raw := call(t, "POST", "/api/stores", map[string]any{"name": "P5", "slug": "p5"}, bearer...); s != 201 {
		t.Fatalf("create store = %d %s", s, raw)
	} else {
		decode(t, raw, &storeRes)
	}
	if s, raw := call(t, "POST", "/api/whitelist/systems", map[string]any{"name": "P5"}, bearer...); s != 201 {
		t.Fatalf("create system = %d %s", s, raw)
	} else {
		decode(t, raw, &system)
	}

	n := 0
	rapid.Check(t, func(rt *rapid.T) {
		n++
		// Each value with its core: the ASCII run any escaped copy keeps.
		type value struct{ v, core string }
		var values []value

		// products.download_url, on create and on update.
		path := rapid.StringOfN(rapid.RuneFrom(nil, unicode.Letter, unicode.Digit, &unicode.RangeTable{R16: []unicode.Range16{{Lo: '-', Hi: '/', Stride: 1}, {Lo: '_', Hi: '_', Stride: 1}, {Lo: '~', Hi: '~', Stride: 1}}}), 0, 60, -1)
		c1 := core(rt, "download")
		url1 := "https://dl.example/" + path.Draw(rt, "download path") + c1
		status, raw := call(rt, "POST", "/api/products", map[string]any{"storeId": storeRes.ID, "name": "p", "priceCents": 100, "downloadUrl": url1}, bearer...)
		if status != 201 {
			rt.Fatalf("create product = %d %s", status, raw)
		}
		var product struct{ ID string }
		decode(rt, raw, &product)
		values = append(values, value{url1, c1})
		if rapid.Bool().Draw(rt, "update download URL") {
			c2 := core(rt, "new download")
			url2 := "http://files.example/" + path.Draw(rt, "new download path") + c2
			if status, raw := call(rt, "PATCH", "/api/products/"+product.ID, map[string]any{"downloadUrl": url2}, bearer...); status != 200 {
				rt.Fatalf("update product = %d %s", status, raw)
			}
			values = append(values, value{url2, c2})
		}

		// secret_versions.value: any text.
		text := rapid.StringOfN(rapid.RuneFrom(nil, unicode.Letter, unicode.Digit, unicode.Punct, unicode.Symbol, unicode.Zs), 0, 200, -1)
		for i := range rapid.IntRange(1, 3).Draw(rt, "secret versions") {
			c := core(rt, "secret")
			v := text.Draw(rt, "secret head") + c + text.Draw(rt, "secret tail")
			if status, raw := call(rt, "PUT", fmt.Sprintf("/api/secrets/p5_%d", n), map[string]any{"value": v}, bearer...); status >= 300 {
				rt.Fatalf("put secret version %d = %d %s", i+1, status, raw)
			}
			values = append(values, value{v, c})
		}

		// whitelist_users.license_key: generated by the server, shown once.
		status, raw = call(rt, "POST", "/api/whitelist/systems/"+system.ID+"/users", map[string]any{"robloxUserId": 1000 + n}, bearer...)
		if status != 201 {
			rt.Fatalf("whitelist a player = %d %s", status, raw)
		}
		var player struct{ LicenseKey string }
		decode(rt, raw, &player)
		if player.LicenseKey == "" {
			rt.Fatalf("whitelist a player: no license key in %s", raw)
		}
		values = append(values, value{player.LicenseKey, player.LicenseKey})

		// sales.stripe_payment_intent_id and payment_transactions'
		// session and payment intent ids, from a signed event.
		cs, ci := core(rt, "session id"), core(rt, "payment intent id")
		session, intent := stripeID(rt, "cs_", "session id")+cs, stripeID(rt, "pi_", "payment intent id")+ci
		payload, _ := json.Marshal(map[string]any{
			"id": "evt_" + strings.ReplaceAll(uuid.NewString(), "-", ""), "object": "event", "type": "checkout.session.completed",
			"api_version": "2023-10-16", "created": time.Now().Unix(), "livemode": false, "pending_webhooks": 1,
			"data": map[string]any{"object": map[string]any{
				"id": session, "object": "checkout.session", "mode": "payment", "status": "complete",
				"payment_status": "paid", "amount_total": 2500, "currency": "usd", "payment_intent": intent,
				"metadata": map[string]any{"vectabase_product_id": product.ID, "vectabase_store_id": storeRes.ID},
			}},
		})
		sig := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: webhookSecret, Timestamp: time.Now()}).Header
		if status, raw := call(rt, "POST", "/api/stripe/webhook", payload, "Stripe-Signature", sig); status != 200 {
			rt.Fatalf("webhook = %d %s", status, raw)
		}
		var sales int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM sales WHERE product_id = $1 AND stripe_payment_intent_id IS NOT NULL`, product.ID).Scan(&sales); err != nil || sales != 1 {
			rt.Fatalf("sales of the product with a payment intent = %d (%v), want 1: the event was not recorded", sales, err)
		}
		values = append(values, value{session, cs}, value{intent, ci})

		dump := canarytest.Tables(t, db, allTables(t, ctx, db)...)
		for _, v := range values {
			for where, text := range dump {
				for _, f := range []string{v.v, jsonEscaped(v.v), v.core, hex.EncodeToString([]byte(v.v)), hex.EncodeToString([]byte(v.core))} {
					if strings.Contains(text, f) {
						rt.Fatalf("%s holds the plaintext %q", where, v.v)
					}
				}
			}
		}
	})
}

func jsonEscaped(v string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return strings.Trim(strings.TrimSpace(b.String()), `"`)
}

func allTables(t *testing.T, ctx context.Context, db *store.DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}
