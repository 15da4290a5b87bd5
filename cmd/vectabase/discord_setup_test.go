package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TestDiscordSetupCLI sets a guild up from the command line as the local
// operator: link it to a store, choose its whitelist system, bind a
// product and its role, add a rule, list, remove; every change audited.
func TestDiscordSetupCLI(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	dir := tempDir(t)
	key := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var owner, storeID, productID, systemID string
	if err := conn.QueryRow(ctx, `INSERT INTO users (email) VALUES ('seller@example.com') RETURNING id`).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `INSERT INTO stores (owner_id, name, slug) VALUES ($1, 'Shop', 'shop') RETURNING id`, owner).Scan(&storeID); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `INSERT INTO products (store_id, name, price_cents) VALUES ($1, 'Admin Script', 500) RETURNING id`, storeID).Scan(&productID); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `INSERT INTO whitelist_systems (owner_id, store_id, name) VALUES ($1, $2, 'Main') RETURNING id`, owner, storeID).Scan(&systemID); err != nil {
		t.Fatal(err)
	}
	env := baseEnv("DATABASE_URL="+url, "KEYRING_MASTER_KEY_FILE="+key)
	const guild, role = "100000000000000001", "300000000000000002"
	ok := func(want string, args ...string) string {
		t.Helper()
		r := run(t, dir, env, args...)
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Fatalf("vectabase %s: exit %d, stdout %q, stderr %q; want output holding %q", strings.Join(args, " "), r.code, r.stdout, r.stderr, want)
		}
		return r.stdout
	}
	ok(`"outcome": "created"`, "discord", "servers", "add", guild, "--store", storeID, "--name", "Builders", "--json")
	ok(guild, "discord", "servers", "list")
	ok(`"whitelistSystemId": "`+systemID+`"`, "discord", "servers", "set-system", guild, "--system", systemID, "--json")
	var bound struct{ ID, ProductName, RoleID string }
	if err := json.Unmarshal([]byte(ok(`"productName": "Admin Script"`, "discord", "products", "add", guild, "--product", productID, "--role", role, "--json")), &bound); err != nil || bound.RoleID != role {
		t.Fatalf("products add --json = %+v, %v", bound, err)
	}
	ok("Admin Script", "discord", "products", "list", guild)
	var rule struct{ ID, Command string }
	if err := json.Unmarshal([]byte(ok(`"command": "redeem"`, "discord", "permissions", "add", guild, "--command", "/Redeem", "--role", guild, "--json")), &rule); err != nil {
		t.Fatal(err)
	}
	ok("redeem", "discord", "permissions", "list", guild)

	// Refusals: one line on stderr, exit 1 (bad input) or 2 (bad usage).
	for _, c := range []struct {
		code int
		want string
		args []string
	}{
		{1, "command: must be one of", []string{"discord", "permissions", "add", guild, "--command", "ban", "--role", role}},
		{1, "roleId", []string{"discord", "products", "add", guild, "--product", productID, "--role", "not-a-role"}},
		{1, "no such Discord server", []string{"discord", "products", "list", "100000000000000009"}},
		{2, "needs --store", []string{"discord", "servers", "add", guild}},
	} {
		r := run(t, dir, env, c.args...)
		if r.code != c.code || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("vectabase %s: exit %d, stderr %q; want exit %d naming %q", strings.Join(c.args, " "), r.code, r.stderr, c.code, c.want)
		}
	}

	ok("removed rule", "discord", "permissions", "remove", guild, rule.ID)
	ok("removed binding", "discord", "products", "remove", guild, bound.ID)
	ok("removed guild", "discord", "servers", "remove", guild)

	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE actor_type = 'local-operator' AND action LIKE 'discord.%' AND result = 'success'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 7 {
		t.Errorf("audited discord set-up changes = %d, want 7", n)
	}
	ok("audit log OK", "audit", "verify")
}
