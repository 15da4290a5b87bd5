package supabase_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unicode"

	"github.com/jackc/pgx/v5"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/store/supabase"
)

// NoImportPath lists the sensitive columns of policies/sensitive_columns.json
// that no Supabase project can fill, with the reason. Every other listed
// column must have a source column the importer reads, and
// TestProperty5_ImportStoresNoPlaintext drives it with random values; a
// column added to the policy with neither fails that test.
var NoImportPath = map[string]string{
	"jwt_signing_keys.private_key":      "the token signer's Ed25519 key, generated inside the server (server/auth); no value of it ever enters from outside",
	"user_keys.keyset":                  "a user's personal key, generated inside the server (store/personal.go) when a personal value is first sealed; Supabase has none",
	"audit_signing_key.private_key":     "the audit checkpoint signing key, generated inside the server (vault/audit); no value of it ever enters from outside",
	"bot_role_grants.interaction_token": "a Discord interaction's token, kept for 15 minutes by the bot (server/discord); Supabase has no role grants",
}

// sourceOf is where a sensitive column's value comes from in a Supabase
// project, when it is not the same-named column of the same-named public
// table.
var sourceOf = map[string]string{
	"secret_versions.value": "vault.secrets.secret",
}

var p5Tag atomic.Int64

// p5Cores maps each generated value to its core, an ASCII run any copy of
// the value holds verbatim however it was escaped.
var p5Cores sync.Map

// plaintext draws a value of any script (no NUL, which PostgreSQL text
// cannot hold) around a 12-character ASCII core made unique, so that a
// value rapid shrinks to "AAAA…" cannot turn up in a ciphertext or hash
// by chance, and a copy is found however it was escaped.
func plaintext(rt *rapid.T, label string) string {
	r := rapid.RuneFrom(nil, unicode.Letter, unicode.Digit, unicode.Punct, unicode.Symbol, unicode.Space, unicode.Mark)
	core := rapid.StringMatching(`[A-Za-z0-9]{12}`).Draw(rt, label+" core") + fmt.Sprintf("Q%d", p5Tag.Add(1))
	v := rapid.StringOfN(r, 0, 60, -1).Draw(rt, label+" head") + core + rapid.StringOfN(r, 0, 60, -1).Draw(rt, label+" tail")
	p5Cores.Store(v, core)
	return v
}

// templates make one valid source row of each public table that holds a
// sensitive column: its id and the columns its constraints need. The
// sensitive columns are added to it. n numbers rows for unique keys.
var templates = map[string]func(id string, n int) (cols []string, vals []any){
	"profiles": func(id string, n int) ([]string, []any) { return []string{"id"}, []any{id} }, // id is an auth.users row, made first
	"stores": func(id string, n int) ([]string, []any) {
		return []string{"id", "owner_id", "name", "slug"}, []any{id, p5User, "s", "s-" + id}
	},
	"products": func(id string, n int) ([]string, []any) {
		return []string{"id", "store_id", "name", "price_cents"}, []any{id, p5Store, "p", 1}
	},
	"sales": func(id string, n int) ([]string, []any) {
		return []string{"id", "product_id", "store_id", "amount_cents"}, []any{id, p5Product, p5Store, 1}
	},
	"payment_transactions": func(id string, n int) ([]string, []any) {
		return []string{"id", "type", "amount_cents", "status"}, []any{id, "checkout", 1, "succeeded"}
	},
	"whitelist_users": func(id string, n int) ([]string, []any) {
		return []string{"id", "system_id", "roblox_user_id"}, []any{id, p5System, n}
	},
	"discord_servers": func(id string, n int) ([]string, []any) {
		return []string{"id", "guild_id", "owner_id"}, []any{id, id, p5User}
	},
	"developer_subscriptions": func(id string, n int) ([]string, []any) {
		return []string{"id", "developer_id", "plan", "status"}, []any{id, p5User, "pro", "active"}
	},
	"whitelist_entries": func(id string, n int) ([]string, []any) {
		return []string{"id", "developer_product_id", "roblox_user_id"}, []any{id, p5DevProduct, n}
	},
}

var (
	p5User       = id(1, 0)
	p5Store      = id(2, 0)
	p5Product    = id(3, 0)
	p5System     = id(5, 0)
	p5DevProduct = id(6, 0)
)

// leakForms are the ways a plaintext could sit in a row_to_json dump: as
// it is, JSON-escaped (a text column), its core, or as the hex of its
// bytes or core (a bytea column).
func leakForms(v string) []string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	core, _ := p5Cores.Load(v)
	return []string{v, strings.Trim(strings.TrimSpace(b.String()), `"`), core.(string), hex.EncodeToString([]byte(v)), hex.EncodeToString([]byte(core.(string)))}
}

// TestProperty5_ImportStoresNoPlaintext claims: for random values (any
// script around an ASCII core) in every source column that feeds a
// sensitive column of policies/sensitive_columns.json (public tables, and
// Supabase Vault secrets for secret_versions.value), after an import no
// table of the target holds any of them, as text or as bytes; and every
// listed column is driven here or named in NoImportPath with a reason.
// rapid's default 100 iterations, one source and one target reused (the
// import replaces the target's data each time).
func TestProperty5_ImportStoresNoPlaintext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srcURL := newSource(t)
	src := connect(t, srcURL)
	tg := newTarget(t)

	// Which listed columns the source schema can fill.
	rows, err := src.Query(ctx, `SELECT table_schema || '.' || table_name || '.' || column_name FROM information_schema.columns WHERE table_schema IN ('public', 'vault')`)
	if err != nil {
		t.Fatal(err)
	}
	srcCols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	has := map[string]bool{}
	for _, c := range srcCols {
		has[c] = true
	}
	cols, err := policies.SensitiveColumns()
	if err != nil {
		t.Fatal(err)
	}
	byTable := map[string][]string{}
	var tables []string
	driven := 0
	for _, c := range cols {
		source := "public." + c.String()
		if s, ok := sourceOf[c.String()]; ok {
			source = s
		}
		_, none := NoImportPath[c.String()]
		switch {
		case has[source] && none:
			t.Errorf("%s is in NoImportPath, but the Supabase source has %s: drive it instead", c, source)
		case none:
		case !has[source]:
			t.Errorf("sensitive column %s: the Supabase source has no %s; map its source in sourceOf or give the reason in NoImportPath", c, source)
		case strings.HasPrefix(source, "vault."):
			driven++
		default:
			if templates[c.Table] == nil {
				t.Errorf("sensitive column %s: no source row template for public.%s; add one", c, c.Table)
				continue
			}
			if byTable[c.Table] == nil {
				tables = append(tables, c.Table)
			}
			byTable[c.Table] = append(byTable[c.Table], c.Column)
			driven++
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	sort.Strings(tables)
	t.Logf("driving %d sensitive columns through the importer; %d without an import path", driven, len(NoImportPath))

	exec := func(rt *rapid.T, sql string, args ...any) {
		if _, err := src.Exec(ctx, sql, args...); err != nil {
			rt.Fatalf("source: %s %v: %v", sql, args, err)
		}
	}
	rapid.Check(t, func(rt *rapid.T) {
		exec(rt, `TRUNCATE auth.users, auth.identities, auth.refresh_tokens, vault.secrets CASCADE`)
		exec(rt, `INSERT INTO auth.users (id, email, created_at, updated_at) VALUES ($1, 'p5@example.com', now(), now())`, p5User)
		exec(rt, `INSERT INTO public.stores (id, owner_id, name, slug) VALUES ($1, $2, 's', 'p5')`, p5Store, p5User)
		exec(rt, `INSERT INTO public.products (id, store_id, name, price_cents) VALUES ($1, $2, 'p', 1)`, p5Product, p5Store)
		exec(rt, `INSERT INTO public.whitelist_systems (id, owner_id, name) VALUES ($1, $2, 'w')`, p5System, p5User)
		exec(rt, `INSERT INTO public.developer_products (id, developer_id, name) VALUES ($1, $2, 'd')`, p5DevProduct, p5User)
		var values []string
		n := 0
		for ti, table := range tables {
			for i := range rapid.IntRange(1, 3).Draw(rt, table+" rows") {
				n++
				rowID := id(100+ti, i)
				if table == "profiles" {
					exec(rt, `INSERT INTO auth.users (id, created_at, updated_at) VALUES ($1, now(), now())`, rowID)
				}
				cs, vs := templates[table](rowID, n)
				for _, c := range byTable[table] {
					v := plaintext(rt, table+"."+c)
					values = append(values, v)
					cs, vs = append(cs, c), append(vs, v)
				}
				ph := make([]string, len(cs))
				for j := range ph {
					ph[j] = fmt.Sprintf("$%d", j+1)
				}
				exec(rt, fmt.Sprintf(`INSERT INTO public.%s (%s) VALUES (%s)`, table, strings.Join(cs, ", "), strings.Join(ph, ", ")), vs...)
			}
		}
		for i := range rapid.IntRange(1, 3).Draw(rt, "vault secrets") {
			v := plaintext(rt, "vault.secrets.secret")
			values = append(values, v)
			exec(rt, `INSERT INTO vault.secrets (name, secret) VALUES ($1, $2)`, fmt.Sprintf("p5_%d", i), v)
		}

		if _, err := tg.run(t, supabase.Options{Source: srcURL, Replace: true}); err != nil {
			rt.Fatalf("Import err = %v, want nil", err)
		}
		dump := tg.snapshotJSON(rt)
		for _, v := range values {
			for table, text := range dump {
				for _, f := range leakForms(v) {
					if strings.Contains(text, f) {
						rt.Fatalf("target table %s holds the plaintext %q", table, v)
					}
				}
			}
		}
	})
}

// snapshotJSON is every row of every public table of the target as JSON
// (bytea as \x hex).
func (tg *target) snapshotJSON(rt *rapid.T) map[string]string {
	ctx := context.Background()
	rows, err := tg.conn.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)
	if err != nil {
		rt.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		rt.Fatal(err)
	}
	out := map[string]string{}
	for _, tb := range tables {
		var s *string
		q := fmt.Sprintf(`SELECT string_agg(row_to_json(t)::text, E'\n') FROM %s t`, pgx.Identifier{tb}.Sanitize())
		if err := tg.conn.QueryRow(ctx, q).Scan(&s); err != nil {
			rt.Fatal(err)
		}
		if s != nil {
			out[tb] = *s
		}
	}
	return out
}
