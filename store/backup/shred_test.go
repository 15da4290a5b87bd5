package backup_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/backup"
)

// shredWorld is a seller with a store and a product, a buyer with three
// purchases (one with a Stripe event naming the buyer), a developer
// subscription whose Stripe ids are sealed under the buyer's personal key,
// and a secret the buyer owns; and another buyer with one purchase.
type shredWorld struct {
	seller, buyer, other, store string
	subID                       string
	subCT                       []byte // the sealed stripe_customer_id, as stored
	// personal are the buyer's other personal values as stored once
	// SealPersonalValues sealed them: license keys and hardware ids of
	// both kinds of license, the profile's Stripe customer id and the
	// owned secret's value. kept is the other buyer's license key, which
	// must outlive the seller.
	personal []personalValue
	kept     personalValue
}

// personalValue is one stored personal value: where it lives, its
// ciphertext as stored, its plaintext.
type personalValue struct {
	owner string
	loc   keyring.Location
	ct    []byte
	pt    string
}

func buildShredWorld(t *testing.T, f *fixture) shredWorld {
	t.Helper()
	ctx := context.Background()
	mk := func(email string) string {
		u, err := f.db.CreateUser(ctx, store.NewUser{Email: email, PasswordHash: "x"})
		if err != nil {
			t.Fatal(err)
		}
		return u.ID
	}
	w := shredWorld{seller: mk("seller@example.com"), buyer: mk("buyer@example.com"), other: mk("other@example.com")}
	f.db.OnShred(f.kr.ForgetPersonal)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := f.db.Pool.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var product string
	if err := f.db.Pool.QueryRow(ctx, `INSERT INTO stores (owner_id, name, slug) VALUES ($1, 's', 'shop') RETURNING id`, w.seller).Scan(&w.store); err != nil {
		t.Fatal(err)
	}
	if err := f.db.Pool.QueryRow(ctx, `INSERT INTO products (store_id, name, price_cents) VALUES ($1, 'p', 1000) RETURNING id`, w.store).Scan(&product); err != nil {
		t.Fatal(err)
	}
	for i, b := range []string{w.buyer, w.buyer, w.buyer, w.other} {
		var sale string
		if err := f.db.Pool.QueryRow(ctx, `INSERT INTO sales (product_id, store_id, buyer_id, buyer_email, roblox_user_id, amount_cents, platform_fee_cents)
			SELECT $1, $2, u.id, u.email, 4242, $3, 50 FROM users u WHERE u.id = $4 RETURNING id`, product, w.store, 1000+i, b).Scan(&sale); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			exec(`INSERT INTO payment_transactions (sale_id, store_id, type, amount_cents, status, raw_event)
				VALUES ($1, $2, 'checkout', 1000, 'completed', '{"customer_details":{"email":"buyer@example.com"}}')`, sale, w.store)
		}
	}
	// A guest purchase with the buyer's address.
	exec(`INSERT INTO sales (product_id, store_id, buyer_email, amount_cents) VALUES ($1, $2, 'Buyer@Example.com', 500)`, product, w.store)
	err := f.db.InTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO developer_subscriptions (developer_id, plan, status) VALUES ($1, 'pro', 'active') RETURNING id`, w.buyer).Scan(&w.subID); err != nil {
			return err
		}
		ct, err := store.SealPersonal(ctx, tx, f.kr, w.buyer, subLoc(w.subID), []byte("cus_BUYER_PERSONAL"))
		if err != nil {
			return err
		}
		w.subCT = ct
		_, err = tx.Exec(ctx, `UPDATE developer_subscriptions SET stripe_customer_id = $2 WHERE id = $1`, w.subID, ct)
		return err
	})
	if err != nil {
		t.Fatalf("seal the subscription: %v", err)
	}
	f.putSecret(t, "buyer-secret", "buyer-secret-value")
	exec(`UPDATE secrets SET owner_id = $1 WHERE name = 'buyer-secret'`, w.buyer)
	exec(`INSERT INTO mail_outbox (to_address, template) VALUES ('buyer@example.com', 'email_confirm')`)

	// Values written before personal keys (keyring-only, as an import
	// writes them): licenses bought by the buyer in the seller's whitelist
	// system and developer product, each with a hardware id; the other
	// buyer's license; the buyer's Stripe customer id in their profile.
	enc := func(table, column, id, v string) []byte {
		ct, err := f.kr.Encrypt(ctx, keyring.Location{Table: table, Column: column, RowID: id}, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	bidx := func(table, column, v string) []byte {
		b, err := f.kr.BlindIndex(table, column, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var system, devProduct string
	if err := f.db.Pool.QueryRow(ctx, `INSERT INTO whitelist_systems (owner_id, store_id, name) VALUES ($1, $2, 'w') RETURNING id`, w.seller, w.store).Scan(&system); err != nil {
		t.Fatal(err)
	}
	if err := f.db.Pool.QueryRow(ctx, `INSERT INTO developer_products (developer_id, name) VALUES ($1, 'd') RETURNING id`, w.seller).Scan(&devProduct); err != nil {
		t.Fatal(err)
	}
	var sales []string
	rows, err := f.db.Pool.Query(ctx, `SELECT id::text, buyer_id::text FROM sales WHERE buyer_id IS NOT NULL ORDER BY amount_cents`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, b string
		if err := rows.Scan(&id, &b); err != nil {
			t.Fatal(err)
		}
		sales = append(sales, id)
	}
	rows.Close()
	license := func(table, parent, parentID string, sale, buyer any, key, hwid string) string {
		id := uuid.NewString()
		var hw, hwIdx []byte
		if hwid != "" {
			hw, hwIdx = enc(table, "hwid", id, hwid), bidx(table, "hwid", hwid)
		}
		exec(`INSERT INTO `+table+` (id, `+parent+`, roblox_user_id, license_key, license_key_bidx, hwid, hwid_bidx, sale_id, buyer_id)
			VALUES ($1, $2, 4242, $3, $4, $5, $6, $7, $8)`, id, parentID, enc(table, "license_key", id, key), bidx(table, "license_key", key), hw, hwIdx, sale, buyer)
		return id
	}
	u1 := license("whitelist_users", "system_id", system, sales[0], w.buyer, "KEY-BUYER-SYSTEM", "HWID-BUYER-1")
	e1 := license("whitelist_entries", "developer_product_id", devProduct, sales[1], w.buyer, "KEY-BUYER-PRODUCT", "HWID-BUYER-2")
	o1 := license("whitelist_users", "system_id", system, sales[3], w.other, "KEY-OTHER", "")
	// A license the seller made by hand: theirs, gone with them.
	license("whitelist_users", "system_id", system, nil, nil, "KEY-MANUAL", "")
	exec(`UPDATE profiles SET stripe_customer_id = $2 WHERE id = $1`, w.buyer, enc("profiles", "stripe_customer_id", w.buyer, "cus_BUYER_PROFILE"))

	// The one-off pass seals them under their owners' keys.
	var batches int
	counts, err := f.db.SealPersonalValues(ctx, f.kr, 1, func(context.Context, pgx.Tx, store.SealCount) error { batches++; return nil })
	if err != nil {
		t.Fatalf("SealPersonalValues err = %v", err)
	}
	sealed := map[string]int{}
	for _, c := range counts {
		sealed[c.Table] = c.Sealed
	}
	if want := map[string]int{"whitelist_users": 2, "whitelist_entries": 1, "secret_versions": 1, "profiles": 1, "developer_subscriptions": 0}; !cmp.Equal(sealed, want) {
		t.Errorf("SealPersonalValues sealed %v, want %v (the subscription was sealed already)", sealed, want)
	}
	if batches != 5 {
		t.Errorf("audited batches = %d, want 5 (batch size 1, one per sealed row)", batches)
	}
	stored := func(owner, table, column, rowID, where, pt string, args ...any) personalValue {
		v := personalValue{owner: owner, loc: keyring.Location{Table: table, Column: column, RowID: rowID}, pt: pt}
		if err := f.db.Pool.QueryRow(ctx, `SELECT `+column+` FROM `+table+` t WHERE `+where, args...).Scan(&v.ct); err != nil {
			t.Fatal(err)
		}
		return v
	}
	w.personal = []personalValue{
		stored(w.buyer, "whitelist_users", "license_key", u1, "id = $1", "KEY-BUYER-SYSTEM", u1),
		stored(w.buyer, "whitelist_users", "hwid", u1, "id = $1", "HWID-BUYER-1", u1),
		stored(w.buyer, "whitelist_entries", "license_key", e1, "id = $1", "KEY-BUYER-PRODUCT", e1),
		stored(w.buyer, "whitelist_entries", "hwid", e1, "id = $1", "HWID-BUYER-2", e1),
		stored(w.buyer, "profiles", "stripe_customer_id", w.buyer, "id = $1", "cus_BUYER_PROFILE", w.buyer),
		stored(w.buyer, "secret_versions", "value", "buyer-secret@1",
			"version = 1 AND secret_id = (SELECT id FROM secrets WHERE name = 'buyer-secret')", "buyer-secret-value"),
		{owner: w.buyer, loc: subLoc(w.subID), ct: w.subCT, pt: "cus_BUYER_PERSONAL"},
	}
	w.kept = stored(w.other, "whitelist_users", "license_key", o1, "id = $1", "KEY-OTHER", o1)
	// Each now reads through both layers; a second pass has nothing to do.
	for _, v := range append(w.personal, w.kept) {
		if pt, err := openValue(f, v); err != nil || string(pt) != v.pt {
			t.Errorf("%s opens to %q, %v; want %q", v.loc, pt, err, v.pt)
		}
	}
	again, err := f.db.SealPersonalValues(ctx, f.kr, 100, nil)
	for _, c := range again {
		if c.Sealed != 0 || err != nil {
			t.Errorf("a second pass sealed %+v (%v), want nothing", c, err)
		}
	}
	return w
}

// openValue opens v's ciphertext through both layers.
func openValue(f *fixture, v personalValue) ([]byte, error) {
	var pt []byte
	err := f.db.InTx(context.Background(), func(tx pgx.Tx) error {
		var err error
		pt, err = store.OpenPersonal(context.Background(), tx, f.kr, v.owner, v.loc, v.ct)
		return err
	})
	return pt, err
}

// checkPersonalGone checks that each of the buyer's personal values, as
// stored before the deletion, fails to open (the key is gone), and that the
// keyring layer alone gives only the still-sealed inner ciphertext, never
// the value: what someone holding the keyring but not the personal key
// reads from any copy of the row. Where the row is still here (a revoked
// license keeps its key column), the value stored now is checked too.
func checkPersonalGone(t *testing.T, f *fixture, w shredWorld, where string) {
	t.Helper()
	ctx := context.Background()
	for _, v := range w.personal {
		if pt, err := openValue(f, v); !errors.Is(err, keyring.ErrPersonalKeyGone) {
			t.Errorf("%s: %s opens to %q with err = %v, want ErrPersonalKeyGone", where, v.loc, pt, err)
		}
		inner, err := f.kr.Decrypt(ctx, v.loc, v.ct)
		if err != nil || !keyring.IsPersonallySealed(inner) || bytes.Contains(inner, []byte(v.pt)) {
			t.Errorf("%s: the keyring layer of %s = %q, %v; want only the sealed inner ciphertext", where, v.loc, inner, err)
		}
		if v.loc.Column != "license_key" {
			continue
		}
		var now []byte
		if err := f.db.Pool.QueryRow(ctx, `SELECT license_key FROM `+v.loc.Table+` WHERE id = $1`, v.loc.RowID).Scan(&now); err != nil {
			t.Fatalf("%s: the revoked license %s: %v", where, v.loc, err)
		}
		if pt, err := openValue(f, personalValue{owner: v.owner, loc: v.loc, ct: now}); !errors.Is(err, keyring.ErrPersonalKeyGone) {
			t.Errorf("%s: %s as stored now opens to %q with err = %v, want ErrPersonalKeyGone", where, v.loc, pt, err)
		}
	}
	// The other buyer's license is theirs still.
	if pt, err := openValue(f, w.kept); err != nil || string(pt) != w.kept.pt {
		t.Errorf("%s: the other buyer's license key opens to %q, %v; want %q", where, pt, err, w.kept.pt)
	}
}

func subLoc(id string) keyring.Location {
	return keyring.Location{Table: "developer_subscriptions", Column: "stripe_customer_id", RowID: id}
}

// openSub opens the sealed customer id ct in db.
func openSub(f *fixture, w shredWorld, ct []byte) ([]byte, error) {
	var pt []byte
	err := f.db.InTx(context.Background(), func(tx pgx.Tx) error {
		var err error
		pt, err = store.OpenPersonal(context.Background(), tx, f.kr, w.buyer, subLoc(w.subID), ct)
		return err
	})
	return pt, err
}

type sellerTotals struct{ Sales, Amount, Fees int64 }

func totals(t *testing.T, f *fixture, storeID string) sellerTotals {
	t.Helper()
	var s sellerTotals
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT count(*), coalesce(sum(amount_cents), 0), coalesce(sum(platform_fee_cents), 0)
		FROM sales WHERE store_id = $1`, storeID).Scan(&s.Sales, &s.Amount, &s.Fees); err != nil {
		t.Fatal(err)
	}
	return s
}

// checkShredded checks, in f's database as it is now, that the buyer is
// gone and unreadable while the seller's accounting is whole.
func checkShredded(t *testing.T, f *fixture, w shredWorld, want sellerTotals, where string) {
	t.Helper()
	ctx := context.Background()
	if got := totals(t, f, w.store); got != want {
		t.Errorf("%s: seller totals = %+v, want %+v (unchanged)", where, got, want)
	}
	if _, err := openSub(f, w, w.subCT); !errors.Is(err, keyring.ErrPersonalKeyGone) {
		t.Errorf("%s: the buyer's sealed Stripe customer id opens with err = %v, want ErrPersonalKeyGone", where, err)
	}
	checkPersonalGone(t, f, w, where)
	var n struct{ users, keys, named, ledger, subs, secrets, events, mails, otherSales int64 }
	for q, dst := range map[string]*int64{
		`SELECT count(*) FROM users WHERE id = $1`:                                  &n.users,
		`SELECT count(*) FROM user_keys WHERE id = $1`:                              &n.keys,
		`SELECT count(*) FROM shredded_users WHERE user_id = $1`:                    &n.ledger,
		`SELECT count(*) FROM developer_subscriptions WHERE developer_id = $1`:      &n.subs,
		`SELECT count(*) FROM secrets WHERE owner_id = $1 OR name = 'buyer-secret'`: &n.secrets,
		`SELECT count(*) FROM sales WHERE buyer_id = $1 OR lower(buyer_email) = 'buyer@example.com' OR (roblox_user_id IS NOT NULL AND buyer_id IS NULL)`: &n.named,
		`SELECT count(*) FROM payment_transactions WHERE raw_event::text LIKE '%buyer@%' AND $1::uuid IS NOT NULL`:                                        &n.events,
		`SELECT count(*) FROM mail_outbox WHERE to_address = 'buyer@example.com' AND $1::uuid IS NOT NULL`:                                                &n.mails,
	} {
		if err := f.db.Pool.QueryRow(ctx, q, w.buyer).Scan(dst); err != nil {
			t.Fatalf("%s: %s: %v", where, q, err)
		}
	}
	if err := f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM sales WHERE buyer_id = $1 AND buyer_email = 'other@example.com'`, w.other).Scan(&n.otherSales); err != nil {
		t.Fatal(err)
	}
	if n.users+n.keys+n.named+n.subs+n.secrets+n.events+n.mails != 0 || n.ledger != 1 || n.otherSales != 1 {
		t.Errorf("%s: counts %+v, want no user, key, named sale, subscription, secret, Stripe event or mail of the buyer; the ledger entry; the other buyer's sale intact", where, n)
	}
}

// The shredding test of issue 17: a buyer with purchases, a sealed personal
// value and a secret; a backup; the deletion. In the live database and
// after restoring the earlier backup (the restore re-applies the ledger,
// WithRestoreEpilogue), the buyer's personal value fails to decrypt, the
// rows are gone or anonymised, and the seller's sales totals are what they
// were. A restore without the ledger rule would bring the buyer back: the
// last step shows that the rule, not luck, keeps them gone.
func TestShreddingSurvivesRestoreOfEarlierBackup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	w := buildShredWorld(t, f)
	svc, err := backup.New(backup.Config{Dir: f.dir, Keep: 5}, f.url, f.kek,
		backup.WithRestoreEpilogue(f.db.ShredReplaySQL),
		backup.WithAfterRestore(func(ctx context.Context) error { f.db.Pool.Reset(); return f.kr.Reload(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	before := totals(t, f, w.store)
	if pt, err := openSub(f, w, w.subCT); err != nil || string(pt) != "cus_BUYER_PERSONAL" {
		t.Fatalf("before deletion the sealed value opens to %q, %v; want the plaintext", pt, err)
	}
	b, err := svc.Create(ctx, backup.LocalOperator, nil)
	if err != nil {
		t.Fatalf("Create err = %v", err)
	}
	res, err := f.db.ShredUser(ctx, w.buyer, time.Now(), nil)
	if err != nil {
		t.Fatalf("ShredUser err = %v, want nil", err)
	}
	if want := (store.ShredResult{SalesAnonymised: 3, SecretsDeleted: 1, KeyDestroyed: true}); res != want {
		t.Errorf("ShredUser = %+v, want %+v", res, want)
	}
	checkShredded(t, f, w, before, "live")
	if got := readSecrets(t, f.db, f.kr); !cmp.Equal(got, map[string]string{"s0": f.secrets["s0"], "s1": f.secrets["s1"]}) {
		t.Errorf("other secrets after the deletion = %v", got)
	}

	if _, err := svc.Restore(ctx, backup.LocalOperator, b.ID, nil); err != nil {
		t.Fatalf("Restore err = %v, want nil", err)
	}
	checkShredded(t, f, w, before, "after restoring the earlier backup")
	if got := count(t, f.db, "users"); got != 3+2 {
		t.Errorf("users after restore = %d, want the 3 fixture users, the seller and the other buyer", got)
	}
	// A ledger entry survives a second restore (it is in the live database
	// each time), and the later backup carries it too.
	b2, err := svc.Create(ctx, backup.LocalOperator, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b2.RowCounts["public.shredded_users"] != 1 {
		t.Errorf("later backup's shredded_users rows = %d, want 1", b2.RowCounts["public.shredded_users"])
	}

	// The seller, whose store has sales, deletes their account too: the
	// store stays for the buyers' records, closed and anonymised, and the
	// other buyer keeps their license; so after restoring the earlier
	// backup, which re-applies both deletions.
	sres, err := f.db.ShredUser(ctx, w.seller, time.Now(), nil)
	if err != nil {
		t.Fatalf("ShredUser(seller) err = %v, want nil", err)
	}
	if sres.StoresClosed != 1 {
		t.Errorf("ShredUser(seller).StoresClosed = %d, want 1", sres.StoresClosed)
	}
	checkSellerGone(t, f, w, before, "live, seller deleted")
	if _, err := svc.Restore(ctx, backup.LocalOperator, b.ID, nil); err != nil {
		t.Fatalf("Restore err = %v, want nil", err)
	}
	checkShredded(t, f, w, before, "after restoring the earlier backup, both deleted")
	checkSellerGone(t, f, w, before, "after restoring the earlier backup, both deleted")

	// Without the ledger rule, the earlier backup brings the buyer back:
	// the rule is what the promise rests on.
	raw, err := backup.New(backup.Config{Dir: f.dir, Keep: 5}, f.url, f.kek,
		backup.WithAfterRestore(func(ctx context.Context) error { f.db.Pool.Reset(); return f.kr.Reload(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Restore(ctx, backup.LocalOperator, b.ID, nil); err != nil {
		t.Fatal(err)
	}
	if pt, err := openSub(f, w, w.subCT); err != nil || string(pt) != "cus_BUYER_PERSONAL" {
		t.Errorf("a restore without the ledger rule: the value opens to %q, %v; want it readable again (so the rule is what shreds)", pt, err)
	}
	// And re-applying the ledger the restored backup lacks: ShredUser again.
	if _, err := f.db.ShredUser(ctx, w.buyer, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	checkShredded(t, f, w, before, "shredded again")
}

// checkSellerGone checks that the seller is gone while what buyers paid
// for stays: the store closed, ownerless and anonymised with its sales
// totals unchanged; the whitelist system ownerless with the other buyer's
// license (its key readable by them) and without the seller's hand-made
// license.
func checkSellerGone(t *testing.T, f *fixture, w shredWorld, want sellerTotals, where string) {
	t.Helper()
	ctx := context.Background()
	if got := totals(t, f, w.store); got != want {
		t.Errorf("%s: store totals = %+v, want %+v (unchanged)", where, got, want)
	}
	var n struct{ user, keys, store, active, systems, products, manual, kept int64 }
	for q, dst := range map[string]*int64{
		`SELECT count(*) FROM users WHERE id = $1 AND $2::uuid IS NOT NULL`:                                                                                &n.user,
		`SELECT count(*) FROM user_keys WHERE id = $1 AND $2::uuid IS NOT NULL`:                                                                            &n.keys,
		`SELECT count(*) FROM stores WHERE id = $2 AND owner_id IS NULL AND name = 'Deleted store' AND stripe_account_id IS NULL AND $1::uuid IS NOT NULL`: &n.store,
		`SELECT count(*) FROM products WHERE store_id = $2 AND is_active AND $1::uuid IS NOT NULL`:                                                         &n.active,
		`SELECT count(*) FROM whitelist_systems WHERE owner_id = $1 OR (owner_id IS NULL AND store_id = $2)`:                                               &n.systems,
		`SELECT count(*) FROM developer_products WHERE (developer_id = $1 OR developer_id IS NULL) AND $2::uuid IS NOT NULL`:                               &n.products,
		`SELECT count(*) FROM whitelist_users WHERE sale_id IS NULL AND $1::uuid IS NOT NULL AND $2::uuid IS NOT NULL`:                                     &n.manual,
		`SELECT count(*) FROM whitelist_users WHERE status = 'active' AND buyer_id IS NOT NULL AND $1::uuid IS NOT NULL AND $2::uuid IS NOT NULL`:          &n.kept,
	} {
		if err := f.db.Pool.QueryRow(ctx, q, w.seller, w.store).Scan(dst); err != nil {
			t.Fatalf("%s: %s: %v", where, q, err)
		}
	}
	if n.user+n.keys+n.active+n.manual != 0 || n.store != 1 || n.systems != 1 || n.products != 1 || n.kept != 1 {
		t.Errorf("%s: counts %+v, want no seller, key, selling product or hand-made license; the store, system and developer product kept ownerless; the other buyer's license active", where, n)
	}
	if pt, err := openValue(f, w.kept); err != nil || string(pt) != w.kept.pt {
		t.Errorf("%s: the other buyer's license key opens to %q, %v; want %q", where, pt, err, w.kept.pt)
	}
}
