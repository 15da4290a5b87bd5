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

// TestDiscordGrantsCLI lists a guild's role grants from the command line:
// all, by status, as JSON, a page at a time; a bad status is exit 1.
func TestDiscordGrantsCLI(t *testing.T) {
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
	const guild = "100000000000000001"
	var owner, server string
	if err := conn.QueryRow(ctx, `INSERT INTO users (email) VALUES ('seller@example.com') RETURNING id`).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `INSERT INTO discord_servers (guild_id, owner_id) VALUES ($1, $2) RETURNING id`, guild, owner).Scan(&server); err != nil {
		t.Fatal(err)
	}
	for i, state := range []string{"failed", "pending", "done"} {
		if _, err := conn.Exec(ctx, `INSERT INTO bot_role_grants (discord_server_id, guild_id, discord_user_id, role_id, action, state, attempts, last_status, command, created_at)
			VALUES ($1, $2, '200000000000000003', '300000000000000002', 'add', $3, 6, 403, 'redeem', now() - make_interval(secs => $4))`, server, guild, state, i); err != nil {
			t.Fatal(err)
		}
	}
	env := baseEnv("DATABASE_URL="+url, "KEYRING_MASTER_KEY_FILE="+key)

	r := run(t, dir, env, "discord", "grants", guild)
	if r.code != 0 || strings.Count(r.stdout, "300000000000000002") != 3 || !strings.Contains(r.stdout, "failed") || !strings.Contains(r.stdout, "403") {
		t.Fatalf("discord grants: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, dir, env, "discord", "grants", guild, "--status", "failed", "--json")
	var page struct {
		Items []struct {
			State      string
			LastStatus int
		}
		NextCursor *string
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &page) != nil || len(page.Items) != 1 || page.Items[0].State != "failed" || page.Items[0].LastStatus != 403 || page.NextCursor != nil {
		t.Fatalf("discord grants --status failed --json: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, dir, env, "discord", "grants", guild, "--limit", "2", "--json")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &page) != nil || len(page.Items) != 2 || page.NextCursor == nil {
		t.Fatalf("discord grants --limit 2: exit %d, stdout %q", r.code, r.stdout)
	}
	r = run(t, dir, env, "discord", "grants", guild, "--limit", "2", "--cursor", *page.NextCursor)
	// Newest first: the failed and pending grants, then the done one.
	if r.code != 0 || strings.Count(r.stdout, "300000000000000002") != 1 || !strings.Contains(r.stdout, "done") {
		t.Fatalf("discord grants second page: exit %d, stdout %q", r.code, r.stdout)
	}
	r = run(t, dir, env, "discord", "grants", guild, "--status", "owed")
	if r.code != 1 || !strings.Contains(r.stderr, "status: must be pending, failed or done") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("bad status: exit %d, stderr %q; want exit 1 and one line", r.code, r.stderr)
	}
	if r = run(t, dir, env, "discord", "grants"); r.code != 2 {
		t.Errorf("no guild: exit %d, want 2", r.code)
	}
}
