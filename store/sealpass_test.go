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

// personalWorld is a database with a keyring, a seller and a whitelist
// system, for the personal-value properties.
type personalWorld struct {
	db     *store.DB
	kr     *keyring.Keyring
	kek    keyring.KEK
	system string
	player int64
}

func newPersonalWorld(t *testing.T) *personalWorld {
	t.Helper()
	ctx := context.Background()
	w := &personalWorld{db: pgtest.New(t)}
	w.kek = localKEK(t)
	kr, err := keyring.Open(ctx, store.NewKeysets(w.db.Pool), w.kek)
	if err != nil {
		t.Fatal(err)
	}
	w.kr = kr
	w.db.OnShred(kr.ForgetPersonal)
	seller, err := w.db.CreateUser(ctx, store.NewUser{Email: "seller-" + uuid.NewString() + "@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.db.Pool.QueryRow(ctx, `INSERT INTO whitelist_systems (owner_id, name) VALUES ($1, 'w') RETURNING id`, seller.ID).Scan(&w.system); err != nil {
		t.Fatal(err)
	}
	return w
}

// written is one personal value as the test wrote it.
type written struct {
	kind   string // secret, license, hwid, profile
	owner  string // "" for none
	name   string // secret name or row id
	pt     string
	sealed bool // written sealed (the new write paths) rather than keyring-only
}

func (w *personalWorld) loc(v written) keyring.Location {
	switch v.kind {
	case "secret":
		return store.SecretValueLocation(v.name, 1)
	case "profile":
		return keyring.Location{Table: "profiles", Column: "stripe_customer_id", RowID: v.name}
	case "hwid":
		return keyring.Location{Table: "whitelist_users", Column: "hwid", RowID: v.name}
	}
	return keyring.Location{Table: "whitelist_users", Column: "license_key", RowID: v.name}
}

// write stores v, keyring-only or sealed under its owner's key.
func (w *personalWorld) write(rt interface{ Fatalf(string, ...any) }, v *written) {
	ctx := context.Background()
	err := w.db.InTx(ctx, func(tx pgx.Tx) error {
		enc := func(loc keyring.Location) ([]byte, error) {
			if v.sealed && v.owner != "" {
				return store.SealPersonal(ctx, tx, w.kr, v.owner, loc, []byte(v.pt))
			}
			return w.kr.Encrypt(ctx, loc, []byte(v.pt))
		}
		var owner any
		if v.owner != "" {
			owner = v.owner
		}
		switch v.kind {
		case "secret":
			v.name = "p37-" + uuid.NewString()
			if v.sealed {
				// The vault's write path.
				s, err := store.LockSecretForWrite(ctx, tx, v.name, "test", v.owner)
				if err != nil {
					return err
				}
				_, err = store.WriteSecretVersion(ctx, tx, w.kr, s, []byte(v.pt), "test", 0)
				return err
			}
			var id string
			if err := tx.QueryRow(ctx, `INSERT INTO secrets (name, owner_id, current_version, created_by, updated_by) VALUES ($1, $2, 1, 't', 't') RETURNING id`, v.name, owner).Scan(&id); err != nil {
				return err
			}
			ct, err := enc(w.loc(*v))
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO secret_versions (secret_id, version, value, created_by) VALUES ($1, 1, $2, 't')`, id, ct)
			return err
		case "profile":
			v.name = v.owner
			ct, err := enc(w.loc(*v))
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE profiles SET stripe_customer_id = $2 WHERE id = $1`, v.owner, ct)
			return err
		default:
			v.name = uuid.NewString()
			ct, err := enc(w.loc(*v))
			if err != nil {
				return err
			}
			w.player++
			bidx, err := w.kr.BlindIndex("whitelist_users", "license_key", []byte(v.name))
			if err != nil {
				return err
			}
			if v.kind == "license" {
				_, err = tx.Exec(ctx, `INSERT INTO whitelist_users (id, system_id, roblox_user_id, license_key, license_key_bidx, buyer_id)
					VALUES ($1, $2, $3, $4, $5, $6)`, v.name, w.system, w.player, ct, bidx, owner)
				return err
			}
			key, err := w.kr.Encrypt(ctx, keyring.Location{Table: "whitelist_users", Column: "license_key", RowID: v.name}, []byte("K"))
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO whitelist_users (id, system_id, roblox_user_id, license_key, license_key_bidx, hwid, buyer_id)
				VALUES ($1, $2, $3, $4, $5, $6, $7)`, v.name, w.system, w.player, key, bidx, ct, owner)
			return err
		}
	})
	if err != nil {
		rt.Fatalf("write %s: %v", v.kind, err)
	}
}

// read reads v back as the server does: a secret through ReadSecret, the
// others through OpenPersonal with the row's owner.
func (w *personalWorld) read(v written) ([]byte, []byte, error) {
	ctx := context.Background()
	loc := w.loc(v)
	var ct []byte
	var q string
	switch v.kind {
	case "secret":
		q = `SELECT value FROM secret_versions WHERE version = 1 AND secret_id = (SELECT id FROM secrets WHERE name = $1)`
	case "profile":
		q = `SELECT stripe_customer_id FROM profiles WHERE id = $1`
	case "hwid":
		q = `SELECT hwid FROM whitelist_users WHERE id = $1`
	default:
		q = `SELECT license_key FROM whitelist_users WHERE id = $1`
	}
	if err := w.db.Pool.QueryRow(ctx, q, v.name).Scan(&ct); err != nil {
		return nil, nil, err
	}
	if v.kind == "secret" {
		sv, err := w.db.ReadSecret(ctx, w.kr, v.name, 0)
		return sv.Value, ct, err
	}
	pt, err := store.OpenPersonal(ctx, w.db.Pool, w.kr, v.owner, loc, ct)
	return pt, ct, err
}

var errStop = errors.New("stopped on purpose")

// TestProperty37_SealingPassKeepsEveryValueAndSealsOwnedOnes claims: for
// any mix of personal values (owned secrets and unowned ones, licenses'
// keys and hardware ids with and without a buyer, profiles' Stripe ids),
// written keyring-only (before personal keys) or sealed (the new write
// paths), every value reads back to its plaintext before the pass, after a
// pass stopped at any batch, and after it is run again to the end; after
// it, every value with an owner is sealed under that owner's key (its
// keyring layer is the inner ciphertext, not the value) and every value
// without one is still keyring-only. 100 checks (rapid's default).
func TestProperty37_SealingPassKeepsEveryValueAndSealsOwnedOnes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newPersonalWorld(t)
	rapid.Check(t, func(rt *rapid.T) {
		var users []string
		for range rapid.IntRange(1, 3).Draw(rt, "users") {
			u, err := w.db.CreateUser(ctx, store.NewUser{Email: uuid.NewString() + "@example.com"})
			if err != nil {
				rt.Fatal(err)
			}
			users = append(users, u.ID)
		}
		profiled := map[string]bool{}
		var values []written
		for range rapid.IntRange(1, 6).Draw(rt, "values") {
			v := written{kind: rapid.SampledFrom([]string{"secret", "license", "hwid", "profile"}).Draw(rt, "kind"),
				pt: rapid.StringN(0, 40, -1).Draw(rt, "pt"), sealed: rapid.Bool().Draw(rt, "sealed")}
			if v.kind == "profile" || rapid.Bool().Draw(rt, "owned") {
				v.owner = rapid.SampledFrom(users).Draw(rt, "owner")
			}
			if v.kind == "profile" {
				if profiled[v.owner] {
					continue
				}
				profiled[v.owner] = true
			}
			w.write(rt, &v)
			values = append(values, v)
		}
		check := func(when string) {
			for _, v := range values {
				if pt, _, err := w.read(v); err != nil || string(pt) != v.pt {
					rt.Fatalf("%s: %s %s (owner %q, sealed %v) reads %q, %v; want %q", when, v.kind, v.name, v.owner, v.sealed, pt, err, v.pt)
				}
			}
		}
		check("before the pass")
		batch := rapid.IntRange(1, 4).Draw(rt, "batch")
		stopAt := rapid.IntRange(0, 8).Draw(rt, "stop at batch (0: never)")
		n := 0
		_, err := w.db.SealPersonalValues(ctx, w.kr, batch, func(context.Context, pgx.Tx, store.SealCount) error {
			n++
			if n == stopAt {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			rt.Fatalf("SealPersonalValues: %v", err)
		}
		check("after a stopped pass")
		if _, err := w.db.SealPersonalValues(ctx, w.kr, batch, nil); err != nil {
			rt.Fatalf("SealPersonalValues again: %v", err)
		}
		check("after the pass")
		for _, v := range values {
			_, ct, err := w.read(v)
			if err != nil {
				rt.Fatal(err)
			}
			inner, err := w.kr.Decrypt(ctx, w.loc(v), ct)
			if err != nil {
				rt.Fatal(err)
			}
			if sealed := keyring.IsPersonallySealed(inner); sealed != (v.owner != "") {
				rt.Fatalf("%s %s (owner %q): sealed = %v after the pass, want %v", v.kind, v.name, v.owner, sealed, v.owner != "")
			}
		}
	})
}

// The personal-key cache: a key cached by one instance outlives the
// account's deletion on another instance for at most the cache's TTL,
// after which opening fails; the deleting instance forgets at once.
func TestPersonalKeyCacheOutlivesDeletionElsewhereOnlyForItsTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newPersonalWorld(t)
	const ttl = 200 * time.Millisecond
	u, err := w.db.CreateUser(ctx, store.NewUser{Email: "cache@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	v := written{kind: "license", owner: u.ID, pt: "KEY-CACHE", sealed: true}
	w.write(t, &v)
	// A second instance: the same keysets, its own cache.
	second, err := keyring.Open(ctx, store.NewKeysets(w.db.Pool), w.kek, keyring.WithPersonalKeyCache(ttl, 16))
	if err != nil {
		t.Fatal(err)
	}
	_, ct, err := w.read(v)
	if err != nil {
		t.Fatal(err)
	}
	open := func(kr *keyring.Keyring) error {
		_, err := store.OpenPersonal(ctx, w.db.Pool, kr, u.ID, w.loc(v), ct)
		return err
	}
	if err := open(second); err != nil {
		t.Fatalf("second instance before deletion: %v", err)
	}
	if err := open(w.kr); err != nil {
		t.Fatalf("first instance before deletion: %v", err)
	}
	if _, err := w.db.ShredUser(ctx, u.ID, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if err := open(w.kr); !errors.Is(err, keyring.ErrPersonalKeyGone) {
		t.Errorf("the deleting instance right after: err = %v, want ErrPersonalKeyGone", err)
	}
	// The second instance may still open it from its cache, but only
	// until the TTL has passed since it loaded the key (before the
	// deletion): a busy machine only makes more time pass.
	time.Sleep(ttl + 50*time.Millisecond)
	if err := open(second); !errors.Is(err, keyring.ErrPersonalKeyGone) {
		t.Errorf("the other instance after the TTL: err = %v, want ErrPersonalKeyGone", err)
	}
}

// BenchmarkOpenPersonal puts opening a personal value beside the baseline
// of a keyring-only decryption, in one run: with the personal-key cache
// (the steady state of a burst of reads of one user's values) and without
// it (one user_keys read, a keyring decryption and a keyset parse each).
func BenchmarkOpenPersonal(b *testing.B) {
	ctx := context.Background()
	db := pgtest.New(b)
	kek := localKEK(b)
	kr, err := keyring.Open(ctx, store.NewKeysets(db.Pool), kek)
	if err != nil {
		b.Fatal(err)
	}
	uncached, err := keyring.Open(ctx, store.NewKeysets(db.Pool), kek, keyring.WithPersonalKeyCache(0, 0))
	if err != nil {
		b.Fatal(err)
	}
	u, err := db.CreateUser(ctx, store.NewUser{Email: "bench@example.com"})
	if err != nil {
		b.Fatal(err)
	}
	loc := keyring.Location{Table: "whitelist_users", Column: "license_key", RowID: uuid.NewString()}
	pt := []byte("KEY-0123456789ABCDEF")
	plain, err := kr.Encrypt(ctx, loc, pt)
	if err != nil {
		b.Fatal(err)
	}
	var sealedCT []byte
	if err := db.InTx(ctx, func(tx pgx.Tx) error {
		sealedCT, err = store.SealPersonal(ctx, tx, kr, u.ID, loc, pt)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		kr   *keyring.Keyring
		ct   []byte
	}{{"keyring-only", kr, plain}, {"personal-cached", kr, sealedCT}, {"personal-uncached", uncached, sealedCT}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := store.OpenPersonal(ctx, db.Pool, c.kr, u.ID, loc, c.ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
