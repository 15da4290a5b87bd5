package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// `vectabase keys seal-personal` seals a value written before personal
// keys under its owner's key, audits the batch, reads the same after, and
// has nothing to do the second time.
func TestKeysSealPersonal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newKeyringOnlyProfile(t, "cus_BEFORE_PERSONAL_KEYS")
	dir, env, db, kr, u, loc := f.dir, keysEnv(f.url, f.keyFile), f.db, f.kr, f.user, f.loc

	sealedNow := func(r result) map[string]int {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("keys seal-personal: exit %d, stderr %q", r.code, r.stderr)
		}
		var out struct{ Tables []store.SealCount }
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("keys seal-personal --json: %v\n%s", err, r.stdout)
		}
		m := map[string]int{}
		for _, c := range out.Tables {
			m[c.Table] = c.Sealed
		}
		return m
	}
	if got := sealedNow(run(t, dir, env, "keys", "seal-personal", "--json")); got["profiles"] != 1 {
		t.Errorf("first run sealed %v, want the one profile", got)
	}
	var now []byte
	if err := db.Pool.QueryRow(ctx, `SELECT stripe_customer_id FROM profiles WHERE id = $1`, u.ID).Scan(&now); err != nil {
		t.Fatal(err)
	}
	if inner, err := kr.Decrypt(ctx, loc, now); err != nil || !keyring.IsPersonallySealed(inner) || strings.Contains(string(inner), "cus_") {
		t.Errorf("the keyring layer after sealing = %q, %v; want the sealed inner ciphertext", inner, err)
	}
	if pt, err := store.OpenPersonal(ctx, db.Pool, kr, u.ID, loc, now); err != nil || string(pt) != "cus_BEFORE_PERSONAL_KEYS" {
		t.Errorf("OpenPersonal after sealing = %q, %v", pt, err)
	}
	var audited int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE action = 'keys.seal_personal' AND resource_id = 'profiles'
		AND actor_type = 'local-operator' AND (details->>'rowsSealed')::int = 1`).Scan(&audited); err != nil || audited != 1 {
		t.Errorf("keys.seal_personal audit rows = %d (%v), want 1", audited, err)
	}
	for table, n := range sealedNow(run(t, dir, env, "keys", "seal-personal", "--json")) {
		if n != 0 {
			t.Errorf("second run sealed %d in %s, want nothing", n, table)
		}
	}
	if r := run(t, dir, env, "keys", "seal-personal", "extra"); r.code != 2 {
		t.Errorf("keys seal-personal extra: exit %d, want 2", r.code)
	}
}

// serve seals, once and in the background, a personal value a database
// upgraded from before per-user keys still holds keyring-only, audits it
// as the system, and marks the database so later starts skip the scan.
func TestServeSealsPersonalValuesOfAnUpgradedDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newKeyringOnlyProfile(t, "cus_UPGRADED")
	url, keyFile, db, kr, u, loc := f.url, f.keyFile, f.db, f.kr, f.user, f.loc
	if done, err := db.PersonalValuesSealed(ctx); err != nil || done {
		t.Fatalf("marker before serve = %v, %v; want none", done, err)
	}

	startServe(t, baseEnv("DATABASE_URL="+url, "KEYRING_MASTER_KEY_FILE="+keyFile))
	deadline := time.Now().Add(time.Minute)
	for {
		done, err := db.PersonalValuesSealed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not finish the sealing pass within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var now []byte
	if err := db.Pool.QueryRow(ctx, `SELECT stripe_customer_id FROM profiles WHERE id = $1`, u.ID).Scan(&now); err != nil {
		t.Fatal(err)
	}
	if inner, err := kr.Decrypt(ctx, loc, now); err != nil || !keyring.IsPersonallySealed(inner) {
		t.Errorf("the profile's value after serve's pass: sealed %v (%v), want sealed", keyring.IsPersonallySealed(inner), err)
	}
	if pt, err := store.OpenPersonal(ctx, db.Pool, kr, u.ID, loc, now); err != nil || string(pt) != "cus_UPGRADED" {
		t.Errorf("OpenPersonal after serve's pass = %q, %v", pt, err)
	}
	var audited int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE action = 'keys.seal_personal' AND resource_id = 'profiles'
		AND actor_type = 'system'`).Scan(&audited); err != nil || audited != 1 {
		t.Errorf("keys.seal_personal audit rows by the system = %d (%v), want 1", audited, err)
	}
}

// keyringOnlyProfile is a database after `keys init` holding one user
// whose profile's Stripe customer id is encrypted by the keyring alone, as
// a database from before per-user keys has it.
type keyringOnlyProfile struct {
	dir, keyFile, url string
	db                *store.DB
	kr                *keyring.Keyring
	user              store.User
	loc               keyring.Location
}

func newKeyringOnlyProfile(t *testing.T, value string) keyringOnlyProfile {
	t.Helper()
	ctx := context.Background()
	f := keyringOnlyProfile{dir: tempDir(t), url: pgtest.URL(t)}
	f.keyFile = filepath.Join(f.dir, "master.key")
	if r := run(t, f.dir, keysEnv(f.url, f.keyFile), "keys", "init"); r.code != 0 {
		t.Fatalf("keys init: exit %d, stderr %q", r.code, r.stderr)
	}
	f.db = pgtest.Open(t, f.url)
	f.kr = openTestKeyring(t, f.db, f.keyFile)
	u, err := f.db.CreateUser(ctx, store.NewUser{Email: "owner@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	f.user = u
	f.loc = keyring.Location{Table: "profiles", Column: "stripe_customer_id", RowID: u.ID}
	ct, err := f.kr.Encrypt(ctx, f.loc, []byte(value))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Pool.Exec(ctx, `UPDATE profiles SET stripe_customer_id = $2 WHERE id = $1`, u.ID, ct); err != nil {
		t.Fatal(err)
	}
	return f
}
