package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store/pgtest"
)

// A refused import (a non-empty target without --replace, a source column
// with no place) says why once, on stderr, with exit 1, and prints no
// report of empty tables, in text or JSON.
func TestImportRefusalPrintsTheErrorOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := supabaseSource(t, "schema.sql", "sample.sql")
	dropSrc := supabaseSource(t, "schema.sql", "sample.sql")
	conn, err := pgx.Connect(ctx, dropSrc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `ALTER TABLE public.products ADD COLUMN legacy_notes text`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	dir := tempDir(t)
	key := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	full := pgtest.URL(t)
	db := pgtest.Open(t, full)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO users (email) VALUES ('someone@example.com')`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	cases := []struct {
		name, target, source, want string
	}{
		{"non-empty target", full, src, "--replace"},
		{"column with no place", pgtest.URL(t), dropSrc, "--allow-drop products.legacy_notes"},
	}
	for _, c := range cases {
		for _, extra := range [][]string{nil, {"--json"}} {
			args := append([]string{"import-supabase", "--source", c.source}, extra...)
			r := run(t, dir, baseEnv("DATABASE_URL="+c.target, "KEYRING_MASTER_KEY_FILE="+key), args...)
			if r.code != 1 {
				t.Fatalf("%s %v: exit %d (stderr %q), want 1", c.name, extra, r.code, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("%s %v: stdout %q, want nothing", c.name, extra, r.stdout)
			}
			line := lastLine(r.stderr)
			if !strings.Contains(line, c.want) {
				t.Errorf("%s %v: last line %q, want it to name %s", c.name, extra, line, c.want)
			}
			msg := strings.TrimPrefix(line, "vectabase: ")
			if n := strings.Count(r.stdout+r.stderr, msg); n != 1 {
				t.Errorf("%s %v: the error appears %d times in the output, want once:\n%s%s", c.name, extra, n, r.stdout, r.stderr)
			}
		}
	}
}
