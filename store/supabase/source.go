package supabase

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/store"
)

// column is one column of a source or target table.
type column struct {
	Name string `json:"name"`
	Type string `json:"type"`

	// Target only: what happens when an import leaves the column out.
	notNull    bool
	hasDefault bool
	generated  bool
}

// srcTable is a table (or view) of the source: auth.users, auth.identities,
// vault.decrypted_secrets or an application table in public.
type srcTable struct {
	Schema  string   `json:"schema"`
	Name    string   `json:"table"`
	Columns []column `json:"columns"`
}

func (t srcTable) qualified() string { return t.Schema + "." + t.Name }

func (t srcTable) index(name string) int {
	for i, c := range t.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// source is where rows come from: a live Supabase database or a JSON export
// made earlier. Rows are text in PostgreSQL's own representation; a nil value
// is NULL and a non-nil empty one is the empty string.
type source interface {
	// tables describes auth.users, auth.identities, vault.decrypted_secrets
	// and every application table in public that the source has.
	tables(ctx context.Context) ([]srcTable, error)
	// count returns how many rows scan will give.
	count(ctx context.Context, t srcTable) (int64, error)
	// scan calls fn for every row of t with the named columns, in order. The
	// row is only valid during the call. A source that is lost midway
	// returns its error, never a short table.
	scan(ctx context.Context, t srcTable, cols []string, fn func(row [][]byte) error) error
	// refreshTokens counts Supabase's sessions, which are not carried over.
	refreshTokens(ctx context.Context) (int64, error)
	// String names the source without credentials.
	String() string
	close(ctx context.Context)
}

// pgSource reads a Supabase database inside one REPEATABLE READ READ ONLY
// transaction, so every table comes from the same snapshot and foreign keys
// between them hold even while the project is still live. Rows come through
// a cursor, a batch at a time, so no table is ever held in memory. Only the
// simple query protocol is used, which Supabase's pooler also carries.
type pgSource struct {
	conn  *pgx.Conn
	url   string
	batch int
}

func openPGSource(ctx context.Context, url string, batch int) (*pgSource, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("source %s: invalid URL", store.Redact(url))
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("source %s: %s", store.Redact(url), flatten(err))
	}
	// The settings are SET LOCAL inside the snapshot rather than startup
	// parameters, which a transaction-mode pooler (Supabase's on port
	// 6543) may refuse.
	for _, q := range append([]string{"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"}, textSettings...) {
		if _, err := conn.Exec(ctx, q); err != nil {
			conn.Close(ctx)
			return nil, fmt.Errorf("source %s: begin snapshot: %s", store.Redact(url), flatten(err))
		}
	}
	return &pgSource{conn: conn, url: url, batch: batch}, nil
}

// textSettings fix the text forms of dates, intervals, floats and bytea,
// so a value read as text is the same value the target parses from it.
// (pgx connects with client_encoding UTF8.)
var textSettings = []string{
	"SET LOCAL DateStyle = 'ISO, MDY'",
	"SET LOCAL IntervalStyle = 'postgres'",
	"SET LOCAL TimeZone = 'UTC'",
	"SET LOCAL extra_float_digits = 3",
	"SET LOCAL bytea_output = 'hex'",
}

func (s *pgSource) String() string { return store.Redact(s.url) }

func (s *pgSource) close(ctx context.Context) {
	_, _ = s.conn.Exec(ctx, "ROLLBACK")
	_ = s.conn.Close(ctx)
}

func (s *pgSource) tables(ctx context.Context) ([]srcTable, error) {
	rows, err := s.conn.Query(ctx, `
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE (n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition)
   OR (n.nspname = 'auth' AND c.relname IN ('users', 'identities') AND c.relkind IN ('r', 'p'))
   OR (n.nspname = 'vault' AND c.relname = 'decrypted_secrets' AND c.relkind IN ('v', 'r', 'm'))
ORDER BY n.nspname, c.relname, a.attnum`)
	if err != nil {
		return nil, fmt.Errorf("source: read the catalog: %w", err)
	}
	defer rows.Close()
	var out []srcTable
	for rows.Next() {
		var schema, table, name, typ string
		if err := rows.Scan(&schema, &table, &name, &typ); err != nil {
			return nil, fmt.Errorf("source: read the catalog: %w", err)
		}
		if n := len(out); n == 0 || out[n-1].Schema != schema || out[n-1].Name != table {
			out = append(out, srcTable{Schema: schema, Name: table})
		}
		t := &out[len(out)-1]
		t.Columns = append(t.Columns, column{Name: name, Type: typ})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("source: read the catalog: %w", err)
	}
	return out, nil
}

func (s *pgSource) count(ctx context.Context, t srcTable) (int64, error) {
	var n int64
	if err := s.conn.QueryRow(ctx, "SELECT count(*) FROM "+qualify(t.Schema, t.Name)).Scan(&n); err != nil {
		return 0, fmt.Errorf("source: count %s: %w", t.qualified(), err)
	}
	return n, nil
}

func (s *pgSource) refreshTokens(ctx context.Context) (int64, error) {
	var exists bool
	if err := s.conn.QueryRow(ctx, `SELECT to_regclass('auth.refresh_tokens') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return 0, err
	}
	var n int64
	if err := s.conn.QueryRow(ctx, `SELECT count(*) FROM auth.refresh_tokens`).Scan(&n); err != nil {
		return 0, fmt.Errorf("source: count auth.refresh_tokens: %w", err)
	}
	return n, nil
}

const cursorName = "vectabase_import"

func (s *pgSource) scan(ctx context.Context, t srcTable, cols []string, fn func(row [][]byte) error) error {
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = quoteIdent(c)
	}
	q := "DECLARE " + cursorName + " NO SCROLL CURSOR FOR SELECT " + strings.Join(quoted, ", ") + " FROM " + qualify(t.Schema, t.Name)
	if _, err := s.conn.Exec(ctx, q); err != nil {
		return err
	}
	fetch := fmt.Sprintf("FETCH FORWARD %d FROM %s", s.batch, cursorName)
	for {
		rows, err := s.conn.Query(ctx, fetch)
		if err != nil {
			return err
		}
		n := 0
		for rows.Next() {
			n++
			if err := fn(rows.RawValues()); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if n < s.batch {
			break
		}
	}
	_, err := s.conn.Exec(ctx, "CLOSE "+cursorName)
	return err
}

// errSourceLost marks a failure to read the source, as opposed to a row
// the target refused.
var errSourceLost = errors.New("source read failed")

func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

func qualify(schema, name string) string { return pgx.Identifier{schema, name}.Sanitize() }
