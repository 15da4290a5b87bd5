package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// The check answers for both kinds of license: a developer product's
// (whitelist_entries, as the importer and purchases write them) and a
// whitelist system's, by key or by player, comparing a reported hardware id
// with a bound one, and saying why a license does not whitelist. A key tied
// to a developer product sees that product's licenses and not its other
// products'; every key of a developer sees its whitelist systems.
func TestLicenseCheckAnswersForBothKinds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	m := store.NewMarketplace(db, kr)
	dev, err := db.CreateUser(ctx, store.NewUser{Email: "dev@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := db.CreateUser(ctx, store.NewUser{Email: "other@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	product := func(owner string) string {
		var id string
		if err := db.Pool.QueryRow(ctx, `INSERT INTO developer_products (developer_id, name) VALUES ($1, 'p') RETURNING id`, owner).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	p1, p2, foreign := product(dev.ID), product(dev.ID), product(other.ID)
	entry := func(productID string, player int64, key, status, hwid string, expires *time.Time) {
		t.Helper()
		id := uuid.NewString()
		ct, err := kr.Encrypt(ctx, keyring.Location{Table: "whitelist_entries", Column: "license_key", RowID: id}, []byte(key))
		if err != nil {
			t.Fatal(err)
		}
		bidx, err := kr.BlindIndex("whitelist_entries", "license_key", []byte(key))
		if err != nil {
			t.Fatal(err)
		}
		var hct, hidx []byte
		if hwid != "" {
			if hct, err = kr.Encrypt(ctx, keyring.Location{Table: "whitelist_entries", Column: "hwid", RowID: id}, []byte(hwid)); err != nil {
				t.Fatal(err)
			}
			if hidx, err = kr.BlindIndex("whitelist_entries", "hwid", []byte(hwid)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.Pool.Exec(ctx, `INSERT INTO whitelist_entries (id, developer_product_id, roblox_user_id, license_key, license_key_bidx, hwid, hwid_bidx, status, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, id, productID, player, ct, bidx, hct, hidx, status, expires); err != nil {
			t.Fatal(err)
		}
	}
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	entry(p1, 1, "K-ONE", "active", "HW-1", &future)
	entry(p1, 2, "K-TWO", "revoked", "", nil)
	entry(p1, 3, "K-THREE", "active", "", &past)
	entry(p1, 4, "K-FOUR", "expired", "", nil)
	entry(p2, 1, "K-P2", "active", "", nil)
	entry(foreign, 1, "K-FOREIGN", "active", "", nil)
	name := "s"
	sys, err := m.CreateWhitelistSystem(ctx, dev.ID, store.WhitelistSystemFields{Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	five := int64(5)
	if _, err := m.CreateWhitelistUser(ctx, dev.ID, sys.ID, store.WhitelistUserFields{RobloxUserID: &five}, "K-SYS"); err != nil {
		t.Fatal(err)
	}
	keyAll, keyP1 := make([]byte, 32), make([]byte, 32)
	keyAll[0], keyP1[0] = 0xa1, 0xa2
	if _, err := m.CreateAPIKey(ctx, store.NewAPIKey{DeveloperID: dev.ID, Name: "all", Hash: keyAll, Prefix: "vb_live_all", RateLimitPerMinute: 100000}); err != nil {
		t.Fatal(err)
	}
	k1, err := m.CreateAPIKey(ctx, store.NewAPIKey{DeveloperID: dev.ID, Name: "p1", Hash: keyP1, Prefix: "vb_live_p1", RateLimitPerMinute: 100000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE developer_api_keys SET developer_product_id = $2 WHERE id = $1`, k1.ID, p1); err != nil {
		t.Fatal(err)
	}

	byKey := func(k, hwid string) store.CheckQuery {
		q, err := m.KeyCheck(k)
		if err != nil {
			t.Fatal(err)
		}
		if hwid != "" {
			if err := m.SetHWID(&q, hwid); err != nil {
				t.Fatal(err)
			}
		}
		return q
	}
	type probe struct {
		name   string
		key    []byte
		q      store.CheckQuery
		reason string // "" whitelisted
	}
	probes := []probe{
		{"active key", keyAll, byKey("K-ONE", ""), ""},
		{"key typed in lowercase", keyAll, byKey(" k-one ", ""), ""},
		{"right hwid", keyAll, byKey("K-ONE", "HW-1"), ""},
		{"wrong hwid", keyAll, byKey("K-ONE", "HW-2"), store.CheckReasonHWIDMismatch},
		{"unbound license, any hwid", keyAll, byKey("K-P2", "HW-9"), ""},
		{"revoked", keyAll, byKey("K-TWO", ""), store.CheckReasonRevoked},
		{"expiry passed", keyAll, byKey("K-THREE", ""), store.CheckReasonExpired},
		{"status expired", keyAll, byKey("K-FOUR", ""), store.CheckReasonExpired},
		{"another developer's", keyAll, byKey("K-FOREIGN", ""), store.CheckReasonNotFound},
		{"by product and player", keyAll, store.CheckQuery{ProductID: p2, RobloxUserID: 1}, ""},
		{"by product, revoked player", keyAll, store.CheckQuery{ProductID: p1, RobloxUserID: 2}, store.CheckReasonRevoked},
		{"another developer's product", keyAll, store.CheckQuery{ProductID: foreign, RobloxUserID: 1}, store.CheckReasonNotFound},
		{"system license by key", keyAll, byKey("K-SYS", ""), ""},
		{"system license by player", keyAll, store.CheckQuery{SystemID: sys.ID, RobloxUserID: 5}, ""},
		{"product key: its product", keyP1, byKey("K-ONE", ""), ""},
		{"product key: its product by player", keyP1, store.CheckQuery{ProductID: p1, RobloxUserID: 1}, ""},
		{"product key: another product", keyP1, byKey("K-P2", ""), store.CheckReasonNotFound},
		{"product key: another product by player", keyP1, store.CheckQuery{ProductID: p2, RobloxUserID: 1}, store.CheckReasonNotFound},
		{"product key: its developer's system", keyP1, byKey("K-SYS", ""), ""},
	}
	check := func(p probe) {
		_, r, err := m.UseAPIKeyAndCheck(ctx, p.key, p.q)
		if err != nil {
			t.Errorf("%s: UseAPIKeyAndCheck err = %v", p.name, err)
			return
		}
		if r.Whitelisted != (p.reason == "") || (p.reason != "" && r.Reason != p.reason) {
			t.Errorf("%s: whitelisted %v reason %q, want whitelisted %v reason %q", p.name, r.Whitelisted, r.Reason, p.reason == "", p.reason)
		}
	}
	for _, p := range probes {
		check(p)
	}
	// Concurrent checks share statements (keyUseBatcher); each still gets
	// its own answer.
	var wg sync.WaitGroup
	for range 3 {
		for _, p := range probes {
			wg.Add(1)
			go func() { defer wg.Done(); check(p) }()
		}
	}
	wg.Wait()
}

// TestProperty24_CheckAgreesWithTheLicenseModel claims: for generated
// developer-product licenses (status, expiry, hardware id, product, owner)
// and generated checks (by key or by product and player, with or without a
// hardware id, through a key tied to a product or not), the check answers
// what the model says: whitelisted exactly when a license the key may see
// matches, is active, unexpired and not bound to another hardware id, and
// otherwise the model's reason. 100 runs (rapid's default).
func TestProperty24_CheckAgreesWithTheLicenseModel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	m := store.NewMarketplace(db, kr)
	dev, err := db.CreateUser(ctx, store.NewUser{Email: "model@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := db.CreateUser(ctx, store.NewUser{Email: "model-other@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	type license struct {
		product       int
		player        int64
		key, status   string
		hwid          string
		expired, ends bool
	}
	rapid.Check(t, func(rt *rapid.T) {
		owners := []string{dev.ID, dev.ID, other.ID}
		products := make([]string, len(owners))
		for i, o := range owners {
			if err := db.Pool.QueryRow(ctx, `INSERT INTO developer_products (developer_id, name) VALUES ($1, 'p') RETURNING id`, o).Scan(&products[i]); err != nil {
				rt.Fatal(err)
			}
		}
		var lics []license
		taken := map[[2]int64]bool{}
		for i := range rapid.IntRange(0, 6).Draw(rt, "licenses") {
			l := license{
				product: rapid.IntRange(0, 2).Draw(rt, "product"),
				player:  int64(rapid.IntRange(1, 3).Draw(rt, "player")),
				key:     strings.ToUpper("K-" + uuid.NewString()[:8] + "-" + string(rune('A'+i))),
				status:  rapid.SampledFrom([]string{"active", "active", "revoked", "expired", "suspended"}).Draw(rt, "status"),
				hwid:    rapid.SampledFrom([]string{"", "HW-A", "HW-B"}).Draw(rt, "hwid"),
			}
			if k := [2]int64{int64(l.product), l.player}; taken[k] {
				continue // one license per product and player (entries made by hand or imported)
			} else {
				taken[k] = true
			}
			switch rapid.IntRange(0, 2).Draw(rt, "expiry") {
			case 1:
				l.ends = true
			case 2:
				l.ends, l.expired = true, true
			}
			id := uuid.NewString()
			ct, _ := kr.Encrypt(ctx, keyring.Location{Table: "whitelist_entries", Column: "license_key", RowID: id}, []byte(l.key))
			bidx, _ := kr.BlindIndex("whitelist_entries", "license_key", []byte(l.key))
			var hct, hidx []byte
			if l.hwid != "" {
				hct, _ = kr.Encrypt(ctx, keyring.Location{Table: "whitelist_entries", Column: "hwid", RowID: id}, []byte(l.hwid))
				hidx, _ = kr.BlindIndex("whitelist_entries", "hwid", []byte(l.hwid))
			}
			var expires *time.Time
			if l.ends {
				at := time.Now().Add(time.Hour)
				if l.expired {
					at = time.Now().Add(-time.Hour)
				}
				expires = &at
			}
			if _, err := db.Pool.Exec(ctx, `INSERT INTO whitelist_entries (id, developer_product_id, roblox_user_id, license_key, license_key_bidx, hwid, hwid_bidx, status, expires_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, id, products[l.product], l.player, ct, bidx, hct, hidx, l.status, expires); err != nil {
				rt.Fatal(err)
			}
			lics = append(lics, l)
		}
		keyProduct := rapid.IntRange(-1, 1).Draw(rt, "keyProduct") // -1: a key with no product
		hash := make([]byte, 32)
		copy(hash, uuid.New().NodeID())
		copy(hash[6:], []byte(uuid.NewString()))
		k, err := m.CreateAPIKey(ctx, store.NewAPIKey{DeveloperID: dev.ID, Name: "k", Hash: hash, Prefix: "vb_live_prop", RateLimitPerMinute: 1 << 30})
		if err != nil {
			rt.Fatal(err)
		}
		if keyProduct >= 0 {
			if _, err := db.Pool.Exec(ctx, `UPDATE developer_api_keys SET developer_product_id = $2 WHERE id = $1`, k.ID, products[keyProduct]); err != nil {
				rt.Fatal(err)
			}
		}
		visible := func(l license) bool {
			return owners[l.product] == dev.ID && (keyProduct < 0 || keyProduct == l.product)
		}
		reason := func(l license, hwid string) string {
			switch {
			case l.status == "expired" || (l.status == "active" && l.expired):
				return store.CheckReasonExpired
			case l.status != "active":
				return store.CheckReasonRevoked
			case hwid != "" && l.hwid != "" && l.hwid != hwid:
				return store.CheckReasonHWIDMismatch
			}
			return ""
		}
		for range rapid.IntRange(1, 6).Draw(rt, "checks") {
			var q store.CheckQuery
			var match *license
			hwid := rapid.SampledFrom([]string{"", "HW-A", "HW-B"}).Draw(rt, "check hwid")
			if len(lics) > 0 && rapid.Bool().Draw(rt, "by key") {
				l := lics[rapid.IntRange(0, len(lics)-1).Draw(rt, "which")]
				if q, err = m.KeyCheck(l.key); err != nil {
					rt.Fatal(err)
				}
				if visible(l) {
					match = &l
				}
			} else {
				p := rapid.IntRange(0, 2).Draw(rt, "check product")
				player := int64(rapid.IntRange(1, 3).Draw(rt, "check player"))
				q = store.CheckQuery{ProductID: products[p], RobloxUserID: player}
				for _, l := range lics {
					if l.product == p && l.player == player && visible(l) {
						match = &l
					}
				}
			}
			if hwid != "" {
				if err := m.SetHWID(&q, hwid); err != nil {
					rt.Fatal(err)
				}
			}
			want := store.CheckReasonNotFound
			if match != nil {
				want = reason(*match, hwid)
			}
			_, got, err := m.UseAPIKeyAndCheck(ctx, hash, q)
			if err != nil {
				rt.Fatal(err)
			}
			if got.Whitelisted != (want == "") || (want != "" && got.Reason != want) {
				rt.Fatalf("check (hwid %q, match %+v, key product %d) = whitelisted %v reason %q, want reason %q",
					hwid, match, keyProduct, got.Whitelisted, got.Reason, want)
			}
		}
	})
}
