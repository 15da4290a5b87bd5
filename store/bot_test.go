package store_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// botGuild registers a guild with a whitelist system and returns it.
func botGuild(t *testing.T, db *store.DB, bot *store.Bot) (store.DiscordServer, string) {
	t.Helper()
	ctx := context.Background()
	u, err := db.CreateUser(ctx, store.NewUser{Email: "bot@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	var system string
	if err := db.Pool.QueryRow(ctx, `INSERT INTO whitelist_systems (owner_id, name) VALUES ($1, 's') RETURNING id`, u.ID).Scan(&system); err != nil {
		t.Fatal(err)
	}
	s, err := bot.CreateDiscordServer(ctx, store.NewDiscordServer{GuildID: "1", OwnerID: u.ID, WhitelistSystemID: &system})
	if err != nil {
		t.Fatal(err)
	}
	return s, u.ID
}

// TestConcurrentBotAddsOfOneMember: however many adds of one member race,
// exactly one is recorded and the others are ErrConflict.
func TestConcurrentBotAddsOfOneMember(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	bot := store.NewBot(db, keyringtest.New(t, db.Pool))
	srv, _ := botGuild(t, db, bot)
	const n = 6
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = bot.AddBotWhitelist(context.Background(), store.BotWhitelistAdd{
				Server: srv, DiscordUserID: "42", RobloxUserID: int64(1000 + i), RobloxUsername: "p" + strconv.Itoa(i),
				WhitelistedBy: "7", LicenseKey: "VB-" + strconv.Itoa(i),
			}, func(context.Context) error { return nil })
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("AddBotWhitelist err = %v, want nil or ErrConflict", err)
		}
	}
	var rows, entries int
	_ = db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM bot_whitelisted_users`).Scan(&rows)
	_ = db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM whitelist_users`).Scan(&entries)
	if ok != 1 || rows != 1 || entries != 1 {
		t.Fatalf("successes %d, bot rows %d, entries %d; want 1, 1, 1", ok, rows, entries)
	}
}

// TestConcurrentRedeemsOfOneKey: of members redeeming one key at once,
// exactly one gets it and the others ErrAlreadyRedeemed.
func TestConcurrentRedeemsOfOneKey(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	bot := store.NewBot(db, kr)
	srv, owner := botGuild(t, db, bot)
	rid := int64(5)
	if _, err := store.NewMarketplace(db, kr).CreateWhitelistUser(context.Background(), owner, *srv.WhitelistSystemID, store.WhitelistUserFields{RobloxUserID: &rid}, "VB-KEY"); err != nil {
		t.Fatal(err)
	}
	const n = 6
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = bot.Redeem(context.Background(), srv, "VB-KEY", strconv.Itoa(100+i), nil, store.GrantInteraction{}, func(context.Context) error { return nil })
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrAlreadyRedeemed):
			t.Errorf("Redeem err = %v, want nil or ErrAlreadyRedeemed", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d redemptions succeeded, want 1", ok)
	}
	if _, err := bot.Redeem(context.Background(), srv, "VB-NONE", "9", nil, store.GrantInteraction{}, func(context.Context) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown key err = %v, want ErrNotFound", err)
	}
}

func TestBotAddRollsBackWhenBeforeCommitFails(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	bot := store.NewBot(db, keyringtest.New(t, db.Pool))
	srv, _ := botGuild(t, db, bot)
	refused := errors.New("discord refused")
	_, err := bot.AddBotWhitelist(context.Background(), store.BotWhitelistAdd{Server: srv, DiscordUserID: "42", RobloxUserID: 1, LicenseKey: "VB-1"},
		func(context.Context) error { return refused })
	if !errors.Is(err, refused) {
		t.Fatalf("err = %v, want the callback's error", err)
	}
	var n int
	_ = db.Pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM bot_whitelisted_users) + (SELECT count(*) FROM whitelist_users)`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d rows left after a failed add", n)
	}
}
