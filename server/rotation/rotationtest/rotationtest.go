// Package rotationtest seeds encrypted values fast and checks them, for the
// rotation tests and benchmark: rows go in with COPY after one encryption
// pass in Go, and Checksum decrypts every stored sensitive value.
package rotationtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/store"
)

// Fixture is what Seed made.
type Fixture struct {
	StoreID    string
	ProductIDs []string
	Secrets    []string // secret names, each with SecretVersions versions
}

// SecretVersions is how many versions each seeded secret has.
const SecretVersions = 3

// Value is the deterministic plaintext of product i: size bytes.
func Value(i, size int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 42))
	b := make([]byte, size)
	prefix := "https://dl.example/" + strconv.Itoa(i) + "/"
	n := copy(b, prefix)
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for j := n; j < size; j++ {
		b[j] = alphabet[r.IntN(len(alphabet))]
	}
	return b
}

// Seed inserts one user and store (with an encrypted stripe_account_id), n
// products whose download_url is the keyring ciphertext of Value(i, size),
// and secrets secrets with SecretVersions versions each, all under kr's
// primary key.
func Seed(t testing.TB, pool *pgxpool.Pool, kr *keyring.Keyring, n, size, secrets int) Fixture {
	t.Helper()
	ctx := context.Background()
	var f Fixture
	var userID string
	if err := pool.QueryRow(ctx, `INSERT INTO users (email) VALUES ($1) RETURNING id::text`,
		"seed-"+uuid.NewString()+"@example.com").Scan(&userID); err != nil {
		t.Fatalf("insert user: %v", err)
	}
	f.StoreID = uuid.NewString()
	acct, err := kr.Encrypt(ctx, keyring.Location{Table: "stores", Column: "stripe_account_id", RowID: f.StoreID}, []byte("acct_seed"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO stores (id, owner_id, name, slug, stripe_account_id) VALUES ($1, $2, 'seed', $3, $4)`,
		f.StoreID, userID, "seed-"+f.StoreID, acct); err != nil {
		t.Fatalf("insert store: %v", err)
	}
	// Rows are made as COPY asks for them, so a million values never sit
	// in memory at once.
	f.ProductIDs = make([]string, n)
	storeID := uuid.MustParse(f.StoreID)
	i := 0
	var copyErr error
	next := func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		id := uuid.New()
		f.ProductIDs[i] = id.String()
		ct, err := kr.Encrypt(ctx, keyring.Location{Table: "products", Column: "download_url", RowID: f.ProductIDs[i]}, Value(i, size))
		if err != nil {
			copyErr = err
			return nil, err
		}
		row := []any{id, storeID, "p" + strconv.Itoa(i), int32(100), ct}
		i++
		return row, nil
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"products"}, []string{"id", "store_id", "name", "price_cents", "download_url"},
		pgx.CopyFromFunc(next)); err != nil || copyErr != nil {
		t.Fatalf("copy products: %v %v", err, copyErr)
	}
	for s := range secrets {
		name := "seed_secret_" + strconv.Itoa(s)
		var sid string
		if err := pool.QueryRow(ctx, `INSERT INTO secrets (name, current_version, created_by, updated_by)
			VALUES ($1, $2, 'seed', 'seed') RETURNING id::text`, name, SecretVersions).Scan(&sid); err != nil {
			t.Fatalf("insert secret: %v", err)
		}
		for v := 1; v <= SecretVersions; v++ {
			loc := keyring.Location{Table: "secret_versions", Column: "value", RowID: name + "@" + strconv.Itoa(v)}
			ct, err := kr.Encrypt(ctx, loc, []byte(fmt.Sprintf("secret %d version %d", s, v)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pool.Exec(ctx, `INSERT INTO secret_versions (secret_id, version, value, created_by) VALUES ($1, $2, $3, 'seed')`,
				sid, v, ct); err != nil {
				t.Fatalf("insert secret version: %v", err)
			}
		}
		f.Secrets = append(f.Secrets, name)
	}
	if _, err := pool.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	return f
}

// Sum is a checksum of every stored sensitive value's plaintext, and how
// many ciphertexts each key made.
type Sum struct {
	Values int
	Digest string
	ByKey  map[uint32]int
}

// Checksum decrypts every value of every sensitive column present in the
// database and hashes (table, column, row id, plaintext) in key order. Any
// value that does not decrypt fails t.
func Checksum(t testing.TB, pool *pgxpool.Pool, kr *keyring.Keyring) Sum {
	t.Helper()
	ctx := context.Background()
	cols, err := policies.SensitiveColumns()
	if err != nil {
		t.Fatal(err)
	}
	if cols, err = store.ExistingColumns(ctx, pool, cols); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	sum := Sum{ByKey: map[uint32]int{}}
	for _, c := range cols {
		sql := fmt.Sprintf(`SELECT id::text, %[2]s FROM %[1]s WHERE %[2]s IS NOT NULL ORDER BY id`,
			pgx.Identifier{c.Table}.Sanitize(), pgx.Identifier{c.Column}.Sanitize())
		if c.Table == "secret_versions" {
			sql = `SELECT s.name || '@' || v.version, v.value FROM secret_versions v JOIN secrets s ON s.id = v.secret_id ORDER BY 1`
		}
		rows, err := pool.Query(ctx, sql)
		if err != nil {
			t.Fatalf("read %s: %v", c, err)
		}
		for rows.Next() {
			var id string
			var ct []byte
			if err := rows.Scan(&id, &ct); err != nil {
				t.Fatal(err)
			}
			pt, err := kr.Decrypt(ctx, keyring.Location{Table: c.Table, Column: c.Column, RowID: id}, ct)
			if err != nil {
				t.Fatalf("Decrypt(%s.%s row %s) err = %v, want nil", c.Table, c.Column, id, err)
			}
			kid, _ := keyring.KeyIDOf(ct)
			sum.ByKey[kid]++
			sum.Values++
			fmt.Fprintf(h, "%s.%s/%s/%d:", c.Table, c.Column, id, len(pt))
			h.Write(pt)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	sum.Digest = hex.EncodeToString(h.Sum(nil))
	return sum
}
