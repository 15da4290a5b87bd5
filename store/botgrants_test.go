package store_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TestProperty36_GrantPagesListEachGrantOnce: whatever the grants of a
// guild (states, creation times with ties), the status filter and the page
// size, following nextCursor from the first page lists exactly the
// guild's grants in that status, each once, newest first (ties by id), and
// none of another guild. Rapid's default 100 runs.
func TestProperty36_GrantPagesListEachGrantOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	bot := store.NewBot(db, keyringtest.New(t, db.Pool))
	u, err := db.CreateUser(ctx, store.NewUser{Email: "p36@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	var guilds atomic.Int64
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rapid.Check(t, func(rt *rapid.T) {
		var servers [2]store.DiscordServer
		for i := range servers {
			if servers[i], err = bot.CreateDiscordServer(ctx, store.NewDiscordServer{GuildID: fmt.Sprint(guilds.Add(1)), OwnerID: u.ID}); err != nil {
				rt.Fatal(err)
			}
		}
		type grant struct {
			id, state string
			at        time.Time
		}
		var mine []grant
		for range rapid.IntRange(0, 25).Draw(rt, "grants") {
			srv := servers[rapid.IntRange(0, 1).Draw(rt, "server")]
			state := rapid.SampledFrom([]string{store.GrantPending, store.GrantFailed, store.GrantDone}).Draw(rt, "state")
			at := base.Add(time.Duration(rapid.IntRange(0, 4).Draw(rt, "second")) * time.Second)
			var id string
			if err := db.Pool.QueryRow(ctx, `INSERT INTO bot_role_grants (discord_server_id, guild_id, discord_user_id, role_id, action, state, command, created_at)
				VALUES ($1, $2, '7', '8', 'add', $3, 'redeem', $4) RETURNING id`, srv.ID, srv.GuildID, state, at).Scan(&id); err != nil {
				rt.Fatal(err)
			}
			if srv.ID == servers[0].ID {
				mine = append(mine, grant{id, state, at})
			}
		}
		status := rapid.SampledFrom([]string{"", store.GrantPending, store.GrantFailed, store.GrantDone}).Draw(rt, "status")
		limit := rapid.IntRange(1, 7).Draw(rt, "limit")
		var want []string
		slices.SortFunc(mine, func(a, b grant) int {
			if c := b.at.Compare(a.at); c != 0 {
				return c
			}
			return strings.Compare(b.id, a.id)
		})
		for _, g := range mine {
			if status == "" || g.state == status {
				want = append(want, g.id)
			}
		}
		var got []string
		p := store.Page{Limit: limit}
		for pages := 0; ; pages++ {
			if pages > 30 {
				rt.Fatalf("more than 30 pages of %d for %d grants", limit, len(want))
			}
			items, next, err := bot.ListGrants(ctx, servers[0].ID, status, p)
			if err != nil {
				rt.Fatal(err)
			}
			if len(items) > limit {
				rt.Fatalf("page of %d items, limit %d", len(items), limit)
			}
			for _, g := range items {
				if status != "" && g.State != status {
					rt.Fatalf("grant in state %s listed for status %s", g.State, status)
				}
				got = append(got, g.ID)
			}
			if next == nil {
				break
			}
			p.After = next
		}
		if diff := cmp.Diff(want, got); diff != "" {
			rt.Fatalf("paged grants (-want +got):\n%s", diff)
		}
	})
}
