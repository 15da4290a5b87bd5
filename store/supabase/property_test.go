package supabase_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/store/supabase"
)

// awkward draws text with what breaks naive copying: quotes, backslashes,
// tabs, newlines, commas, non-ASCII and astral characters.
var awkward = rapid.StringOfN(rapid.RuneFrom([]rune("aZ09 _-,.:;'\"\\\t\r\nëö🔑中{}[]")), 0, 10, -1)

func id(table, i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", table, i) }

func maybe(rt *rapid.T, label string, v string) any {
	if rapid.Bool().Draw(rt, label+"_null") {
		return nil
	}
	return v
}

// fillSource replaces the source's data with a random small project whose
// foreign keys all hold, and returns each table's row count.
func fillSource(rt *rapid.T, conn *pgx.Conn) map[string]int {
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			rt.Fatalf("source: %s: %v", sql, err)
		}
	}
	exec(`TRUNCATE auth.users, auth.identities, auth.refresh_tokens, vault.secrets, public.profiles, public.stores, public.products,
		public.sales, public.payment_transactions, public.whitelist_systems, public.whitelist_users, public.discord_servers,
		public.bot_products, public.bot_whitelisted_users, public.bot_command_permissions, public.developer_products,
		public.developer_api_keys, public.developer_subscriptions, public.obfuscation_credits, public.obfuscation_usage,
		public.whitelist_entries, public.api_request_logs CASCADE`)
	n := map[string]int{}
	pick := func(label string, table, count int) string {
		return id(table, rapid.IntRange(0, count-1).Draw(rt, label))
	}

	n["users"] = rapid.IntRange(1, 6).Draw(rt, "users")
	discord := 0
	for i := 0; i < n["users"]; i++ {
		pw := rapid.SampledFrom([]any{nil, "", "$2a$10$N7jQfO.23DgZh/HtdZy4r.pTRIBA68EnBmFeAGEVaJtTdS5wBqZ86"}).Draw(rt, "password")
		email := maybe(rt, "email", fmt.Sprintf("u%d-%s@example.com", i, rapid.StringMatching(`[a-zA-Zë]{0,6}`).Draw(rt, "local")))
		exec(`INSERT INTO auth.users (id, email, encrypted_password, raw_user_meta_data, created_at, updated_at)
			VALUES ($1, $2, $3, jsonb_build_object('full_name', $4::text), now(), now())`, id(1, i), email, pw, awkward.Draw(rt, "full_name"))
		if rapid.Bool().Draw(rt, "discord") {
			discord++
			exec(`INSERT INTO auth.identities (provider_id, user_id, identity_data, provider)
				VALUES ($1, $2, jsonb_build_object('name', $3::text, 'full_name', $3::text), 'discord')`,
				fmt.Sprint(300000000000000000+i), id(1, i), awkward.Draw(rt, "discord_name"))
		}
		if rapid.Bool().Draw(rt, "email_identity") {
			exec(`INSERT INTO auth.identities (provider_id, user_id, identity_data, provider) VALUES ($1, $2, '{}', 'email')`, id(1, i), id(1, i))
		}
		if rapid.Bool().Draw(rt, "profile") {
			n["profiles"]++
			exec(`INSERT INTO public.profiles (id, username, stripe_customer_id) VALUES ($1, $2, $3)`,
				id(1, i), fmt.Sprintf("user%d", i), maybe(rt, "cus", "cus_"+awkward.Draw(rt, "cus_v")))
		}
	}
	n["discord"] = discord
	n["stores"] = rapid.IntRange(0, 4).Draw(rt, "stores")
	for i := 0; i < n["stores"]; i++ {
		exec(`INSERT INTO public.stores (id, owner_id, name, slug, description, stripe_account_id) VALUES ($1, $2, $3, $4, $5, $6)`,
			id(2, i), pick("owner", 1, n["users"]), awkward.Draw(rt, "store_name"), fmt.Sprintf("s%d", i),
			maybe(rt, "desc", awkward.Draw(rt, "desc_v")), maybe(rt, "acct", "acct_"+awkward.Draw(rt, "acct_v")))
	}
	if n["stores"] > 0 {
		n["products"] = rapid.IntRange(0, 6).Draw(rt, "products")
	}
	for i := 0; i < n["products"]; i++ {
		exec(`INSERT INTO public.products (id, store_id, name, price_cents, download_url, metadata) VALUES ($1, $2, $3, $4, $5, jsonb_build_object('k', $3::text))`,
			id(3, i), pick("store", 2, n["stores"]), awkward.Draw(rt, "product_name"), rapid.IntRange(0, 5000).Draw(rt, "price"),
			maybe(rt, "url", "https://f.example/"+awkward.Draw(rt, "url_v")))
	}
	if n["products"] > 0 {
		n["sales"] = rapid.IntRange(0, 6).Draw(rt, "sales")
	}
	for i := 0; i < n["sales"]; i++ {
		var buyer any
		if rapid.Bool().Draw(rt, "has_buyer") {
			buyer = pick("buyer", 1, n["users"])
		}
		exec(`INSERT INTO public.sales (id, product_id, store_id, buyer_id, amount_cents, stripe_payment_intent_id) VALUES ($1, $2, $3, $4, 100, $5)`,
			id(4, i), pick("product", 3, n["products"]), pick("sale_store", 2, n["stores"]), buyer, maybe(rt, "pi", "pi_"+awkward.Draw(rt, "pi_v")))
		if rapid.Bool().Draw(rt, "transaction") {
			n["payment_transactions"]++
			exec(`INSERT INTO public.payment_transactions (sale_id, store_id, stripe_session_id, type, amount_cents, status) VALUES ($1, $2, $3, 'checkout', 100, 'succeeded')`,
				id(4, i), pick("tx_store", 2, n["stores"]), maybe(rt, "cs", "cs_"+awkward.Draw(rt, "cs_v")))
		}
	}
	n["whitelist_systems"] = rapid.IntRange(0, 3).Draw(rt, "systems")
	for i := 0; i < n["whitelist_systems"]; i++ {
		var store any
		if n["stores"] > 0 && rapid.Bool().Draw(rt, "system_store") {
			store = pick("system_store_id", 2, n["stores"])
		}
		exec(`INSERT INTO public.whitelist_systems (id, owner_id, store_id, name) VALUES ($1, $2, $3, 'sys')`, id(5, i), pick("sys_owner", 1, n["users"]), store)
	}
	if n["whitelist_systems"] > 0 {
		n["whitelist_users"] = rapid.IntRange(0, 5).Draw(rt, "wl_users")
	}
	for i := 0; i < n["whitelist_users"]; i++ {
		exec(`INSERT INTO public.whitelist_users (system_id, roblox_user_id, license_key, hwid) VALUES ($1, $2, $3, $4)`,
			pick("wl_system", 5, n["whitelist_systems"]), i, "LIC-"+awkward.Draw(rt, "lic"), maybe(rt, "hwid", awkward.Draw(rt, "hwid_v")))
	}
	n["developer_products"] = rapid.IntRange(0, 3).Draw(rt, "dev_products")
	for i := 0; i < n["developer_products"]; i++ {
		exec(`INSERT INTO public.developer_products (id, developer_id, name) VALUES ($1, $2, 'p')`, id(6, i), pick("dev", 1, n["users"]))
	}
	n["developer_api_keys"] = rapid.IntRange(0, 4).Draw(rt, "keys")
	for i := 0; i < n["developer_api_keys"]; i++ {
		var product any
		if n["developer_products"] > 0 && rapid.Bool().Draw(rt, "key_product") {
			product = pick("key_product_id", 6, n["developer_products"])
		}
		exec(`INSERT INTO public.developer_api_keys (id, developer_id, developer_product_id, name, api_key, revoked_at) VALUES ($1, $2, $3, 'k', $4, $5)`,
			id(7, i), pick("key_dev", 1, n["users"]), product, fmt.Sprintf("vb_live_%04d%s", i, awkward.Draw(rt, "key")),
			rapid.SampledFrom([]any{nil, "2026-01-01T00:00:00Z"}).Draw(rt, "revoked"))
	}
	n["api_request_logs"] = rapid.IntRange(0, 5).Draw(rt, "logs")
	for i := 0; i < n["api_request_logs"]; i++ {
		var key any
		if n["developer_api_keys"] > 0 && rapid.Bool().Draw(rt, "log_key") {
			key = pick("log_key_id", 7, n["developer_api_keys"])
		}
		exec(`INSERT INTO public.api_request_logs (request_id, api_key_id, method, path, status_code, latency_ms) VALUES (gen_random_uuid(), $1, 'POST', $2, 200, 1)`,
			key, "/"+awkward.Draw(rt, "path"))
	}
	n["secrets"] = rapid.IntRange(0, 4).Draw(rt, "secrets")
	for i := 0; i < n["secrets"]; i++ {
		exec(`INSERT INTO vault.secrets (name, description, secret) VALUES ($1, $2, $3)`,
			fmt.Sprintf("secret_%d", i), awkward.Draw(rt, "secret_desc"), awkward.Draw(rt, "secret_value"))
	}
	n["secret_versions"] = n["secrets"]
	return n
}

// TestProperty1_ImportKeepsRowCounts claims: for any source project, every
// target table holds exactly as many rows as its source table (users as
// auth.users, Discord users as Discord identities, secrets as Vault
// secrets), and the report says so.
func TestProperty1_ImportKeepsRowCounts(t *testing.T) {
	t.Parallel()
	srcURL := newSource(t)
	src := connect(t, srcURL)
	tg := newTarget(t)
	rapid.Check(t, func(rt *rapid.T) {
		want := fillSource(rt, src)
		rep, err := tg.run(t, supabase.Options{Source: srcURL, Replace: true})
		if err != nil {
			rt.Fatalf("Import err = %v, want nil", err)
		}
		for table, n := range want {
			if table == "discord" {
				continue
			}
			if got := tg.count(t, table); got != int64(n) {
				rt.Errorf("count(%s) = %d, want %d", table, got, n)
			}
		}
		var discord int64
		if err := tg.conn.QueryRow(context.Background(), `SELECT count(*) FROM users WHERE discord_id IS NOT NULL`).Scan(&discord); err != nil || discord != int64(want["discord"]) {
			rt.Errorf("Discord users = %d (%v), want %d", discord, err, want["discord"])
		}
		for _, tr := range rep.Tables {
			if tr.Target == "" || tr.Source == "auth.identities" {
				continue
			}
			if n, ok := want[tr.Target]; ok && (tr.Read != int64(n) || tr.Written != int64(n) || tr.Skipped != 0) {
				rt.Errorf("report %s -> %s: read %d written %d skipped %d, want %d %d 0", tr.Source, tr.Target, tr.Read, tr.Written, tr.Skipped, n, n)
			}
		}
	})
}

// TestProperty2_ImportKeepsForeignKeys claims: for any source project,
// after the import every foreign key of the target is in place and
// resolves, and every reference points at the same row as in the source.
func TestProperty2_ImportKeepsForeignKeys(t *testing.T) {
	t.Parallel()
	srcURL := newSource(t)
	src := connect(t, srcURL)
	tg := newTarget(t)
	ctx := context.Background()
	// The references the source holds, by child table and column.
	refs := map[string][]string{
		"profiles": {"id"}, "stores": {"owner_id"}, "products": {"store_id"}, "sales": {"product_id", "store_id", "buyer_id"},
		"payment_transactions": {"sale_id", "store_id"}, "whitelist_systems": {"owner_id", "store_id"},
		"whitelist_users": {"system_id"}, "developer_products": {"developer_id"},
		"developer_api_keys": {"developer_id", "developer_product_id"}, "api_request_logs": {"api_key_id"},
	}
	edges := func(rt *rapid.T, conn *pgx.Conn, schema string) map[string]string {
		out := map[string]string{}
		for table, cols := range refs {
			for _, c := range cols {
				var s *string
				q := fmt.Sprintf(`SELECT string_agg(coalesce(%[1]s::text, '-'), ',' ORDER BY %[1]s::text) FROM %[2]s`, pgx.Identifier{c}.Sanitize(), pgx.Identifier{schema, table}.Sanitize())
				if err := conn.QueryRow(ctx, q).Scan(&s); err != nil {
					rt.Fatalf("%s: %v", q, err)
				}
				if s != nil {
					out[table+"."+c] = *s
				}
			}
		}
		return out
	}
	rapid.Check(t, func(rt *rapid.T) {
		fillSource(rt, src)
		if _, err := tg.run(t, supabase.Options{Source: srcURL, Replace: true}); err != nil {
			rt.Fatalf("Import err = %v, want nil", err)
		}
		want, got := edges(rt, src, "public"), edges(rt, tg.conn, "public")
		for k, w := range want {
			if got[k] != w {
				rt.Errorf("references %s: source %q, target %q", k, w, got[k])
			}
		}
		// Every foreign key of the target exists again and holds.
		rows, err := tg.conn.Query(ctx, `SELECT conrelid::regclass::text, conname, convalidated FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace`)
		if err != nil {
			rt.Fatal(err)
		}
		type fk struct {
			table, name string
			valid       bool
		}
		fks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (fk, error) {
			var f fk
			return f, r.Scan(&f.table, &f.name, &f.valid)
		})
		if err != nil {
			rt.Fatal(err)
		}
		if len(fks) < 20 {
			rt.Fatalf("target has %d foreign keys after the import, want the schema's (at least 20)", len(fks))
		}
		for _, f := range fks {
			if !f.valid {
				rt.Errorf("foreign key %s on %s is not validated", f.name, f.table)
			}
		}
		// And PostgreSQL agrees no reference dangles: validating each again
		// would fail on an orphan.
		for _, f := range fks {
			if _, err := tg.conn.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s VALIDATE CONSTRAINT %s`, f.table, pgx.Identifier{f.name}.Sanitize())); err != nil {
				rt.Errorf("validate %s: %v", f.name, err)
			}
		}
	})
}
