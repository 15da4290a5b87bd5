package backup_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/backup"
	"github.com/vectabase/vectabase/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fixture is a migrated database with a few users and encrypted secret
// versions, a local KEK and a backup service over both.
type fixture struct {
	url     string
	db      *store.DB
	keyPath string
	kek     keyring.KEK
	kr      *keyring.Keyring
	dir     string
	svc     *backup.Service
	audit   *recorder
	secrets map[string]string // secret name -> plaintext of version 1
}

// recorder is an in-memory Auditor.
type recorder struct {
	mu     sync.Mutex
	events []vectabase.AuditEvent
}

func (r *recorder) Record(_ context.Context, ev vectabase.AuditEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

func (r *recorder) actions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Action+":"+e.Result)
	}
	return out
}

func newKEK(t testing.TB) (string, keyring.KEK) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := local.GenerateKeyFile(path); err != nil {
		t.Fatalf("GenerateKeyFile err = %v, want nil", err)
	}
	return path, loadKEK(t, path)
}

func loadKEK(t testing.TB, path string) keyring.KEK {
	t.Helper()
	k, err := local.NewFromFile(path)
	if err != nil {
		t.Fatalf("NewFromFile(%s) err = %v, want nil", path, err)
	}
	return k
}

func setup(t *testing.T, opts ...backup.Option) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{url: pgtest.URL(t), dir: t.TempDir(), audit: &recorder{}, secrets: map[string]string{}}
	f.db = pgtest.Open(t, f.url)
	f.keyPath, f.kek = newKEK(t)
	kr, err := keyring.Open(ctx, store.NewKeysets(f.db.Pool), f.kek)
	if err != nil {
		t.Fatalf("keyring.Open err = %v, want nil", err)
	}
	f.kr = kr
	for i := range 3 {
		if _, err := f.db.CreateUser(ctx, store.NewUser{Email: fmt.Sprintf("u%d@example.com", i), PasswordHash: "x", Role: "user"}); err != nil {
			t.Fatalf("CreateUser err = %v", err)
		}
	}
	for i := range 2 {
		f.putSecret(t, fmt.Sprintf("s%d", i), fmt.Sprintf("plaintext-%d-do-not-leak", i))
	}
	opts = append([]backup.Option{backup.WithAuditor(f.audit), backup.WithVersion("test")}, opts...)
	svc, err := backup.New(backup.Config{Dir: f.dir, Keep: 3}, f.url, f.kek, opts...)
	if err != nil {
		t.Fatalf("backup.New err = %v, want nil", err)
	}
	f.svc = svc
	return f
}

func (f *fixture) putSecret(t *testing.T, name, value string) {
	t.Helper()
	ctx := context.Background()
	var id string
	if err := f.db.Pool.QueryRow(ctx, `INSERT INTO secrets (name, current_version, created_by, updated_by) VALUES ($1, 1, 'test', 'test') RETURNING id`, name).Scan(&id); err != nil {
		t.Fatalf("insert secret: %v", err)
	}
	ct, err := f.kr.Encrypt(ctx, keyring.Location{Table: "secret_versions", Column: "value", RowID: name + "@1"}, []byte(value))
	if err != nil {
		t.Fatalf("Encrypt err = %v", err)
	}
	if _, err := f.db.Pool.Exec(ctx, `INSERT INTO secret_versions (secret_id, version, value, created_by) VALUES ($1, 1, $2, 'test')`, id, ct); err != nil {
		t.Fatalf("insert secret version: %v", err)
	}
	f.secrets[name] = value
}

// readSecrets decrypts every secret's version 1 in db with kr.
func readSecrets(t *testing.T, db *store.DB, kr *keyring.Keyring) map[string]string {
	t.Helper()
	ctx := context.Background()
	rows, err := db.Pool.Query(ctx, `SELECT s.name, v.value FROM secrets s JOIN secret_versions v ON v.secret_id = s.id WHERE v.version = 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name string
		var ct []byte
		if err := rows.Scan(&name, &ct); err != nil {
			t.Fatal(err)
		}
		pt, err := kr.Decrypt(ctx, keyring.Location{Table: "secret_versions", Column: "value", RowID: name + "@1"}, ct)
		if err != nil {
			t.Fatalf("Decrypt(%s) err = %v, want nil", name, err)
		}
		out[name] = string(pt)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func count(t *testing.T, db *store.DB, table string) int64 {
	t.Helper()
	var n int64
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func TestRoundTrip_CreateListVerifyRestore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	f := setup(t, backup.WithRegisterer(reg))

	var phases []string
	b, err := f.svc.Create(ctx, backup.LocalOperator, func(p backup.Progress) { phases = append(phases, p.Phase) })
	if err != nil {
		t.Fatalf("Create err = %v, want nil", err)
	}
	if len(phases) == 0 || phases[len(phases)-1] != "dump" {
		t.Errorf("Create progress phases = %v, want dump reports", phases)
	}
	if got := b.RowCounts["public.users"]; got != 3 {
		t.Errorf("manifest users = %d, want 3", got)
	}
	if got := b.RowCounts["public.secret_versions"]; got != 2 {
		t.Errorf("manifest secret_versions = %d, want 2", got)
	}
	if b.SchemaVersion < 2 || b.DumpSize == 0 || len(b.DumpSHA256) != 64 || b.VectabaseVersion != "test" {
		t.Errorf("manifest = %+v, want schema version >= 2, a size, a SHA-256 and version test", b.Manifest)
	}
	if got := testutil.ToFloat64(gauge(t, reg)); got != float64(b.CreatedAt.Unix()) {
		t.Errorf("last success gauge = %v, want %d", got, b.CreatedAt.Unix())
	}
	st, err := os.Stat(filepath.Join(f.dir, b.ID+".vbak"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode = %v (err %v), want 0600", st.Mode().Perm(), err)
	}
	raw, _ := os.ReadFile(filepath.Join(f.dir, b.ID+".vbak"))
	for _, v := range f.secrets {
		if bytes.Contains(raw, []byte(v)) {
			t.Errorf("backup file holds a secret's plaintext")
		}
	}
	if bytes.Contains(raw, []byte("u0@example.com")) {
		t.Errorf("backup file holds a user's email in plaintext: the dump is not encrypted")
	}

	list, err := f.svc.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != b.ID || list[0].Problem != "" {
		t.Fatalf("List = %+v, %v; want the one backup", list, err)
	}
	if diff := cmp.Diff(b.RowCounts, list[0].RowCounts); diff != "" {
		t.Errorf("List row counts (-create +list):\n%s", diff)
	}

	v, err := f.svc.Verify(ctx, backup.LocalOperator, b.ID, nil)
	if err != nil || !v.OK || v.Rows == 0 {
		t.Fatalf("Verify = %+v, %v; want OK", v, err)
	}

	// Change the live data, then restore: the backup's rows come back.
	if _, err := f.db.Pool.Exec(ctx, "DELETE FROM users WHERE email = 'u0@example.com'"); err != nil {
		t.Fatal(err)
	}
	f.putSecret(t, "after-backup", "written-after-the-backup")
	r, err := f.svc.Restore(ctx, backup.LocalOperator, b.ID, nil)
	if err != nil {
		t.Fatalf("Restore err = %v, want nil", err)
	}
	if r.Tables != len(b.RowCounts) {
		t.Errorf("Restore tables = %d, want %d", r.Tables, len(b.RowCounts))
	}
	f.db.Pool.Reset()
	if got := count(t, f.db, "users"); got != 3 {
		t.Errorf("users after restore = %d, want 3", got)
	}
	want := map[string]string{"s0": "plaintext-0-do-not-leak", "s1": "plaintext-1-do-not-leak"}
	if err := f.kr.Reload(ctx); err != nil {
		t.Fatalf("Reload err = %v", err)
	}
	if diff := cmp.Diff(want, readSecrets(t, f.db, f.kr)); diff != "" {
		t.Errorf("secrets after restore (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"backup.create:success", "backup.verify:success", "backup.restore:success"}, f.audit.actions()); diff != "" {
		t.Errorf("audit actions (-want +got):\n%s", diff)
	}
	for _, e := range f.audit.events {
		if strings.Contains(fmt.Sprint(e), "do-not-leak") || e.ResourceID != b.ID || e.ActorType != vectabase.ActorLocalOperator {
			t.Errorf("audit event %+v: want resource %s, local operator, no secret", e, b.ID)
		}
	}
}

func gauge(t *testing.T, reg *prometheus.Registry) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "vectabase_backup_last_success_timestamp_seconds" {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
			g.Set(mf.GetMetric()[0].GetGauge().GetValue())
			return g
		}
	}
	t.Fatal("vectabase_backup_last_success_timestamp_seconds not registered")
	return nil
}

// A backup restores into an empty database on another "machine" given
// only the KEK file: the keysets come back with the data.
func TestRestoreOnNewMachineWithOnlyTheKEK(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	b, err := f.svc.Create(ctx, backup.LocalOperator, nil)
	if err != nil {
		t.Fatalf("Create err = %v", err)
	}
	emptyURL := pgtest.EmptyURL(t)
	kek := loadKEK(t, f.keyPath)
	svc, err := backup.New(backup.Config{Dir: f.dir}, emptyURL, kek)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Restore(ctx, backup.LocalOperator, b.ID, nil); err != nil {
		t.Fatalf("Restore into an empty database err = %v, want nil", err)
	}
	db := pgtest.Open(t, emptyURL)
	kr, err := keyring.Open(ctx, store.NewKeysets(db.Pool), kek)
	if err != nil {
		t.Fatalf("keyring.Open on the restored database err = %v, want nil", err)
	}
	if diff := cmp.Diff(f.secrets, readSecrets(t, db, kr)); diff != "" {
		t.Errorf("secrets on the new machine (-want +got):\n%s", diff)
	}
}

// A passphrase KEK's salt lives in the database; the backup carries it,
// so the passphrase alone restores onto a database with another salt.
func TestPassphraseKEKRestoresWithTheBackupsSalt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const pass = "correct horse battery staple"
	saltA, saltB := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	kekA, err := local.NewFromPassphrase(pass, saltA)
	if err != nil {
		t.Fatal(err)
	}
	url, dir := pgtest.URL(t), t.TempDir()
	svc, err := backup.New(backup.Config{Dir: dir}, url, kekA, backup.WithKEKParams(saltA))
	if err != nil {
		t.Fatal(err)
	}
	b, err := svc.Create(ctx, backup.LocalOperator, nil)
	if err != nil {
		t.Fatalf("Create err = %v", err)
	}
	kekB, err := local.NewFromPassphrase(pass, saltB)
	if err != nil {
		t.Fatal(err)
	}
	derive := backup.WithKEKForParams(func(_ context.Context, salt []byte) (keyring.KEK, error) {
		return local.NewFromPassphrase(pass, salt)
	})
	other, err := backup.New(backup.Config{Dir: dir}, pgtest.EmptyURL(t), kekB, derive)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Restore(ctx, backup.LocalOperator, b.ID, nil); err != nil {
		t.Errorf("Restore with the passphrase and the backup's salt err = %v, want nil", err)
	}
	wrong, err := backup.New(backup.Config{Dir: dir}, url, kekB, backup.WithKEKForParams(func(_ context.Context, salt []byte) (keyring.KEK, error) {
		return local.NewFromPassphrase("another passphrase", salt)
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := backup.Authenticate(ctx, wrong, b.ID); !errors.Is(err, backup.ErrWrongKEK) {
		t.Errorf("Authenticate with another passphrase err = %v, want ErrWrongKEK", err)
	}
}

func TestWrongKEKIsRefusedClearly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	b, err := f.svc.Create(ctx, backup.LocalOperator, nil)
	if err != nil {
		t.Fatalf("Create err = %v", err)
	}
	_, other := newKEK(t)
	svc, err := backup.New(backup.Config{Dir: f.dir}, f.url, other)
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.Verify(ctx, backup.LocalOperator, b.ID, nil)
	if !errors.Is(err, backup.ErrWrongKEK) || vectabase.ErrorCode(err) != vectabase.EVALIDATION || !strings.Contains(vectabase.ErrorMessage(err), "KEK") {
		t.Errorf("Verify with another KEK err = %v, want VALIDATION_FAILED wrapping ErrWrongKEK and naming the KEK", err)
	}
	if _, err := f.db.Pool.Exec(ctx, "DELETE FROM secret_versions"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Restore(ctx, backup.LocalOperator, b.ID, nil); !errors.Is(err, backup.ErrWrongKEK) {
		t.Errorf("Restore with another KEK err = %v, want ErrWrongKEK", err)
	}
	if got := count(t, f.db, "secret_versions"); got != 0 {
		t.Errorf("secret_versions after a refused restore = %d, want 0 (untouched)", got)
	}
}

// TestProperty_AnyTamperedByteIsDetected: changing any one byte of a
// backup file (header, wrapped key, body, manifest, tag, trailer) makes it
// fail authentication with ErrCorrupt or ErrWrongKEK, never pass.
func TestProperty_AnyTamperedByteIsDetected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	b, err := f.svc.Create(ctx, backup.LocalOperator, nil)
	if err != nil {
		t.Fatalf("Create err = %v", err)
	}
	path := filepath.Join(f.dir, b.ID+".vbak")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := backup.Authenticate(ctx, f.svc, b.ID); err != nil {
		t.Fatalf("Authenticate(untouched) err = %v, want nil", err)
	}
	rapid.Check(t, func(rt *rapid.T) {
		// Half the draws land in the small header and trailer, where a
		// uniform draw would rarely go.
		off := rapid.OneOf(
			rapid.IntRange(0, len(orig)-1),
			rapid.IntRange(0, 200),
			rapid.IntRange(len(orig)-300, len(orig)-1),
		).Draw(rt, "offset")
		flip := byte(rapid.IntRange(1, 255).Draw(rt, "xor"))
		bad := bytes.Clone(orig)
		bad[off] ^= flip
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			rt.Fatal(err)
		}
		err := backup.Authenticate(ctx, f.svc, b.ID)
		if !errors.Is(err, backup.ErrCorrupt) && !errors.Is(err, backup.ErrWrongKEK) {
			rt.Fatalf("byte %d of %d xor %#x: Authenticate err = %v, want ErrCorrupt or ErrWrongKEK", off, len(orig), flip, err)
		}
		if vectabase.ErrorCode(err) != vectabase.EVALIDATION {
			rt.Fatalf("byte %d: error code %s, want VALIDATION_FAILED", off, vectabase.ErrorCode(err))
		}
	})
	// Truncation anywhere is detected too.
	for _, n := range []int{0, 10, len(orig) / 2, len(orig) - 1} {
		if err := os.WriteFile(path, orig[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := backup.Authenticate(ctx, f.svc, b.ID); !errors.Is(err, backup.ErrCorrupt) && !errors.Is(err, backup.ErrWrongKEK) {
			t.Errorf("truncated to %d bytes: err = %v, want ErrCorrupt", n, err)
		}
	}
}

// One tampered body byte in each region fails verify and restore as a
// whole, through the real pg_restore.
func TestTamperedBackupFailsVerifyAndRestore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	b, err := f.svc.Create(ctx, backup.LocalOperator, nil)
	if err != nil {
		t.Fatalf("Create err = %v", err)
	}
	path := filepath.Join(f.dir, b.ID+".vbak")
	orig, _ := os.ReadFile(path)
	cases := map[string]int{"header": 9, "body": len(orig) / 2, "manifest": len(orig) - 200}
	for name, off := range cases {
		bad := bytes.Clone(orig)
		bad[off] ^= 0x40
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Verify(ctx, backup.LocalOperator, b.ID, nil); vectabase.ErrorCode(err) != vectabase.EVALIDATION {
			t.Errorf("%s tampered: Verify err = %v, want VALIDATION_FAILED", name, err)
		}
		if _, err := f.svc.Restore(ctx, backup.LocalOperator, b.ID, nil); vectabase.ErrorCode(err) != vectabase.EVALIDATION {
			t.Errorf("%s tampered: Restore err = %v, want VALIDATION_FAILED", name, err)
		}
	}
	if got := count(t, f.db, "users"); got != 3 {
		t.Errorf("users after refused restores = %d, want 3", got)
	}
}

// A restore that fails midway (the last of many segments does not
// authenticate, after psql has already dropped the schema and replayed
// most of the dump) leaves the live database exactly as it was.
func TestRestoreFailingMidwayLeavesDatabaseUnchanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	backup.UseSmallSegments(f.svc)
	b, err := f.svc.Create(ctx, backup.LocalOperator, nil)
	if err != nil {
		t.Fatalf("Create err = %v", err)
	}
	if b.BodySize < 5*4096 {
		t.Fatalf("body is %d bytes, want several 4 KB segments", b.BodySize)
	}
	if _, err := f.db.Pool.Exec(ctx, "DELETE FROM users WHERE email = 'u0@example.com'"); err != nil {
		t.Fatal(err)
	}
	f.putSecret(t, "after-backup", "written-after-the-backup")

	path := filepath.Join(f.dir, b.ID+".vbak")
	orig, _ := os.ReadFile(path)
	bad := bytes.Clone(orig)
	// The trailer holds the manifest's and tag's lengths; the body ends
	// where the manifest starts.
	n := len(orig)
	mLen := int(binary.BigEndian.Uint32(orig[n-16 : n-12]))
	tLen := int(binary.BigEndian.Uint32(orig[n-12 : n-8]))
	bodyEnd := n - 16 - tLen - mLen
	bad[bodyEnd-100] ^= 0x01 // inside the last segment
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	var done int64
	_, err = f.svc.Restore(ctx, backup.LocalOperator, b.ID, func(p backup.Progress) { done = p.Done })
	if !errors.Is(err, backup.ErrCorrupt) {
		t.Fatalf("Restore(tampered last segment) err = %v, want ErrCorrupt", err)
	}
	if done < b.DumpSize/2 {
		t.Errorf("the failed restore streamed %d of %d dump bytes, want it to fail midway (over half)", done, b.DumpSize)
	}
	f.db.Pool.Reset()
	if got := count(t, f.db, "users"); got != 2 {
		t.Errorf("users after the failed restore = %d, want 2 (as before it)", got)
	}
	want := map[string]string{"s0": "plaintext-0-do-not-leak", "s1": "plaintext-1-do-not-leak", "after-backup": "written-after-the-backup"}
	if diff := cmp.Diff(want, readSecrets(t, f.db, f.kr)); diff != "" {
		t.Errorf("secrets after the failed restore (-want +got):\n%s", diff)
	}
	if got := f.audit.actions(); got[len(got)-1] != "backup.restore:failure" {
		t.Errorf("last audit action = %v, want backup.restore:failure", got)
	}

	// The untouched file, restore cancelled once it has begun (Ctrl-C):
	// unchanged too.
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	_, err = f.svc.Restore(cctx, backup.LocalOperator, b.ID, func(p backup.Progress) {
		if p.Done > 0 {
			cancel()
		}
	})
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Restore err = %v, want context.Canceled", err)
	}
	f.db.Pool.Reset()
	if got := count(t, f.db, "users"); got != 2 {
		t.Errorf("users after the cancelled restore = %d, want 2", got)
	}

	// The untouched file still restores.
	if _, err := f.svc.Restore(ctx, backup.LocalOperator, b.ID, nil); err != nil {
		t.Fatalf("Restore(untouched) err = %v, want nil", err)
	}
	f.db.Pool.Reset()
	if got := count(t, f.db, "users"); got != 3 {
		t.Errorf("users after the good restore = %d, want 3", got)
	}
}

// A restore whose SQL fails midway (a CHECK that looks at a table the dump
// loads later: the schema and earlier tables are already replayed when
// it fails) rolls back as a whole, with psql's error as the reason.
func TestRestoreSQLErrorMidwayLeavesDatabaseUnchanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	if _, err := f.db.Pool.Exec(ctx, `
		CREATE TABLE zz_ref (v int);
		INSERT INTO zz_ref VALUES (1);
		CREATE FUNCTION ref_ok(int) RETURNS bool LANGUAGE sql AS 'SELECT EXISTS (SELECT 1 FROM public.zz_ref WHERE v = $1)';
		CREATE TABLE aa_dep (v int CHECK (public.ref_ok(v)));
		INSERT INTO aa_dep VALUES (1);`); err != nil {
		t.Fatal(err)
	}
	b, err := f.svc.Create(ctx, backup.LocalOperator, nil)
	if err != nil {
		t.Fatalf("Create err = %v", err)
	}
	if _, err := f.db.Pool.Exec(ctx, "DELETE FROM users WHERE email = 'u0@example.com'"); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.Restore(ctx, backup.LocalOperator, b.ID, nil)
	if err == nil || !strings.Contains(err.Error(), "rolled back") || !strings.Contains(err.Error(), "check constraint") {
		t.Fatalf("Restore err = %v, want a rollback naming the check constraint", err)
	}
	t.Logf("restore error: %v", err)
	f.db.Pool.Reset()
	if got := count(t, f.db, "users"); got != 2 {
		t.Errorf("users after the failed restore = %d, want 2 (as before it)", got)
	}
	if got := count(t, f.db, "aa_dep"); got != 1 {
		t.Errorf("aa_dep after the failed restore = %d, want 1", got)
	}
	if _, err := f.svc.Verify(ctx, backup.LocalOperator, b.ID, nil); err == nil {
		t.Errorf("Verify of a backup that cannot be restored err = nil, want an error")
	}
}

func TestRetentionKeepsNewest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	now := time.Date(2026, 1, 9, 12, 0, 0, 0, time.UTC)
	backup.SetClock(f.svc, func() time.Time { now = now.Add(time.Hour); return now })
	var ids, manual []string
	for i := range 6 {
		// Scheduled and manual backups interleaved, manual ones oldest
		// and newest.
		if i == 0 || i == 5 {
			b, err := f.svc.Create(ctx, backup.LocalOperator, nil)
			if err != nil {
				t.Fatalf("Create err = %v", err)
			}
			manual = append(manual, b.ID)
			continue
		}
		b, err := backup.CreateScheduled(ctx, f.svc)
		if err != nil {
			t.Fatalf("CreateScheduled err = %v", err)
		}
		ids = append(ids, b.ID)
	}
	// A scheduled run makes a fifth scheduled one and keeps the newest
	// three scheduled; the manual backups stay, whatever their age.
	newID, err := f.svc.RunScheduled(ctx, backup.EveryFor(time.Hour), 3)
	if err != nil || newID == "" {
		t.Fatalf("RunScheduled = %q, %v; want a new backup", newID, err)
	}
	list, err := f.svc.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, b := range list {
		got[b.ID] = b.Kind
	}
	want := map[string]string{newID: "scheduled", ids[3]: "scheduled", ids[2]: "scheduled", manual[0]: "manual", manual[1]: "manual"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after retention (-want +got):\n%s", diff)
	}
	if _, err := f.svc.Prune(ctx, backup.LocalOperator, 0); vectabase.ErrorCode(err) != vectabase.EVALIDATION {
		t.Errorf("Prune(0) err = %v, want VALIDATION_FAILED", err)
	}
}

// Two instances (two services on one database, each with a backup
// directory of its own, as on two machines) running the schedule at the
// same moment make one backup per period between them: the session lock
// on the direct connection lets one in, and the record of the period's
// run keeps the other out afterwards. The next period makes one more.
func TestScheduledBackupOncePerPeriodAcrossInstances(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	other, err := backup.New(backup.Config{Dir: t.TempDir(), Keep: 3}, f.url, f.kek, backup.WithAuditor(f.audit))
	if err != nil {
		t.Fatal(err)
	}
	sched, err := backup.ParseSchedule("@hourly")
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now().UTC().Truncate(time.Hour).Add(5 * time.Minute)
	now := func() time.Time { return clock }
	backup.SetClock(f.svc, now)
	backup.SetClock(other, now)
	period := func() []string {
		t.Helper()
		var wg sync.WaitGroup
		ids := make([]string, 4)
		errs := make([]error, 4)
		for i := range ids {
			svc := f.svc
			if i%2 == 1 {
				svc = other
			}
			wg.Add(1)
			go func() { defer wg.Done(); ids[i], errs[i] = svc.RunScheduled(ctx, sched, 3) }()
		}
		wg.Wait()
		var made []string
		for i, id := range ids {
			if errs[i] != nil && vectabase.ErrorCode(errs[i]) != vectabase.ECONFLICT {
				t.Fatalf("RunScheduled err = %v", errs[i])
			}
			if id != "" {
				made = append(made, id)
			}
		}
		return made
	}
	if made := period(); len(made) != 1 {
		t.Fatalf("four runs at once in one period made %v, want one backup", made)
	}
	if made := period(); len(made) != 0 {
		t.Fatalf("runs later in the same period made %v, want none", made)
	}
	clock = clock.Add(time.Hour)
	if made := period(); len(made) != 1 {
		t.Fatalf("the next period made %v, want one backup", made)
	}
	var runs int
	if err := f.db.Pool.QueryRow(ctx, "SELECT count(*) FROM backup_schedule_runs").Scan(&runs); err != nil || runs != 2 {
		t.Errorf("backup_schedule_runs rows = %d (%v), want 2", runs, err)
	}
}

// The schedule loop makes backups until its context ends and keeps the
// newest keep of them.
func TestRunScheduleMakesAndPrunes(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.svc.RunSchedule(ctx, backup.EveryFor(50*time.Millisecond), 2); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		creates := 0
		for _, a := range f.audit.actions() {
			if a == "backup.create:success" {
				creates++
			}
		}
		if creates >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the schedule made %d backups in 30 s, want 3", creates)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	list, err := f.svc.List(context.Background())
	if err != nil || len(list) > 2 {
		t.Errorf("after the schedule: %d backups (err %v), want at most 2", len(list), err)
	}
	for _, e := range f.audit.events {
		if e.ActorType != vectabase.ActorSystem {
			t.Errorf("scheduled %s by %s, want the system actor", e.Action, e.ActorType)
		}
	}
}

func TestGetDeleteAndBadIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	b, err := f.svc.Create(ctx, backup.LocalOperator, nil)
	if err != nil {
		t.Fatalf("Create err = %v", err)
	}
	if g, err := f.svc.Get(ctx, b.ID); err != nil || g.DumpSHA256 != b.DumpSHA256 {
		t.Errorf("Get = %+v, %v; want the backup", g, err)
	}
	for _, id := range []string{"", "../etc/passwd", "20260109T120000Z-zzzzzzzz", strings.Repeat("9", 300)} {
		if _, err := f.svc.Get(ctx, id); vectabase.ErrorCode(err) != vectabase.EVALIDATION {
			t.Errorf("Get(%q) err = %v, want VALIDATION_FAILED", id, err)
		}
	}
	missing := "20200101T000000Z-00000000"
	if _, err := f.svc.Get(ctx, missing); vectabase.ErrorCode(err) != vectabase.ENOTFOUND {
		t.Errorf("Get(missing) err = %v, want NOT_FOUND", err)
	}
	if _, err := f.svc.Verify(ctx, backup.LocalOperator, missing, nil); vectabase.ErrorCode(err) != vectabase.ENOTFOUND {
		t.Errorf("Verify(missing) err = %v, want NOT_FOUND", err)
	}
	if err := f.svc.Delete(ctx, backup.LocalOperator, b.ID); err != nil {
		t.Errorf("Delete err = %v", err)
	}
	if err := f.svc.Delete(ctx, backup.LocalOperator, b.ID); vectabase.ErrorCode(err) != vectabase.ENOTFOUND {
		t.Errorf("Delete again err = %v, want NOT_FOUND", err)
	}
	// A stray file in the directory is listed with its problem, not fatal.
	if err := os.WriteFile(filepath.Join(f.dir, missing+".vbak"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := f.svc.List(ctx)
	if err != nil || len(list) != 1 || list[0].Problem == "" {
		t.Errorf("List with a junk file = %+v, %v; want it listed with a problem", list, err)
	}
}

func TestParseSchedule(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 9, 12, 34, 56, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"@hourly": time.Date(2026, 1, 9, 13, 0, 0, 0, time.UTC),
		"@daily":  time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC),
		"6h":      at.Add(6 * time.Hour),
	} {
		s, err := backup.ParseSchedule(in)
		if err != nil || s.Off() {
			t.Errorf("ParseSchedule(%q) = %v, %v; want on", in, s, err)
			continue
		}
		if got := s.Next(at); !got.Equal(want) {
			t.Errorf("ParseSchedule(%q).Next(%v) = %v, want %v", in, at, got, want)
		}
	}
	for _, in := range []string{"", "off"} {
		if s, err := backup.ParseSchedule(in); err != nil || !s.Off() {
			t.Errorf("ParseSchedule(%q) = %v, %v; want off", in, s, err)
		}
	}
	for _, in := range []string{"daily", "10s", "-1h", "@weekly", "1d"} {
		if _, err := backup.ParseSchedule(in); err == nil {
			t.Errorf("ParseSchedule(%q) err = nil, want an error", in)
		}
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"", "off", "@hourly", "@daily", "24h", "1m", "59s", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := backup.ParseSchedule(s)
		if err != nil {
			return
		}
		now := time.Now()
		if !sc.Off() && !sc.Next(now).After(now) {
			t.Errorf("ParseSchedule(%q).Next(now) is not after now", s)
		}
	})
}
