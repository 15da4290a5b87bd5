package migrations_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/migrations"
	"github.com/vectabase/vectabase/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func tableCount(t *testing.T, url string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = 'public' AND table_name <> 'goose_db_version'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Migrating an empty database up, all the way down to zero, and up again
// must work and leave the same schema.
func TestMigrateUpDownUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.EmptyURL(t)
	m, err := migrations.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	n, err := m.Up(ctx)
	if err != nil {
		t.Fatalf("Up() err = %v, want nil", err)
	}
	if n == 0 {
		t.Fatal("Up() applied no migration")
	}
	tables := tableCount(t, url)
	// users, sessions, secrets, secret_versions, audit_logs and the 19
	// application tables of the Supabase schema (18) at least.
	if tables < 23 {
		t.Fatalf("after Up: %d tables, want at least 23", tables)
	}
	cur, latest, err := m.Versions(ctx)
	if err != nil || cur != latest {
		t.Fatalf("Versions() = %d, %d, %v; want current == latest", cur, latest, err)
	}

	down, err := m.Down(ctx, 0)
	if err != nil {
		t.Fatalf("Down(0) err = %v, want nil", err)
	}
	if down != n {
		t.Fatalf("Down(0) rolled back %d, want %d", down, n)
	}
	if got := tableCount(t, url); got != 0 {
		t.Fatalf("after Down to zero: %d tables remain", got)
	}
	if _, err := m.Up(ctx); err != nil {
		t.Fatalf("second Up() err = %v", err)
	}
	if got := tableCount(t, url); got != tables {
		t.Fatalf("after Up again: %d tables, want %d", got, tables)
	}
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if !s.Applied {
			t.Errorf("migration %d (%s) not applied", s.Version, s.Name)
		}
	}
}

func TestDownOneStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, err := migrations.Open(pgtest.EmptyURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	_, latest, _ := m.Versions(ctx)
	if n, err := m.Down(ctx, 1); err != nil || n != 1 {
		t.Fatalf("Down(1) = %d, %v; want 1, nil", n, err)
	}
	cur, _, _ := m.Versions(ctx)
	if cur >= latest {
		t.Fatalf("after Down(1) version %d, want below %d", cur, latest)
	}
}
