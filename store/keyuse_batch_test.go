package store_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TestProperty9_ConcurrentKeyUsesCountOnceEach claims, for the batching of
// concurrent uses of one API key: whatever the number of concurrent uses
// (and however they fall into batches), each use counts exactly once and
// gets its own place in the window: the counts handed out are exactly
// 1..n, so no more than the limit are allowed, and the stored counter is n.
func TestProperty9_ConcurrentKeyUsesCountOnceEach(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	m := store.NewMarketplace(db, keyringtest.New(t, db.Pool))
	u, err := db.CreateUser(ctx, store.NewUser{Email: "batch@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	rapid.Check(t, func(rt *rapid.T) {
		keys++
		hash := []byte{byte(keys), byte(keys >> 8), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30}
		limit := rapid.IntRange(1, 40).Draw(rt, "limit")
		n := rapid.IntRange(1, 60).Draw(rt, "uses")
		if _, err := m.CreateAPIKey(ctx, store.NewAPIKey{DeveloperID: u.ID, Name: "k", Hash: hash, Prefix: "vb_live_test", RateLimitPerMinute: limit}); err != nil {
			rt.Fatal(err)
		}
		counts := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ku, err := m.UseAPIKey(ctx, hash)
				if err != nil {
					rt.Errorf("UseAPIKey err = %v", err)
					return
				}
				counts[i] = ku.Count
			}()
		}
		wg.Wait()
		var windows, stored int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(r.count), 0) FROM api_rate_limits r
			JOIN developer_api_keys k ON k.id = r.api_key_id WHERE k.key_hash = $1`, hash).Scan(&windows, &stored); err != nil {
			rt.Fatal(err)
		}
		if stored != n {
			rt.Fatalf("stored counters add up to %d, want %d", stored, n)
		}
		if windows != 1 {
			return // the minute turned during the uses: two windows, each counted on its own
		}
		slices.Sort(counts)
		allowed := 0
		for i, c := range counts {
			if c != i+1 {
				rt.Fatalf("counts handed out %v, want 1..%d", counts, n)
			}
			if c <= limit {
				allowed++
			}
		}
		if allowed != min(n, limit) {
			rt.Fatalf("%d allowed, want %d", allowed, min(n, limit))
		}
	})
}

// Concurrent whitelist checks with one key, batched into shared
// statements, each get their own answer: by player and by license key,
// listed or not, and never from another developer's systems.
func TestBatchedChecksAnswerEachQuery(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	m := store.NewMarketplace(db, keyringtest.New(t, db.Pool))
	dev, err := db.CreateUser(ctx, store.NewUser{Email: "dev@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := db.CreateUser(ctx, store.NewUser{Email: "other@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	name := "s"
	sys, err := m.CreateWhitelistSystem(ctx, dev.ID, store.WhitelistSystemFields{Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	otherSys, err := m.CreateWhitelistSystem(ctx, other.ID, store.WhitelistSystemFields{Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[int64]string{}
	for p := int64(1); p <= 10; p++ {
		key := "LIC-" + string(rune('A'+p))
		if _, err := m.CreateWhitelistUser(ctx, dev.ID, sys.ID, store.WhitelistUserFields{RobloxUserID: &p}, key); err != nil {
			t.Fatal(err)
		}
		listed[p] = key
	}
	foreign := int64(99)
	if _, err := m.CreateWhitelistUser(ctx, other.ID, otherSys.ID, store.WhitelistUserFields{RobloxUserID: &foreign}, "LIC-FOREIGN"); err != nil {
		t.Fatal(err)
	}
	hash := make([]byte, 32)
	hash[0] = 0xcc
	if _, err := m.CreateAPIKey(ctx, store.NewAPIKey{DeveloperID: dev.ID, Name: "k", Hash: hash, Prefix: "vb_live_test", RateLimitPerMinute: 100000}); err != nil {
		t.Fatal(err)
	}
	index := func(k string) []byte {
		b, err := m.LicenseKeyIndex(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type probe struct {
		q    store.CheckQuery
		want bool
	}
	var probes []probe
	for p := int64(1); p <= 14; p++ { // 11..14 are not listed
		_, ok := listed[p]
		probes = append(probes, probe{store.CheckQuery{SystemID: sys.ID, RobloxUserID: p}, ok})
		if ok {
			probes = append(probes, probe{store.CheckQuery{LicenseIndex: index(listed[p])}, true})
		}
	}
	probes = append(probes,
		probe{store.CheckQuery{LicenseIndex: index("LIC-NOPE")}, false},
		probe{store.CheckQuery{LicenseIndex: index("LIC-FOREIGN")}, false},           // another developer's key
		probe{store.CheckQuery{SystemID: otherSys.ID, RobloxUserID: foreign}, false}, // another developer's system
	)
	for round := 0; round < 5; round++ {
		var wg sync.WaitGroup
		for _, p := range probes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, r, err := m.UseAPIKeyAndCheck(ctx, hash, p.q)
				if err != nil {
					t.Errorf("UseAPIKeyAndCheck(%+v) err = %v", p.q, err)
					return
				}
				if r.Whitelisted != p.want {
					t.Errorf("UseAPIKeyAndCheck(%+v) whitelisted = %v, want %v", p.q, r.Whitelisted, p.want)
				}
			}()
		}
		wg.Wait()
	}
}

// The statement behind /api/whitelist/check runs at every game server's
// request: it must settle on PostgreSQL's cached generic plan instead of
// being planned again on each call (planning it cost five times its
// execution). After a few calls on one connection, its prepared statement
// has a generic plan and stopped making custom ones.
func TestCheckStatementKeepsAGenericPlan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Config{URL: pgtest.URL(t), MaxConns: 1}, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	m := store.NewMarketplace(db, keyringtest.New(t, db.Pool))
	dev, err := db.CreateUser(ctx, store.NewUser{Email: "plan@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	name := "s"
	sys, err := m.CreateWhitelistSystem(ctx, dev.ID, store.WhitelistSystemFields{Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	hash := make([]byte, 32)
	hash[0] = 0xdd
	if _, err := m.CreateAPIKey(ctx, store.NewAPIKey{DeveloperID: dev.ID, Name: "k", Hash: hash, Prefix: "vb_live_test", RateLimitPerMinute: 100000}); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if _, _, err := m.UseAPIKeyAndCheck(ctx, hash, store.CheckQuery{SystemID: sys.ID, RobloxUserID: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	var generic, custom int64
	err = db.Pool.QueryRow(ctx, `SELECT generic_plans, custom_plans FROM pg_prepared_statements
		WHERE statement LIKE '%WITH ORDINALITY%' AND statement LIKE '%api_rate_limits%'`).Scan(&generic, &custom)
	if err != nil {
		t.Fatalf("the check statement is not among the connection's prepared statements: %v", err)
	}
	if generic == 0 || custom > 6 {
		t.Fatalf("after 12 checks: %d generic and %d custom plans; want the generic plan in use", generic, custom)
	}
}
