// Package benchenv sets up what the HTTP load harnesses under bench/ share:
// a migrated database (DATABASE_URL, or a throwaway cluster with no
// durability) and a keyring on a fresh local master key.
package benchenv

import (
	"context"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/migrations"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgcluster"
)

// Database returns the URL of a migrated database: DATABASE_URL when set,
// otherwise a throwaway cluster's. stop removes what it started.
func Database(ctx context.Context) (url string, stop func(), err error) {
	url, stop = os.Getenv("DATABASE_URL"), func() {}
	if url == "" {
		c, stopCluster, err := pgcluster.StartThrowaway(ctx, map[string]string{"max_connections": "100"})
		if err != nil {
			return "", nil, err
		}
		url, stop = c.URL("postgres"), stopCluster
	}
	m, err := migrations.Open(url)
	if err != nil {
		stop()
		return "", nil, err
	}
	defer m.Close()
	if _, err := m.Up(ctx); err != nil {
		stop()
		return "", nil, err
	}
	return url, stop, nil
}

// Keyring opens a keyring on db under a new local master key kept in a
// temporary directory; cleanup removes the key.
func Keyring(ctx context.Context, db *store.DB) (kr *keyring.Keyring, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "vectabase-bench-key-")
	if err != nil {
		return nil, nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	path := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(path); err != nil {
		cleanup()
		return nil, nil, err
	}
	kek, err := local.NewFromFile(path)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	kr, err = keyring.Open(ctx, store.NewKeysets(db.Pool), kek)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return kr, cleanup, nil
}

// Env is a harness's database and keyring.
type Env struct {
	URL string
	DB  *store.DB
	KR  *keyring.Keyring
}

// Open is Database, a pool of maxConns on it (slow-query tracing off: a
// harness drives the database hard on purpose) and Keyring. cleanup closes
// and removes all of it.
func Open(ctx context.Context, maxConns int32) (env *Env, cleanup func(), err error) {
	url, stop, err := Database(ctx)
	if err != nil {
		return nil, nil, err
	}
	db, err := store.Open(ctx, store.Config{URL: url, MaxConns: maxConns, SlowQueryMS: -1}, zerolog.Nop(), nil)
	if err != nil {
		stop()
		return nil, nil, err
	}
	kr, removeKey, err := Keyring(ctx, db)
	if err != nil {
		db.Close()
		stop()
		return nil, nil, err
	}
	return &Env{URL: url, DB: db, KR: kr}, func() {
		removeKey()
		db.Close()
		stop()
	}, nil
}
