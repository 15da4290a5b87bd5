// Package keyringtest builds a real keyring for tests of the packages that
// use one: a local KEK over a fresh key file in the test's temp dir, and the
// keysets stored in the test's own PostgreSQL database.
package keyringtest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store"
)

// New opens a keyring whose keysets live in pool's database (migrated with
// 00002_keyring) under a new local master key. It fails the test on error.
func New(t testing.TB, pool *pgxpool.Pool) *keyring.Keyring {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := local.GenerateKeyFile(path); err != nil {
		t.Fatalf("local.GenerateKeyFile(%s) err = %v, want nil", path, err)
	}
	kek, err := local.NewFromFile(path)
	if err != nil {
		t.Fatalf("local.NewFromFile(%s) err = %v, want nil", path, err)
	}
	kr, err := keyring.Open(context.Background(), store.NewKeysets(pool), kek)
	if err != nil {
		t.Fatalf("keyring.Open err = %v, want nil", err)
	}
	return kr
}
