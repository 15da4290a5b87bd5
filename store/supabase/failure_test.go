package supabase_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store/supabase"
)

// unchanged fails the test when the target differs from before.
func unchanged(t *testing.T, tg *target, before map[string]string) {
	t.Helper()
	if diff := cmp.Diff(before, tg.snapshot(t)); diff != "" {
		t.Errorf("target changed (-before +after):\n%s", diff)
	}
}

func TestImportSourceLostMidway(t *testing.T) {
	t.Parallel()
	src := newSource(t, generateSQL(t, 40))
	tg := newTarget(t)
	before := tg.snapshot(t)
	killer := connect(t, src)
	var once sync.Once
	_, err := tg.run(t, supabase.Options{Source: src, BatchSize: 100, Progress: func(p supabase.Progress) {
		// Once the largest table is under way, the source goes away.
		if strings.HasPrefix(p.Table, "public.api_request_logs") && p.Done >= 100 {
			once.Do(func() {
				_, err := killer.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
					WHERE datname = current_database() AND pid <> pg_backend_pid()`)
				if err != nil {
					t.Errorf("terminate the source: %v", err)
				}
			})
		}
	}})
	if err == nil {
		t.Fatal("Import err = nil after the source was terminated, want an error")
	}
	if vectabase.ErrorCode(err) != vectabase.EUNAVAILABLE || !strings.Contains(err.Error(), "public.api_request_logs") || !strings.Contains(err.Error(), "after row ") {
		t.Errorf("Import err = %v, want UNAVAILABLE naming public.api_request_logs and the last row", err)
	}
	unchanged(t, tg, before)
}

func TestImportDuplicateEmail(t *testing.T) {
	t.Parallel()
	// GoTrue's unique index is on email as written; Vectabase's on
	// lower(email), so two spellings of one address collide.
	src := newSource(t, fixture(t, "sample.sql"), `INSERT INTO auth.users (id, email, encrypted_password, created_at, updated_at)
		VALUES ('55555555-5555-5555-5555-555555555555', 'ALICE@example.com', NULL, now(), now())`)
	tg := newTarget(t)
	before := tg.snapshot(t)
	rep, err := tg.run(t, supabase.Options{Source: src})
	if vectabase.ErrorCode(err) != vectabase.ECONFLICT {
		t.Fatalf("Import err = %v, want CONFLICT", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "auth.users -> users") || !strings.Contains(msg, "users_email_key") {
		t.Errorf("Import err = %q, want the table and the constraint named", msg)
	}
	// The row is one of the two spellings, named by id.
	if !strings.Contains(msg, "row 11111111-1111-1111-1111-111111111111") && !strings.Contains(msg, "row 55555555-5555-5555-5555-555555555555") {
		t.Errorf("Import err = %q, want the row id", msg)
	}
	if strings.Contains(msg, "alice@example.com") || strings.Contains(strings.ToLower(rep.Error), "alice@") {
		t.Errorf("Import err = %q quotes the email", msg)
	}
	unchanged(t, tg, before)
}

func TestImportUnknownColumn(t *testing.T) {
	t.Parallel()
	src := newSource(t, fixture(t, "sample.sql"), `ALTER TABLE public.stores ADD COLUMN tiktok_handle text DEFAULT 'x'`)
	tg := newTarget(t)
	before := tg.snapshot(t)
	_, err := tg.run(t, supabase.Options{Source: src})
	if vectabase.ErrorCode(err) != vectabase.EVALIDATION || !strings.Contains(err.Error(), "stores.tiktok_handle") {
		t.Fatalf("Import err = %v, want VALIDATION_FAILED naming stores.tiktok_handle", err)
	}
	unchanged(t, tg, before)

	// --allow-drop leaves it behind, and says so in the report.
	rep := tg.mustRun(t, supabase.Options{Source: src, AllowDrop: []string{"stores.tiktok_handle"}})
	var dropped []string
	for _, tr := range rep.Tables {
		if tr.Source == "public.stores" {
			dropped = tr.Dropped
		}
	}
	if diff := cmp.Diff([]string{"tiktok_handle"}, dropped); diff != "" {
		t.Errorf("dropped columns (-want +got):\n%s", diff)
	}
	if got := tg.count(t, "stores"); got != 2 {
		t.Errorf("stores = %d, want 2", got)
	}
}

func TestImportUnknownTable(t *testing.T) {
	t.Parallel()
	src := newSource(t, fixture(t, "sample.sql"), `CREATE TABLE public.coupons (id uuid PRIMARY KEY, code text)`)
	tg := newTarget(t)
	_, err := tg.run(t, supabase.Options{Source: src})
	if vectabase.ErrorCode(err) != vectabase.EVALIDATION || !strings.Contains(err.Error(), "public.coupons") {
		t.Fatalf("Import err = %v, want VALIDATION_FAILED naming public.coupons", err)
	}
	tg.mustRun(t, supabase.Options{Source: src, AllowDrop: []string{"coupons.*"}})
}

func TestImportDryRun(t *testing.T) {
	t.Parallel()
	src := newSource(t, fixture(t, "sample.sql"))
	tg := newTarget(t)
	before := tg.snapshot(t)
	rep := tg.mustRun(t, supabase.Options{Source: src, DryRun: true})
	if rep.Committed || len(rep.Checks) == 0 || rep.Rows() == 0 {
		t.Errorf("dry run report: committed=%v checks=%d rows=%d, want uncommitted with checks and rows", rep.Committed, len(rep.Checks), rep.Rows())
	}
	for _, c := range rep.Checks {
		if !c.OK {
			t.Errorf("dry run check %s %s failed: %s", c.Name, c.Subject, c.Detail)
		}
	}
	unchanged(t, tg, before)
}

func TestImportBadRowNamesIt(t *testing.T) {
	t.Parallel()
	// A negative price passes Supabase (the check was added later there)
	// but not the target's CHECK: the error names the table and the row.
	src := newSource(t, fixture(t, "sample.sql"), `ALTER TABLE public.products DROP CONSTRAINT products_price_cents_check;
		UPDATE public.products SET price_cents = -1 WHERE id = '60000000-0000-0000-0000-000000000002'`)
	tg := newTarget(t)
	before := tg.snapshot(t)
	_, err := tg.run(t, supabase.Options{Source: src})
	if err == nil || !strings.Contains(err.Error(), "public.products -> products row 60000000-0000-0000-0000-000000000002") {
		t.Fatalf("Import err = %v, want the products row named", err)
	}
	unchanged(t, tg, before)
}

func TestImportOrphanNamesRow(t *testing.T) {
	t.Parallel()
	// An orphan the source let through (its foreign key dropped) is named by
	// the foreign-key check, and nothing commits.
	src := newSource(t, fixture(t, "sample.sql"), `ALTER TABLE public.sales DROP CONSTRAINT sales_product_id_fkey;
		UPDATE public.sales SET product_id = '60000000-0000-0000-0000-0000000000ff' WHERE id = '70000000-0000-0000-0000-000000000003'`)
	tg := newTarget(t)
	before := tg.snapshot(t)
	rep, err := tg.run(t, supabase.Options{Source: src})
	if err == nil || !strings.Contains(err.Error(), "sales row 70000000-0000-0000-0000-000000000003") {
		t.Fatalf("Import err = %v, want the sales row named", err)
	}
	failed := false
	for _, c := range rep.Checks {
		failed = failed || (!c.OK && strings.Contains(c.Name, "foreign key"))
	}
	if !failed {
		t.Errorf("report has no failed foreign-key check: %+v", rep.Checks)
	}
	unchanged(t, tg, before)
}

func TestImportExportAndFromDir(t *testing.T) {
	t.Parallel()
	src := newSource(t, fixture(t, "sample.sql"))
	dir := filepath.Join(t.TempDir(), "export")
	tg1 := newTarget(t)
	rep1 := tg1.mustRun(t, supabase.Options{Source: src, ExportDir: dir})
	st, err := os.Stat(filepath.Join(dir, "vault.decrypted_secrets.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v, mode %v, want 0600", err, st.Mode())
	}
	tg2 := newTarget(t)
	indexes := func(tg *target) (n int64) {
		if err := tg.conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := indexes(tg2)
	// Every table rebuilds its plain indexes after its load here, as big
	// tables do.
	rep2 := tg2.mustRun(t, supabase.Options{FromDir: dir, IndexRebuildRows: 1})
	if after := indexes(tg2); after != before {
		t.Errorf("indexes after the import: %d, want the %d before", after, before)
	}
	if rep1.Rows() != rep2.Rows() || rep2.Rows() == 0 {
		t.Errorf("rows from the source %d, from the export %d, want equal", rep1.Rows(), rep2.Rows())
	}
	// The two imports hold the same data, apart from ciphertexts (random
	// nonces) and keyring-specific hashes.
	for _, table := range []string{"users", "stores", "products", "api_request_logs", "bot_command_permissions"} {
		if a, b := tg1.count(t, table), tg2.count(t, table); a != b {
			t.Errorf("%s: %d rows from the source, %d from the export", table, a, b)
		}
	}
	var desc, name string
	if err := tg2.conn.QueryRow(context.Background(), `SELECT s.description, u.discord_username FROM stores s, users u
		WHERE s.slug = 'zoes-shop' AND u.discord_id = '309876543210987654'`).Scan(&desc, &name); err != nil || desc != "line one\nline two" || name != "carol" {
		t.Errorf("from the export: description %q, carol's Discord name %q (%v)", desc, name, err)
	}
	// A damaged export (a table file cut short) fails naming the file,
	// and the target stays as it was.
	tg3 := newTarget(t)
	before3 := tg3.snapshot(t)
	logs := filepath.Join(dir, "public.api_request_logs.json")
	raw, err := os.ReadFile(logs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logs, raw[:len(raw)*2/3], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tg3.run(t, supabase.Options{FromDir: dir}); err == nil || !strings.Contains(err.Error(), "public.api_request_logs.json") {
		t.Errorf("import of a truncated export: err = %v, want one naming the file", err)
	}
	unchanged(t, tg3, before3)

	// A second export into the same directory is refused.
	if _, err := tg1.run(t, supabase.Options{Source: src, ExportDir: dir, DryRun: true, Replace: true}); err == nil || !strings.Contains(err.Error(), "already holds an export") {
		t.Errorf("export into a directory holding an export: err = %v, want refusal", err)
	}
}

func TestImportNeverShowsTheSourcePassword(t *testing.T) {
	t.Parallel()
	src := newSource(t, fixture(t, "sample.sql"))
	u, err := url.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	// The test server trusts loopback, so any password connects.
	u.User = url.UserPassword(u.User.Username(), "hunter2-source-password")
	tg := newTarget(t)
	rep := tg.mustRun(t, supabase.Options{Source: u.String(), DryRun: true})
	js, _ := json.Marshal(rep)
	if strings.Contains(string(js), "hunter2") || rep.Source == "" {
		t.Errorf("report source %q holds the password", rep.Source)
	}
	// Nor does a failure to connect.
	u.Host = "127.0.0.1:1"
	rep, err = tg.run(t, supabase.Options{Source: u.String()})
	if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(rep.Error, "hunter2") {
		t.Errorf("connection failure err = %v, want an error without the password", err)
	}
}
