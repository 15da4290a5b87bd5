package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

type sealed struct {
	user string
	loc  keyring.Location
	ct   []byte
	pt   string
}

// TestProperty31_ShreddingOnlyTheDeletedUsersValues claims: for any users
// with personal values of any personal column (store.PersonalColumns)
// sealed under their keys and purchases from one
// seller, deleting any subset of them leaves every value of a deleted user
// unopenable (ErrPersonalKeyGone) and every value of a kept user opening to
// its plaintext, while the seller's sales count and totals stay the same
// and no sale still names a deleted buyer. 100 checks (rapid's default).
func TestProperty31_ShreddingOnlyTheDeletedUsersValues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr, err := keyring.Open(ctx, store.NewKeysets(db.Pool), localKEK(t))
	if err != nil {
		t.Fatal(err)
	}
	db.OnShred(kr.ForgetPersonal)
	seller, err := db.CreateUser(ctx, store.NewUser{Email: "seller@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	var storeID, product string
	if err := db.Pool.QueryRow(ctx, `INSERT INTO stores (owner_id, name, slug) VALUES ($1, 's', 'p31') RETURNING id`, seller.ID).Scan(&storeID); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `INSERT INTO products (store_id, name, price_cents) VALUES ($1, 'p', 100) RETURNING id`, storeID).Scan(&product); err != nil {
		t.Fatal(err)
	}
	totals := func(rt *rapid.T) [3]int64 {
		var s [3]int64
		if err := db.Pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(amount_cents), 0), coalesce(sum(platform_fee_cents), 0) FROM sales WHERE store_id = $1`, storeID).
			Scan(&s[0], &s[1], &s[2]); err != nil {
			rt.Fatal(err)
		}
		return s
	}
	open := func(v sealed) ([]byte, error) {
		var pt []byte
		err := db.InTx(ctx, func(tx pgx.Tx) error {
			var err error
			pt, err = store.OpenPersonal(ctx, tx, kr, v.user, v.loc, v.ct)
			return err
		})
		return pt, err
	}
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(1, 4).Draw(rt, "users")
		var users []string
		var values []sealed
		for i := range n {
			u, err := db.CreateUser(ctx, store.NewUser{Email: uuid.NewString() + "@example.com"})
			if err != nil {
				rt.Fatal(err)
			}
			users = append(users, u.ID)
			for j := range rapid.IntRange(0, 3).Draw(rt, "values") {
				pc := rapid.SampledFrom(store.PersonalColumns).Draw(rt, "table")
				v := sealed{user: u.ID, pt: rapid.StringN(0, 40, -1).Draw(rt, "value"),
					loc: keyring.Location{Table: pc.Table, Column: rapid.SampledFrom(pc.Columns).Draw(rt, "column"), RowID: uuid.NewString()}}
				err := db.InTx(ctx, func(tx pgx.Tx) error {
					var err error
					v.ct, err = store.SealPersonal(ctx, tx, kr, u.ID, v.loc, []byte(v.pt))
					return err
				})
				if err != nil {
					rt.Fatalf("SealPersonal user %d value %d: %v", i, j, err)
				}
				values = append(values, v)
			}
			for range rapid.IntRange(0, 3).Draw(rt, "purchases") {
				amount := rapid.IntRange(0, 100000).Draw(rt, "amount")
				if _, err := db.Pool.Exec(ctx, `INSERT INTO sales (product_id, store_id, buyer_id, buyer_email, roblox_user_id, amount_cents, platform_fee_cents)
					VALUES ($1, $2, $3, 'x@example.com', 1, $4, $5)`, product, storeID, u.ID, amount, amount/20); err != nil {
					rt.Fatal(err)
				}
			}
		}
		before := totals(rt)
		deleted := map[string]bool{}
		for _, u := range users {
			if rapid.Bool().Draw(rt, "delete") {
				deleted[u] = true
				if _, err := db.ShredUser(ctx, u, time.Now(), nil); err != nil {
					rt.Fatalf("ShredUser: %v", err)
				}
			}
		}
		if got := totals(rt); got != before {
			rt.Fatalf("seller totals %v after deleting %d users, want %v", got, len(deleted), before)
		}
		for _, v := range values {
			pt, err := open(v)
			switch {
			case deleted[v.user] && !errors.Is(err, keyring.ErrPersonalKeyGone):
				rt.Fatalf("a deleted user's value opens: %q, err %v", pt, err)
			case !deleted[v.user] && (err != nil || string(pt) != v.pt):
				rt.Fatalf("a kept user's value = %q, err %v; want %q", pt, err, v.pt)
			}
		}
		for u := range deleted {
			var named int
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM sales WHERE buyer_id = $1`, u).Scan(&named); err != nil || named != 0 {
				rt.Fatalf("sales still naming a deleted buyer = %d (%v)", named, err)
			}
		}
	})
}

// SealPersonal binds a value to where it lives: another row's location
// does not open it, and a value encrypted by the keyring alone (imported
// before personal keys) still reads.
func TestPersonalValuesBoundToLocation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr, err := keyring.Open(ctx, store.NewKeysets(db.Pool), localKEK(t))
	if err != nil {
		t.Fatal(err)
	}
	u, err := db.CreateUser(ctx, store.NewUser{Email: "a@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	loc := keyring.Location{Table: "developer_subscriptions", Column: "stripe_customer_id", RowID: uuid.NewString()}
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		ct, err := store.SealPersonal(ctx, tx, kr, u.ID, loc, []byte("cus_1"))
		if err != nil {
			return err
		}
		other := loc
		other.RowID = uuid.NewString()
		if _, err := store.OpenPersonal(ctx, tx, kr, u.ID, other, ct); !errors.Is(err, keyring.ErrDecrypt) {
			t.Errorf("OpenPersonal at another row err = %v, want ErrDecrypt", err)
		}
		plain, err := kr.Encrypt(ctx, loc, []byte("cus_imported"))
		if err != nil {
			return err
		}
		if pt, err := store.OpenPersonal(ctx, tx, kr, u.ID, loc, plain); err != nil || string(pt) != "cus_imported" {
			t.Errorf("OpenPersonal of a keyring-only value = %q, %v; want it as it is", pt, err)
		}
		if _, err := store.SealPersonal(ctx, tx, kr, uuid.NewString(), loc, []byte("x")); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SealPersonal for an unknown user err = %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSealPersonal puts sealing a personal value (a look-up of the
// user's key, its decryption and parsing, two AEAD layers) beside the
// baseline of a keyring-only encryption, in one run: compare the two.
func BenchmarkSealPersonal(b *testing.B) {
	ctx := context.Background()
	db := pgtest.New(b)
	kr, err := keyring.Open(ctx, store.NewKeysets(db.Pool), localKEK(b))
	if err != nil {
		b.Fatal(err)
	}
	u, err := db.CreateUser(ctx, store.NewUser{Email: "bench@example.com"})
	if err != nil {
		b.Fatal(err)
	}
	loc := keyring.Location{Table: "developer_subscriptions", Column: "stripe_customer_id", RowID: uuid.NewString()}
	pt := []byte("cus_0123456789abcdef")
	b.Run("keyring-only", func(b *testing.B) {
		for b.Loop() {
			err := db.InTx(ctx, func(tx pgx.Tx) error { _, err := kr.Encrypt(ctx, loc, pt); return err })
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("personal", func(b *testing.B) {
		for b.Loop() {
			err := db.InTx(ctx, func(tx pgx.Tx) error { _, err := store.SealPersonal(ctx, tx, kr, u.ID, loc, pt); return err })
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A buyer's purchased licenses are revoked on deletion, and lose the
// hardware id and Discord id they were bound to; a license the seller made
// by hand for the same player is untouched. The licenses columns (migration
// 00013) are added here when the schema does not have them yet, as that
// migration defines them, so the statements are exercised either way.
func TestShredRevokesTheBuyersLicenses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr, err := keyring.Open(ctx, store.NewKeysets(db.Pool), localKEK(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `ALTER TABLE whitelist_users
		ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'active',
		ADD COLUMN IF NOT EXISTS hwid_bidx bytea,
		ADD COLUMN IF NOT EXISTS buyer_id uuid REFERENCES users(id) ON DELETE SET NULL,
		ADD COLUMN IF NOT EXISTS revoked_at timestamptz,
		ADD COLUMN IF NOT EXISTS revoked_reason text`); err != nil {
		t.Fatal(err)
	}
	seller, _ := db.CreateUser(ctx, store.NewUser{Email: "seller@example.com"})
	buyer, _ := db.CreateUser(ctx, store.NewUser{Email: "buyer@example.com", DiscordID: "123456789012345678", DiscordUsername: "b"})
	var system string
	if err := db.Pool.QueryRow(ctx, `INSERT INTO whitelist_systems (owner_id, name) VALUES ($1, 'w') RETURNING id`, seller.ID).Scan(&system); err != nil {
		t.Fatal(err)
	}
	insert := func(buyerID any, roblox int) string {
		id := uuid.NewString()
		key, _ := kr.Encrypt(ctx, keyring.Location{Table: "whitelist_users", Column: "license_key", RowID: id}, []byte("KEY-"+id))
		bidx, _ := kr.BlindIndex("whitelist_users", "license_key", []byte("KEY-"+id))
		hwid, _ := kr.Encrypt(ctx, keyring.Location{Table: "whitelist_users", Column: "hwid", RowID: id}, []byte("HWID-1234"))
		if _, err := db.Pool.Exec(ctx, `INSERT INTO whitelist_users (id, system_id, roblox_user_id, discord_id, license_key, license_key_bidx, hwid, buyer_id)
			VALUES ($1, $2, $3, '123456789012345678', $4, $5, $6, $7)`, id, system, roblox, key, bidx, hwid, buyerID); err != nil {
			t.Fatal(err)
		}
		return id
	}
	bought, manual := insert(buyer.ID, 1), insert(nil, 2)
	// The seller's Discord bot whitelisted the buyer and gave a role.
	var server string
	if err := db.Pool.QueryRow(ctx, `INSERT INTO discord_servers (guild_id, owner_id) VALUES ('999', $1) RETURNING id`, seller.ID).Scan(&server); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO bot_whitelisted_users (discord_server_id, discord_user_id, roblox_user_id) VALUES ($1, '123456789012345678', 1), ($1, '42', 2)`, server); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO bot_role_grants (discord_server_id, guild_id, discord_user_id, role_id, action, state, command)
		VALUES ($1, '999', '123456789012345678', 'r', 'add', 'done', 'whitelist add'), ($1, '999', '123456789012345678', 'r', 'remove', 'pending', 'whitelist remove')`, server); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ShredUser(ctx, buyer.ID, time.Now(), nil); err != nil {
		t.Fatalf("ShredUser err = %v", err)
	}
	var records, grants, others int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM bot_whitelisted_users WHERE discord_user_id = '123456789012345678'),
		(SELECT count(*) FROM bot_role_grants WHERE state <> 'pending'), (SELECT count(*) FROM bot_whitelisted_users WHERE discord_user_id = '42')`).
		Scan(&records, &grants, &others); err != nil {
		t.Fatal(err)
	}
	if records != 0 || grants != 0 || others != 1 {
		t.Errorf("bot records of the buyer = %d, finished role grants = %d, another player's records = %d; want 0, 0, 1", records, grants, others)
	}
	var status string
	var reason *string
	var hwid []byte
	var discord, buyerID *string
	if err := db.Pool.QueryRow(ctx, `SELECT status, revoked_reason, hwid, discord_id, buyer_id::text FROM whitelist_users WHERE id = $1`, bought).
		Scan(&status, &reason, &hwid, &discord, &buyerID); err != nil {
		t.Fatal(err)
	}
	if status != "revoked" || reason == nil || *reason != "account_deleted" || hwid != nil || discord != nil || buyerID != nil {
		t.Errorf("the buyer's license after deletion: status %s, reason %v, hwid %x, discord %v, buyer %v; want revoked (account_deleted) with no hwid, Discord id or buyer",
			status, reason, hwid, discord, buyerID)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT status, hwid FROM whitelist_users WHERE id = $1`, manual).Scan(&status, &hwid); err != nil {
		t.Fatal(err)
	}
	if status != "active" || hwid == nil {
		t.Errorf("the seller's own entry: status %s, hwid %x; want active with its hwid (only the Discord id, the buyer's, is cleared)", status, hwid)
	}
}

// TestProperty38_DeletingSellersAndBuyersKeepsWhatBuyersPaidFor claims: for
// any sellers (each a store, a product and a whitelist system) and buyers
// with any purchases between them (each a sale and a license whose key is
// sealed under the buyer's key), deleting any subset of the accounts in any
// order keeps every sale with its amount; a kept buyer's licenses stay
// active and their keys open for them, whoever of the sellers is gone; a
// deleted buyer's licenses are revoked and their keys open for no one; and
// a deleted seller's stores keep no owner and sell nothing. 100 checks
// (rapid's default).
func TestProperty38_DeletingSellersAndBuyersKeepsWhatBuyersPaidFor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr, err := keyring.Open(ctx, store.NewKeysets(db.Pool), localKEK(t))
	if err != nil {
		t.Fatal(err)
	}
	db.OnShred(kr.ForgetPersonal)
	type seller struct{ id, store, product, system string }
	type purchase struct {
		buyer, seller int
		sale, license string
		key           string
		ct            []byte
		amount        int
	}
	rapid.Check(t, func(rt *rapid.T) {
		mk := func() string {
			u, err := db.CreateUser(ctx, store.NewUser{Email: uuid.NewString() + "@example.com"})
			if err != nil {
				rt.Fatal(err)
			}
			return u.ID
		}
		var sellers []seller
		for range rapid.IntRange(1, 2).Draw(rt, "sellers") {
			s := seller{id: mk()}
			if err := db.Pool.QueryRow(ctx, `INSERT INTO stores (owner_id, name, slug) VALUES ($1, 's', $2) RETURNING id`, s.id, uuid.NewString()).Scan(&s.store); err != nil {
				rt.Fatal(err)
			}
			if err := db.Pool.QueryRow(ctx, `INSERT INTO products (store_id, name, price_cents) VALUES ($1, 'p', 100) RETURNING id`, s.store).Scan(&s.product); err != nil {
				rt.Fatal(err)
			}
			if err := db.Pool.QueryRow(ctx, `INSERT INTO whitelist_systems (owner_id, store_id, name) VALUES ($1, $2, 'w') RETURNING id`, s.id, s.store).Scan(&s.system); err != nil {
				rt.Fatal(err)
			}
			sellers = append(sellers, s)
		}
		var buyers []string
		for range rapid.IntRange(1, 3).Draw(rt, "buyers") {
			buyers = append(buyers, mk())
		}
		var purchases []purchase
		for range rapid.IntRange(0, 5).Draw(rt, "purchases") {
			p := purchase{buyer: rapid.IntRange(0, len(buyers)-1).Draw(rt, "buyer"), seller: rapid.IntRange(0, len(sellers)-1).Draw(rt, "seller"),
				amount: rapid.IntRange(0, 100000).Draw(rt, "amount"), license: uuid.NewString(), key: "KEY-" + uuid.NewString()}
			s, b := sellers[p.seller], buyers[p.buyer]
			err := db.InTx(ctx, func(tx pgx.Tx) error {
				if err := tx.QueryRow(ctx, `INSERT INTO sales (product_id, store_id, buyer_id, amount_cents) VALUES ($1, $2, $3, $4) RETURNING id`,
					s.product, s.store, b, p.amount).Scan(&p.sale); err != nil {
					return err
				}
				loc := keyring.Location{Table: "whitelist_users", Column: "license_key", RowID: p.license}
				ct, err := store.SealPersonal(ctx, tx, kr, b, loc, []byte(p.key))
				if err != nil {
					return err
				}
				p.ct = ct
				bidx, err := kr.BlindIndex("whitelist_users", "license_key", []byte(p.key))
				if err != nil {
					return err
				}
				_, err = tx.Exec(ctx, `INSERT INTO whitelist_users (id, system_id, roblox_user_id, license_key, license_key_bidx, sale_id, buyer_id)
					VALUES ($1, $2, 1, $3, $4, $5, $6)`, p.license, s.system, ct, bidx, p.sale, b)
				return err
			})
			if err != nil {
				rt.Fatalf("purchase: %v", err)
			}
			purchases = append(purchases, p)
		}
		// Delete any subset of everyone, in any order.
		everyone := append(append([]string{}, buyers...), func() []string {
			var ids []string
			for _, s := range sellers {
				ids = append(ids, s.id)
			}
			return ids
		}()...)
		order := rapid.Permutation(everyone).Draw(rt, "order")
		deleted := map[string]bool{}
		for _, id := range order {
			if rapid.Bool().Draw(rt, "delete") {
				if _, err := db.ShredUser(ctx, id, time.Now(), nil); err != nil {
					rt.Fatalf("ShredUser: %v", err)
				}
				deleted[id] = true
			}
		}
		for _, p := range purchases {
			var amount int
			var status string
			var ct []byte
			if err := db.Pool.QueryRow(ctx, `SELECT s.amount_cents, u.status, u.license_key FROM sales s JOIN whitelist_users u ON u.sale_id = s.id WHERE s.id = $1`, p.sale).
				Scan(&amount, &status, &ct); err != nil {
				rt.Fatalf("purchase %+v after deletions: %v", p, err)
			}
			if amount != p.amount {
				rt.Fatalf("sale amount = %d, want %d", amount, p.amount)
			}
			b := buyers[p.buyer]
			pt, err := store.OpenPersonal(ctx, db.Pool, kr, b, keyring.Location{Table: "whitelist_users", Column: "license_key", RowID: p.license}, ct)
			if deleted[b] {
				if status != "revoked" || !errors.Is(err, keyring.ErrPersonalKeyGone) {
					rt.Fatalf("a deleted buyer's license: status %s, key %q, err %v; want revoked and ErrPersonalKeyGone", status, pt, err)
				}
				continue
			}
			if status != "active" || err != nil || string(pt) != p.key {
				rt.Fatalf("a kept buyer's license (seller deleted: %v): status %s, key %q, err %v; want active and %q", deleted[sellers[p.seller].id], status, pt, err, p.key)
			}
		}
		for _, s := range sellers {
			if !deleted[s.id] {
				continue
			}
			var owned, selling int
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE st.owner_id IS NOT NULL), count(*) FILTER (WHERE p.is_active)
				FROM stores st LEFT JOIN products p ON p.store_id = st.id WHERE st.id = $1`, s.store).Scan(&owned, &selling); err != nil {
				rt.Fatal(err)
			}
			if owned != 0 || selling != 0 {
				rt.Fatalf("a deleted seller's store: %d owned rows, %d products selling; want none", owned, selling)
			}
		}
	})
}
