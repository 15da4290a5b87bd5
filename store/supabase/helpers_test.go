package supabase_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/store/supabase"
	"github.com/vectabase/vectabase/store/supabase/supabasetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fixture is one of the repository's Supabase fixtures (supabasetest).
func fixture(t testing.TB, name string) string {
	t.Helper()
	return supabasetest.File(name)
}

// generateSQL is generate.sql with psql's variables resolved.
func generateSQL(t testing.TB, scale int) string {
	return supabasetest.Generate(scale)
}

func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// newSource is a fresh Supabase-shaped database holding schema.sql and then
// each of sqls (multi-statement scripts, run over the simple protocol).
func newSource(t testing.TB, sqls ...string) string {
	t.Helper()
	url := pgtest.EmptyURL(t)
	conn := connect(t, url)
	for _, s := range append([]string{fixture(t, "schema.sql")}, sqls...) {
		if _, err := conn.Exec(context.Background(), s); err != nil {
			t.Fatalf("load source: %v", err)
		}
	}
	return url
}

// target is a fresh migrated Vectabase database with its keyring.
type target struct {
	url  string
	conn *pgx.Conn
	kr   *keyring.Keyring
}

func newTarget(t testing.TB) *target {
	t.Helper()
	url := pgtest.URL(t)
	db := pgtest.Open(t, url)
	return &target{url: url, conn: connect(t, url), kr: keyringtest.New(t, db.Pool)}
}

func (tg *target) run(t testing.TB, opts supabase.Options) (*supabase.Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return supabase.Import(ctx, tg.conn, tg.kr, opts)
}

func (tg *target) mustRun(t testing.TB, opts supabase.Options) *supabase.Report {
	t.Helper()
	rep, err := tg.run(t, opts)
	if err != nil {
		t.Fatalf("Import err = %v, want nil", err)
	}
	return rep
}

// snapshot is every data table's content as text, to show a failed import
// changed nothing.
func (tg *target) snapshot(t testing.TB) map[string]string {
	t.Helper()
	ctx := context.Background()
	rows, err := tg.conn.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, tb := range tables {
		var s *string
		q := fmt.Sprintf(`SELECT string_agg(t::text, E'\n' ORDER BY t::text) FROM %s t`, pgx.Identifier{tb}.Sanitize())
		if err := tg.conn.QueryRow(ctx, q).Scan(&s); err != nil {
			t.Fatal(err)
		}
		if s != nil {
			out[tb] = *s
		}
	}
	return out
}

func (tg *target) count(t testing.TB, table string) int64 {
	t.Helper()
	var n int64
	if err := tg.conn.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
