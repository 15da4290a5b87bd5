package discord

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TestProperty35_BatchedStatusReadsAnswerEachMemberAlone: however many
// /whitelist check look-ups run at once and however they fall into
// batches (duplicates, guilds with and without a whitelist system,
// members with several records, products or entries), each gets exactly
// the status a read of that member alone gives, and its record count is
// the table's. Rapid's default 100 runs.
func TestProperty35_BatchedStatusReadsAnswerEachMemberAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	repo := store.NewBot(db, kr)
	mk := store.NewMarketplace(db, kr)
	var owner, storeID string
	if err := db.Pool.QueryRow(ctx, `INSERT INTO users (email) VALUES ('p35@example.com') RETURNING id`).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `INSERT INTO stores (owner_id, name, slug) VALUES ($1, 's', 'p35') RETURNING id`, owner).Scan(&storeID); err != nil {
		t.Fatal(err)
	}
	var guildSeq, robloxSeq atomic.Int64
	b := newStatusBatcher(repo.BotWhitelistStatuses)
	b.maxBatch = 4 // small batches, so a run spans several
	rapid.Check(t, func(rt *rapid.T) {
		// Two guilds, the second maybe without a whitelist system.
		var queries []store.StatusQuery
		var servers []store.DiscordServer
		for g := range 2 {
			var sys *string
			if g == 0 || rapid.Bool().Draw(rt, "hasSystem") {
				var id string
				if err := db.Pool.QueryRow(ctx, `INSERT INTO whitelist_systems (owner_id, name) VALUES ($1, 'w') RETURNING id`, owner).Scan(&id); err != nil {
					rt.Fatal(err)
				}
				sys = &id
			}
			srv, err := repo.CreateDiscordServer(ctx, store.NewDiscordServer{GuildID: fmt.Sprint(guildSeq.Add(1)), OwnerID: owner, StoreID: &storeID, WhitelistSystemID: sys})
			if err != nil {
				rt.Fatal(err)
			}
			servers = append(servers, srv)
		}
		var products []string
		for i := range rapid.IntRange(0, 2).Draw(rt, "products") {
			var pid, bp string
			if err := db.Pool.QueryRow(ctx, `INSERT INTO products (store_id, name, price_cents) VALUES ($1, $2, 100) RETURNING id`, storeID, fmt.Sprintf("prod %d", i)).Scan(&pid); err != nil {
				rt.Fatal(err)
			}
			if err := db.Pool.QueryRow(ctx, `INSERT INTO bot_products (discord_server_id, product_id) VALUES ($1, $2) RETURNING id`, servers[0].ID, pid).Scan(&bp); err != nil {
				rt.Fatal(err)
			}
			products = append(products, bp)
		}
		members := rapid.IntRange(1, 5).Draw(rt, "members")
		for m := range members {
			user := fmt.Sprint(9000 + m)
			for _, srv := range servers {
				// Records: none, one without product, or one per product.
				for r := range rapid.IntRange(0, 1+len(products)).Draw(rt, "records") {
					var prod *string
					if r > 0 {
						prod = &products[r-1]
					}
					if _, err := db.Pool.Exec(ctx, `INSERT INTO bot_whitelisted_users (discord_server_id, bot_product_id, discord_user_id, roblox_user_id)
						VALUES ($1, $2, $3, $4)`, srv.ID, prod, user, rapid.Int64Range(1, 1e9).Draw(rt, "roblox")); err != nil {
						rt.Fatal(err)
					}
				}
				if srv.WhitelistSystemID != nil {
					for range rapid.IntRange(0, 2).Draw(rt, "entries") {
						rid := robloxSeq.Add(1)
						name := fmt.Sprintf("player%d", rid)
						if _, err := mk.CreateWhitelistUser(ctx, owner, *srv.WhitelistSystemID, store.WhitelistUserFields{RobloxUserID: &rid, RobloxUsername: &name, DiscordID: &user}, fmt.Sprintf("VB-%d", rid)); err != nil {
							rt.Fatal(err)
						}
					}
				}
				queries = append(queries, store.StatusQuery{ServerID: srv.ID, SystemID: srv.WhitelistSystemID, DiscordUserID: user})
			}
		}
		// Look-ups at once, with repeats and a member nobody recorded.
		picks := rapid.SliceOfN(rapid.IntRange(0, len(queries)), 1, 12).Draw(rt, "picks")
		got := make([]store.MemberStatus, len(picks))
		errs := make([]error, len(picks))
		pq := make([]store.StatusQuery, len(picks))
		var wg sync.WaitGroup
		for i, p := range picks {
			if p == len(queries) {
				pq[i] = store.StatusQuery{ServerID: servers[0].ID, SystemID: servers[0].WhitelistSystemID, DiscordUserID: "1"}
			} else {
				pq[i] = queries[p]
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], errs[i] = b.get(ctx, pq[i])
			}()
		}
		wg.Wait()
		for i, q := range pq {
			if errs[i] != nil {
				rt.Fatalf("get(%v) err = %v, want nil", q, errs[i])
			}
			alone, err := repo.BotWhitelistStatus(ctx, q)
			if err != nil {
				rt.Fatal(err)
			}
			if diff := cmp.Diff(alone, got[i]); diff != "" {
				rt.Fatalf("batched status of %v differs from a read alone (-want +got):\n%s", q, diff)
			}
			var n int
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM bot_whitelisted_users WHERE discord_server_id = $1 AND discord_user_id = $2`, q.ServerID, q.DiscordUserID).Scan(&n); err != nil {
				rt.Fatal(err)
			}
			if got[i].Records != n {
				rt.Fatalf("status of %v has %d records, the table %d", q, got[i].Records, n)
			}
		}
	})
}

// A statement that hangs (a lock, a slow disk) must not hold every later
// /whitelist check of the instance behind it past Discord's 3 seconds:
// once the batch in flight has waited the stall time, a waiting look-up
// starts a batch of its own, and no more than maxStalled run at once.
func TestStalledStatusReadDoesNotHoldLaterChecks(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 16)
	var inFlight, peak atomic.Int32
	read := func(ctx context.Context, qs []store.StatusQuery) ([]store.MemberStatus, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		started <- struct{}{}
		if qs[0].DiscordUserID == "stuck" {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		out := make([]store.MemberStatus, len(qs))
		for i, q := range qs {
			out[i].Records = len(q.DiscordUserID)
		}
		return out, nil
	}
	b := newStatusBatcher(read)
	b.stall = 20 * time.Millisecond
	b.maxStalled = 3

	stuck := make(chan store.MemberStatus, 1)
	go func() {
		st, _ := b.get(context.Background(), store.StatusQuery{DiscordUserID: "stuck"})
		stuck <- st
	}()
	<-started
	// A look-up arriving while the batch hangs: it is answered although
	// the first read never returns.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := b.get(ctx, store.StatusQuery{DiscordUserID: "later"})
	if err != nil {
		t.Fatalf("a check behind a stalled batch: %v, want its answer", err)
	}
	if st.Records != len("later") {
		t.Fatalf("answer %+v, want the look-up's own", st)
	}
	// More hanging look-ups: at most maxStalled batches in flight.
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = b.get(context.Background(), store.StatusQuery{DiscordUserID: "stuck"})
		}()
		time.Sleep(30 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	if got := <-stuck; got.Records != len("stuck") {
		t.Fatalf("the stalled look-up got %+v", got)
	}
	if p := peak.Load(); p > 3 {
		t.Fatalf("%d batches in flight at once, want at most maxStalled (3)", p)
	}
}
