package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// Behind a real PgBouncer in transaction mode, a pool without DB_PGBOUNCER
// is refused at Open with ErrPooler and a message that names the fix and
// not the password; with it, the pool opens and runs queries (including
// ones pgx would otherwise prepare) many times over. A direct URL opens as
// before.
func TestOpenDetectsPgBouncer(t *testing.T) {
	t.Parallel()
	direct := pgtest.URL(t)
	pooled := pgtest.PgBouncer(t, direct, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	_, err := store.Open(ctx, store.Config{URL: pooled, MaxConns: 2}, zerolog.Nop(), nil)
	if !errors.Is(err, store.ErrPooler) {
		t.Fatalf("Open(pgbouncer URL, DB_PGBOUNCER unset) err = %v, want ErrPooler", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "DB_PGBOUNCER=true") || strings.Contains(msg, "pgtest@") || !strings.Contains(msg, "xxxxx") {
		t.Errorf("refusal %q: want the fix named and the password masked", msg)
	}

	// A pool that must be direct is refused behind PgBouncer even with
	// DB_PGBOUNCER, naming DATABASE_DIRECT_URL.
	_, err = store.Open(ctx, store.Config{URL: pooled, MaxConns: 2, PgBouncer: true, Direct: true}, zerolog.Nop(), nil)
	if !errors.Is(err, store.ErrPooler) || !strings.Contains(err.Error(), "DATABASE_DIRECT_URL") {
		t.Fatalf("Open(pgbouncer URL, Direct) err = %v, want ErrPooler naming DATABASE_DIRECT_URL", err)
	}

	db, err := store.Open(ctx, store.Config{URL: pooled, MaxConns: 4, PgBouncer: true}, zerolog.Nop(), nil)
	if err != nil {
		t.Fatalf("Open(pgbouncer URL, DB_PGBOUNCER=true) err = %v, want nil", err)
	}
	defer db.Close()
	for i := 0; i < 50; i++ {
		var n int
		if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM users WHERE email <> $1", "x@example.com").Scan(&n); err != nil {
			t.Fatalf("query %d through pgbouncer: %v", i, err)
		}
	}

	d, err := store.Open(ctx, store.Config{URL: direct, MaxConns: 2}, zerolog.Nop(), nil)
	if err != nil {
		t.Fatalf("Open(direct URL) err = %v, want nil", err)
	}
	d.Close()
}
