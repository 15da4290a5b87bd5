package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgcluster"
	"github.com/vectabase/vectabase/store/pgtest"
)

// Errors that say the database is down, restarting or failing over are
// Unavailable; errors about the statement itself are not.
func TestUnavailableClassifiesErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("boom"), false},
		{store.ErrNotFound, false},
		{pgx.ErrNoRows, false},
		{context.DeadlineExceeded, false},
		{fmt.Errorf("audit: %w", context.Canceled), false},
		{&pgconn.PgError{Code: "23505"}, false},
		{&pgconn.PgError{Code: "42P01"}, false},
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "57P03"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "53300"}, true},
		{&pgconn.PgError{Code: "25006"}, true},
		{fmt.Errorf("stores: %w", &pgconn.PgError{Code: "57P01"}), true},
		{fmt.Errorf("query: %w", pgconn.ErrConnClosed), true},
	} {
		if got := store.Unavailable(tc.err); got != tc.want {
			t.Errorf("Unavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// The real errors of a database that is not there, and of a connection
// the server ends (pg_terminate_backend: 57P01, as at a fast shutdown),
// are Unavailable.
func TestUnavailableOnRealFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	port, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	_, err = pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", port))
	if err == nil || !store.Unavailable(err) {
		t.Errorf("connect to a closed port: Unavailable(%v) = false, want true", err)
	}

	url := pgtest.URL(t)
	victim, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close(ctx)
	var pid uint32
	if err := victim.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	killer, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer killer.Close(ctx)
	if _, err := killer.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	_, err = victim.Exec(ctx, `SELECT 1`)
	if err == nil || !store.Unavailable(err) {
		t.Errorf("query on a terminated connection: Unavailable(%v) = false, want true", err)
	}
	_, err = victim.Exec(ctx, `SELECT 1`)
	if err == nil || !store.Unavailable(err) {
		t.Errorf("query on the closed connection after: Unavailable(%v) = false, want true", err)
	}
	if _, err := killer.Exec(ctx, `SELECT * FROM no_such_table`); store.Unavailable(err) {
		t.Errorf("unknown table: Unavailable(%v) = true, want false", err)
	}
}
