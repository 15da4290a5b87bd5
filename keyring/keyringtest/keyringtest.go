// Package keyringtest builds a real keyring for other packages' tests: a
// local KEK over a fresh key file and the keysets stored in the test's
// PostgreSQL database.
package keyringtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store"
)

// New opens a keyring on pool with a new local KEK kept in t.TempDir().
func New(t testing.TB, pool *pgxpool.Pool) *keyring.Keyring {
	t.Helper()
	path := t.TempDir() + "/master.key"
	if err := local.GenerateKeyFile(path); err != nil {
		t.Fatalf("GenerateKeyFile(%s) err = %v, want nil", path, err)
	}
	kek, err := local.NewFromFile(path)
	if err != nil {
		t.Fatalf("NewFromFile(%s) err = %v, want nil", path, err)
	}
	kr, err := keyring.Open(context.Background(), store.NewKeysets(pool), kek)
	if err != nil {
		t.Fatalf("keyring.Open err = %v, want nil", err)
	}
	return kr
}
