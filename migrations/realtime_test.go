package migrations_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/store/pgtest"
)

// A re-encryption (an UPDATE of sensitive columns only) announces nothing
// on the realtime channel; a change a subscriber can see does.
func TestRealtimeIgnoresSensitiveOnlyUpdates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	listen, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Close(ctx)
	if _, err := listen.Exec(ctx, "LISTEN vectabase_changes"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Shaped like keyring ciphertext, which the columns' checks require.
	ct := func(b byte) []byte { v := make([]byte, 40); v[0] = 1; v[39] = b; return v }
	var uid, sid, pid string
	if err := conn.QueryRow(ctx, `INSERT INTO users (email) VALUES ('rt@example.com') RETURNING id`).Scan(&uid); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `INSERT INTO stores (owner_id, name, slug) VALUES ($1, 's', 's') RETURNING id`, uid).Scan(&sid); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `INSERT INTO products (store_id, name, price_cents, download_url) VALUES ($1, 'p', 1, $2) RETURNING id`, sid, ct(1)).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	next := func() string {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		n, err := listen.WaitForNotification(wctx)
		if err != nil {
			return ""
		}
		return n.Payload
	}
	for range 2 { // the store's and the product's inserts
		if next() == "" {
			t.Fatal("an insert was not announced")
		}
	}
	if _, err := conn.Exec(ctx, `UPDATE products SET download_url = $2 WHERE id = $1`, pid, ct(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE products SET name = 'renamed' WHERE id = $1`, pid); err != nil {
		t.Fatal(err)
	}
	got := next()
	if !strings.Contains(got, `"renamed"`) {
		t.Fatalf("first notification after a re-encryption and a rename = %q, want the rename (the re-encryption announces nothing)", got)
	}
}

// The realtime triggers leave sensitive columns out of their change test;
// that list is written in SQL, so this keeps it in step with
// policies/sensitive_columns.json: every listed column (and its blind
// index) of a table with a realtime trigger is excluded.
func TestRealtimeTriggersExcludeEverySensitiveColumn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	cols, err := policies.SensitiveColumns()
	if err != nil {
		t.Fatal(err)
	}
	defs := map[string]string{}
	rows, err := conn.Query(ctx, `SELECT c.relname, pg_get_triggerdef(t.oid) FROM pg_trigger t
		JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname = 'vectabase_realtime_update'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var table, def string
		if err := rows.Scan(&table, &def); err != nil {
			t.Fatal(err)
		}
		defs[table] = def
	}
	if rows.Err() != nil || len(defs) == 0 {
		t.Fatalf("no realtime update triggers found: %v", rows.Err())
	}
	for _, c := range cols {
		def, ok := defs[c.Table]
		if !ok {
			continue
		}
		for _, name := range []string{c.Column, c.BlindIndex} {
			if name != "" && !strings.Contains(def, "'"+name+"'") {
				t.Errorf("trigger on %s does not leave out sensitive column %s: %s", c.Table, name, def)
			}
		}
	}
}
