package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

func localKEK(t testing.TB) *local.KEK {
	t.Helper()
	path := t.TempDir() + "/master.key"
	if err := local.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	kek, err := local.NewFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return kek
}

func sensitiveColumns(t testing.TB) []policies.Column {
	t.Helper()
	cols, err := policies.SensitiveColumns()
	if err != nil {
		t.Fatal(err)
	}
	return cols
}

// TestKeysetsConcurrentStart: server instances opening the keyring at the
// same moment on an empty database end up with one keyset per name, and all
// use it.
func TestKeysetsConcurrentStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kek := localKEK(t)
	const n = 6
	krs := make([]*keyring.Keyring, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			kr, err := keyring.Open(ctx, store.NewKeysets(db.Pool), kek)
			if err != nil {
				t.Errorf("instance %d: keyring.Open err = %v, want nil", i, err)
			}
			krs[i] = kr
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	var names []string
	rows, _ := db.Pool.Query(ctx, `SELECT name FROM keyring_keysets ORDER BY name`)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"data", "index", "mac"}, names); diff != "" {
		t.Errorf("keyring_keysets rows (-want +got):\n%s", diff)
	}
	loc := keyring.Location{Table: "t", Column: "c", RowID: "1"}
	ct, err := krs[0].Encrypt(ctx, loc, []byte("shared"))
	if err != nil {
		t.Fatal(err)
	}
	for i, kr := range krs {
		if got, err := kr.Decrypt(ctx, loc, ct); err != nil || string(got) != "shared" {
			t.Errorf("instance %d Decrypt(instance 0's ciphertext) = %q, %v", i, got, err)
		}
	}
}

func TestKeysetsUpdateChecksVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	st := store.NewKeysets(db.Pool)
	a, err := st.CreateKeyset(ctx, keyring.StoredKeyset{Name: "data", Purpose: "aead", Wrapped: []byte{1}, KEKBackend: "local"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.CreateKeyset(ctx, keyring.StoredKeyset{Name: "index", Purpose: "prf", Wrapped: []byte{2}, KEKBackend: "local"})
	if err != nil {
		t.Fatal(err)
	}
	// A second create of a taken name keeps the first.
	again, err := st.CreateKeyset(ctx, keyring.StoredKeyset{Name: "data", Purpose: "aead", Wrapped: []byte{9}, KEKBackend: "local"})
	if err != nil || !bytes.Equal(again.Wrapped, []byte{1}) || again.Version != 1 {
		t.Fatalf("CreateKeyset(taken name) = %+v, %v; want the first keyset at version 1", again, err)
	}
	a.Wrapped, b.Wrapped = []byte{3}, []byte{4}
	if err := st.UpdateKeysets(ctx, []keyring.StoredKeyset{a, b}); err != nil {
		t.Fatalf("UpdateKeysets err = %v, want nil", err)
	}
	// Stale version on the second keyset: nothing changes.
	a.Version, a.Wrapped = 2, []byte{5}
	b.Wrapped = []byte{6}
	err = st.UpdateKeysets(ctx, []keyring.StoredKeyset{a, b})
	if !errors.Is(err, keyring.ErrConflict) {
		t.Fatalf("UpdateKeysets(stale) err = %v, want ErrConflict", err)
	}
	kss, err := st.Keysets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, ks := range kss {
		got[ks.Name] = fmt.Sprintf("v%d %x", ks.Version, ks.Wrapped)
	}
	if diff := cmp.Diff(map[string]string{"data": "v2 03", "index": "v2 04"}, got); diff != "" {
		t.Errorf("keysets after a refused update (-want +got):\n%s", diff)
	}
	if err := st.UpdateKeysets(ctx, []keyring.StoredKeyset{{Name: "nope", Version: 1}}); !errors.Is(err, keyring.ErrNotFound) {
		t.Errorf("UpdateKeysets(missing) err = %v, want ErrNotFound", err)
	}
}

func TestPassphraseSaltInDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	var wg sync.WaitGroup
	salts := make([][]byte, 6)
	for i := range salts {
		wg.Go(func() {
			s, err := keyring.PassphraseSalt(ctx, store.NewKeysets(db.Pool))
			if err != nil {
				t.Errorf("PassphraseSalt err = %v", err)
			}
			salts[i] = s
		})
	}
	wg.Wait()
	for i, s := range salts {
		if len(s) != 32 || !bytes.Equal(s, salts[0]) {
			t.Errorf("salt %d = %x, want salt 0 = %x", i, s, salts[0])
		}
	}
	// The derived KEK opens the keyring again after a restart.
	kek, err := local.NewFromPassphrase("correct horse", salts[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keyring.Open(ctx, store.NewKeysets(db.Pool), kek); err != nil {
		t.Fatal(err)
	}
	salt2, _ := keyring.PassphraseSalt(ctx, store.NewKeysets(db.Pool))
	kek2, _ := local.NewFromPassphrase("correct horse", salt2)
	if _, err := keyring.Open(ctx, store.NewKeysets(db.Pool), kek2); err != nil {
		t.Fatalf("reopen with the passphrase err = %v, want nil", err)
	}
	wrong, _ := local.NewFromPassphrase("wrong horse", salt2)
	if _, err := keyring.Open(ctx, store.NewKeysets(db.Pool), wrong); !errors.Is(err, keyring.ErrUnwrap) {
		t.Errorf("Open with a wrong passphrase err = %v, want ErrUnwrap", err)
	}
}

// row is one fixture row: its id (the associated data's row id) and the
// fixed columns that make it valid under the schema's constraints.
type row struct {
	id    string
	cols  []string
	vals  []any
	table string
}

// fixtures inserts the parent rows the tables with sensitive columns need,
// and returns a function making one insertable row per table. A table in
// the sensitive list without a fixture here fails the test, so a newly
// listed column cannot go untested.
func fixtures(t testing.TB, ctx context.Context, tx pgx.Tx) func(table string) row {
	t.Helper()
	id := func() string { return uuid.NewString() }
	user, store, product, system, devProduct := id(), id(), id(), id(), id()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO users (id, email) VALUES ($1, $2)`, []any{user, user + "@example.test"}},
		{`INSERT INTO stores (id, owner_id, name, slug) VALUES ($1, $2, 's', $3)`, []any{store, user, store}},
		{`INSERT INTO products (id, store_id, name, price_cents) VALUES ($1, $2, 'p', 100)`, []any{product, store}},
		{`INSERT INTO whitelist_systems (id, owner_id, name) VALUES ($1, $2, 'w')`, []any{system, user}},
		{`INSERT INTO developer_products (id, developer_id, name) VALUES ($1, $2, 'd')`, []any{devProduct, user}},
	} {
		if _, err := tx.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("fixture %q: %v", q.sql, err)
		}
	}
	n := 0
	return func(table string) row {
		n++
		rid := id()
		switch table {
		case "profiles":
			u := id()
			if _, err := tx.Exec(ctx, `INSERT INTO users (id) VALUES ($1)`, u); err != nil {
				t.Fatal(err)
			}
			return row{u, []string{"id"}, []any{u}, table}
		case "stores":
			return row{rid, []string{"id", "owner_id", "name", "slug"}, []any{rid, user, "s", rid}, table}
		case "products":
			return row{rid, []string{"id", "store_id", "name", "price_cents"}, []any{rid, store, "p", 1}, table}
		case "sales":
			return row{rid, []string{"id", "product_id", "store_id", "amount_cents"}, []any{rid, product, store, 1}, table}
		case "payment_transactions":
			return row{rid, []string{"id", "type", "amount_cents", "status"}, []any{rid, "checkout", 1, "completed"}, table}
		case "whitelist_users":
			return row{rid, []string{"id", "system_id", "roblox_user_id"}, []any{rid, system, n}, table}
		case "discord_servers":
			return row{rid, []string{"id", "guild_id", "owner_id"}, []any{rid, rid, user}, table}
		case "developer_subscriptions":
			return row{rid, []string{"id", "developer_id", "plan", "status"}, []any{rid, user, "pro", "active"}, table}
		case "whitelist_entries":
			return row{rid, []string{"id", "developer_product_id", "roblox_user_id"}, []any{rid, devProduct, n}, table}
		case "secret_versions":
			name := "secret-" + rid
			var sid string
			if err := tx.QueryRow(ctx, `INSERT INTO secrets (name, created_by, updated_by, current_version) VALUES ($1, 'test', 'test', 1) RETURNING id`, name).Scan(&sid); err != nil {
				t.Fatal(err)
			}
			// A secret version's associated data row id is "<name>@<version>".
			return row{name + "@1", []string{"secret_id", "version", "created_by"}, []any{sid, 1, "test"}, table}
		case "jwt_signing_keys":
			return row{rid, []string{"id", "public_key"}, []any{rid, make([]byte, 32)}, table}
		case "user_keys":
			// One personal key per user: its row id is the user's id.
			u := id()
			if _, err := tx.Exec(ctx, `INSERT INTO users (id) VALUES ($1)`, u); err != nil {
				t.Fatal(err)
			}
			return row{u, []string{"id"}, []any{u}, table}
		case "audit_signing_key":
			// One row, id 1: each iteration's transaction is rolled back.
			return row{"1", []string{"id", "origin", "verifier_key"}, []any{1, "o", "v"}, table}
		case "bot_role_grants":
			srv := id()
			if _, err := tx.Exec(ctx, `INSERT INTO discord_servers (id, guild_id, owner_id) VALUES ($1, $2, $3)`, srv, srv, user); err != nil {
				t.Fatal(err)
			}
			return row{rid, []string{"id", "discord_server_id", "guild_id", "discord_user_id", "role_id", "action", "command"},
				[]any{rid, srv, "1", "2", "3", "add", "redeem"}, table}
		}
		t.Fatalf("no fixture for table %q of the sensitive column list; add one", table)
		return row{}
	}
}

// TestProperty5_SensitiveColumnsHoldNoPlaintext claims: for every column in
// policies/sensitive_columns.json, a value written through the keyring is
// stored as bytes that differ from the plaintext and do not contain it (nor
// does its blind index), and reads back to the plaintext through the keyring.
func TestProperty5_SensitiveColumnsHoldNoPlaintext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr, err := keyring.Open(ctx, store.NewKeysets(db.Pool), localKEK(t))
	if err != nil {
		t.Fatal(err)
	}
	byTable := map[string][]policies.Column{}
	var tables []string
	for _, c := range sensitiveColumns(t) {
		if byTable[c.Table] == nil {
			tables = append(tables, c.Table)
		}
		byTable[c.Table] = append(byTable[c.Table], c)
	}
	rapid.Check(t, func(rt *rapid.T) {
		err := db.InTx(ctx, func(tx pgx.Tx) error {
			newRow := fixtures(t, ctx, tx)
			for _, table := range tables {
				r := newRow(table)
				plain := map[string][]byte{}
				cols, vals := r.cols, r.vals
				for _, c := range byTable[table] {
					// At least 8 bytes: a shorter value could turn up inside
					// random ciphertext by chance.
					pt := rapid.SliceOfN(rapid.Byte(), 8, 512).Draw(rt, c.String())
					plain[c.Column] = pt
					ct, err := kr.Encrypt(ctx, keyring.Location{Table: table, Column: c.Column, RowID: r.id}, pt)
					if err != nil {
						return err
					}
					cols, vals = append(cols, c.Column), append(vals, ct)
					if c.BlindIndex != "" {
						idx, err := kr.BlindIndex(table, c.Column, pt)
						if err != nil {
							return err
						}
						cols, vals = append(cols, c.BlindIndex), append(vals, idx)
					}
				}
				ph := make([]string, len(cols))
				for i := range ph {
					ph[i] = fmt.Sprintf("$%d", i+1)
				}
				sql := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", table, strings.Join(cols, ", "), strings.Join(ph, ", "))
				if _, err := tx.Exec(ctx, sql, vals...); err != nil {
					return fmt.Errorf("%s: %w", sql, err)
				}
				for _, c := range byTable[table] {
					checkStored(rt, ctx, tx, kr, c, r, plain[c.Column])
				}
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			rt.Fatal(err)
		}
	})
}

var errRollback = errors.New("rollback")

func checkStored(rt *rapid.T, ctx context.Context, tx pgx.Tx, kr *keyring.Keyring, c policies.Column, r row, pt []byte) {
	// Read the raw bytes back by the same key the row was made with.
	keyCol := "id"
	keyVal := any(r.id)
	if c.Table == "secret_versions" {
		keyCol, keyVal = "secret_id", r.vals[0]
	}
	var raw, idx []byte
	sql := fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s = $1", c.Column, orNull(c.BlindIndex), c.Table, keyCol)
	if err := tx.QueryRow(ctx, sql, keyVal).Scan(&raw, &idx); err != nil {
		rt.Fatalf("%s: %v", sql, err)
	}
	if bytes.Equal(raw, pt) || bytes.Contains(raw, pt) {
		rt.Fatalf("%s holds its plaintext", c)
	}
	if idx != nil && bytes.Contains(idx, pt) {
		rt.Fatalf("%s holds the plaintext of %s", c.BlindIndex, c)
	}
	got, err := kr.Decrypt(ctx, keyring.Location{Table: c.Table, Column: c.Column, RowID: r.id}, raw)
	if err != nil || !bytes.Equal(got, pt) {
		rt.Fatalf("Decrypt(stored %s) = %d bytes, %v; want the plaintext", c, len(got), err)
	}
}

func orNull(col string) string {
	if col == "" {
		return "NULL::bytea"
	}
	return col
}

// TestSchemaByteaColumnsAreListed: every bytea column of the live schema is
// either a sensitive column (keyring ciphertext) or explicitly listed as
// not encrypted with a reason, and every listed column exists as bytea.
func TestSchemaByteaColumnsAreListed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	rows, _ := db.Pool.Query(ctx, `
		SELECT table_name || '.' || column_name, data_type
		FROM information_schema.columns
		WHERE table_schema = 'public'`)
	type colType struct{ Name, Type string }
	all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[colType])
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, c := range all {
		types[c.Name] = c.Type
	}
	listed := map[string]string{}
	for _, c := range sensitiveColumns(t) {
		listed[c.String()] = "sensitive"
		if c.BlindIndex != "" {
			if got := types[c.Table+"."+c.BlindIndex]; got != "bytea" {
				t.Errorf("blind index %s.%s of %s has type %q in the schema, want bytea", c.Table, c.BlindIndex, c, got)
			}
		}
	}
	plain, err := policies.NotEncryptedColumns()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range plain {
		listed[c.String()] = "not encrypted"
	}
	var unlisted []string
	for name, typ := range types {
		if typ == "bytea" && listed[name] == "" {
			unlisted = append(unlisted, name)
		}
	}
	sort.Strings(unlisted)
	if len(unlisted) > 0 {
		t.Errorf("bytea columns in neither list of policies/sensitive_columns.json: %v", unlisted)
	}
	for name, kind := range listed {
		if got := types[name]; got != "bytea" {
			t.Errorf("%s column %s has type %q in the schema, want bytea", kind, name, got)
		}
	}
}

// TestCountCiphertextsByKeyID: counts follow the Tink key id of each stored
// value, across a DEK rotation, over every listed column.
func TestCountCiphertextsByKeyID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kr, err := keyring.Open(ctx, store.NewKeysets(db.Pool), localKEK(t))
	if err != nil {
		t.Fatal(err)
	}
	cols := sensitiveColumns(t)
	counts, err := store.CountCiphertextsByKeyID(ctx, db.Pool, cols)
	if err != nil || len(counts) != 0 {
		t.Fatalf("CountCiphertextsByKeyID(empty database) = %v, %v; want empty, nil", counts, err)
	}
	first := kr.PrimaryKeyID()
	put := func(tx pgx.Tx, newRow func(string) row, table, column string) {
		r := newRow(table)
		ct, err := kr.Encrypt(ctx, keyring.Location{Table: table, Column: column, RowID: r.id}, []byte("value"))
		if err != nil {
			t.Fatal(err)
		}
		cols := append(r.cols, column)
		vals := append(r.vals, ct)
		if table == "whitelist_users" {
			cols, vals = append(cols, "license_key_bidx"), append(vals, make([]byte, 32))
		}
		ph := make([]string, len(cols))
		for i := range ph {
			ph[i] = fmt.Sprintf("$%d", i+1)
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", table, strings.Join(cols, ","), strings.Join(ph, ",")), vals...); err != nil {
			t.Fatal(err)
		}
	}
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		newRow := fixtures(t, ctx, tx)
		put(tx, newRow, "stores", "stripe_account_id")
		put(tx, newRow, "whitelist_users", "license_key")
		if _, err := kr.RotateDEK(ctx); err != nil {
			return err
		}
		put(tx, newRow, "secret_versions", "value")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.CountCiphertextsByKeyID(ctx, db.Pool, cols)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]int64{first: 2, kr.PrimaryKeyID(): 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CountCiphertextsByKeyID (-want +got):\n%s", diff)
	}
	byCol, err := store.CountCiphertextsByColumn(ctx, db.Pool, cols)
	if err != nil {
		t.Fatal(err)
	}
	wantCols := []store.CiphertextCount{
		{Table: "secret_versions", Column: "value", KeyID: kr.PrimaryKeyID(), Count: 1},
		{Table: "stores", Column: "stripe_account_id", KeyID: first, Count: 1},
		{Table: "whitelist_users", Column: "license_key", KeyID: first, Count: 1},
	}
	if diff := cmp.Diff(wantCols, byCol); diff != "" {
		t.Errorf("CountCiphertextsByColumn (-want +got):\n%s", diff)
	}
	// A key still in use must not be destroyed: the caller checks counts.
	if got[first] == 0 {
		t.Fatal("first key shows no ciphertexts")
	}
}

// TestKeyringOpenWithWrongKEKOnDatabase: the start-up error for a wrong
// master key names the cause and holds no key material.
func TestKeyringOpenWithWrongKEKOnDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	if _, err := keyring.Open(ctx, store.NewKeysets(db.Pool), localKEK(t)); err != nil {
		t.Fatal(err)
	}
	_, err := keyring.Open(ctx, store.NewKeysets(db.Pool), localKEK(t))
	const want = `keyring: KEK cannot unwrap keyset "data": wrong master key or passphrase`
	if err == nil || err.Error() != want {
		t.Fatalf("Open with another key err = %v, want %q", err, want)
	}
}

// TestSensitiveColumnsRefusePlaintext: every listed column has a check
// constraint (migration 00002) that refuses a value the keyring did not
// make, so a plaintext write that bypasses the keyring fails.
func TestSensitiveColumnsRefusePlaintext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	for _, c := range sensitiveColumns(t) {
		var n int
		name := c.Table + "_" + c.Column + "_is_ciphertext"
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_constraint WHERE conname = $1 AND contype = 'c'`, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%s has no check constraint %s; add it to a migration", c, name)
			continue
		}
		for _, plaintext := range [][]byte{
			[]byte("pi_3NxYzPlaintextPaymentIntentIdentifier"),
			append([]byte{0x01}, []byte("short")...),
		} {
			err := db.InTx(ctx, func(tx pgx.Tx) error {
				r := fixtures(t, ctx, tx)(c.Table)
				cols, vals := append(r.cols, c.Column), append(r.vals, plaintext)
				// Siblings in the same table get well-formed values, so only
				// c's constraint can refuse the row.
				for _, o := range sensitiveColumns(t) {
					if o.Table != c.Table {
						continue
					}
					if o.Column != c.Column {
						cols, vals = append(cols, o.Column), append(vals, append([]byte{0x01}, make([]byte, 40)...))
					}
					if o.BlindIndex != "" {
						cols, vals = append(cols, o.BlindIndex), append(vals, make([]byte, 32))
					}
				}
				ph := make([]string, len(cols))
				for i := range ph {
					ph[i] = fmt.Sprintf("$%d", i+1)
				}
				_, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", c.Table, strings.Join(cols, ", "), strings.Join(ph, ", ")), vals...)
				return err
			})
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "23514" || pgErr.ConstraintName != name {
				t.Errorf("writing %d plaintext bytes to %s err = %v, want a check violation of %s", len(plaintext), c, err, name)
			}
		}
	}
}
