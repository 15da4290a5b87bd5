// Package keyringtest builds keyrings for tests: a local KEK on a fresh key
// file and keysets stored in the test's own database.
package keyringtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store"
)

// New opens a keyring whose keysets live in pool's database (created on
// first use) under a random local KEK. It fails the test on any error.
func New(t testing.TB, pool *pgxpool.Pool) *keyring.Keyring {
	t.Helper()
	path := t.TempDir() + "/master.key"
	if err := local.GenerateKeyFile(path); err != nil {
		t.Fatalf("keyringtest: %v", err)
	}
	kek, err := local.NewFromFile(path)
	if err != nil {
		t.Fatalf("keyringtest: %v", err)
	}
	kr, err := keyring.Open(context.Background(), store.NewKeysets(pool), kek)
	if err != nil {
		t.Fatalf("keyringtest: keyring.Open: %v", err)
	}
	return kr
}
