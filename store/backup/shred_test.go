package backup_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
	return w
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
