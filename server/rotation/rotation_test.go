package rotation_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/server/rotation"
	"github.com/vectabase/vectabase/server/rotation/rotationtest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault/alerts"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// memAuditor keeps audit events in memory.
type memAuditor struct {
	mu     sync.Mutex
	events []vectabase.AuditEvent
	fail   bool
}

func (a *memAuditor) Record(_ context.Context, ev vectabase.AuditEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return errors.New("audit store down")
	}
	a.events = append(a.events, ev)
	return nil
}

func (a *memAuditor) actions() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, ev := range a.events {
		out = append(out, ev.Action+":"+ev.Result)
	}
	return out
}

type env struct {
	db      *store.DB
	keyFile string
	kek     *local.KEK
	kr      *keyring.Keyring
	aud     *memAuditor
	svc     *rotation.Service
	reg     *prometheus.Registry
}

var testConfig = rotation.Config{BatchSize: 200, PollInterval: 20 * time.Millisecond, ReloadInterval: 50 * time.Millisecond}

func newKEK(t *testing.T) (string, *local.KEK) {
	t.Helper()
	path := t.TempDir() + "/master.key"
	if err := local.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	kek, err := local.NewFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, kek
}

func openKeyring(t *testing.T, db *store.DB, kek keyring.KEK) *keyring.Keyring {
	t.Helper()
	kr, err := keyring.Open(context.Background(), store.NewKeysets(db.Pool), kek)
	if err != nil {
		t.Fatalf("keyring.Open err = %v, want nil", err)
	}
	return kr
}

func newService(t *testing.T, db *store.DB, kr *keyring.Keyring, aud rotation.Auditor, cfg rotation.Config) *rotation.Service {
	t.Helper()
	svc, err := rotation.New(cfg, db, kr, aud, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func setup(t *testing.T, cfg rotation.Config) *env {
	t.Helper()
	e := &env{db: pgtest.New(t), aud: &memAuditor{}}
	e.keyFile, e.kek = newKEK(t)
	e.kr = openKeyring(t, e.db, e.kek)
	e.reg = prometheus.NewRegistry()
	svc, err := rotation.New(cfg, e.db, e.kr, e.aud, zerolog.Nop(), e.reg)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	return e
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A DEK rotation re-encrypts every sensitive value and secret version to
// the new key, each still decrypting to what it was, and is audited
// without any value in the audit trail.
func TestRotateDEKReencryptsEverything(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig)
	ctx := ctxT(t)
	rotationtest.Seed(t, e.db.Pool, e.kr, 1500, 200, 4)
	before := rotationtest.Checksum(t, e.db.Pool, e.kr)
	oldKey := e.kr.PrimaryKeyID()

	job, err := e.svc.RotateDEK(ctx, rotation.LocalOperator)
	if err != nil {
		t.Fatalf("RotateDEK err = %v, want nil", err)
	}
	if job.TargetKeyID == oldKey || job.TargetKeyID != e.kr.PrimaryKeyID() {
		t.Fatalf("job target %d, old key %d, primary %d", job.TargetKeyID, oldKey, e.kr.PrimaryKeyID())
	}
	if want := int64(before.Values); job.PendingAtStart != want {
		t.Errorf("PendingAtStart = %d, want %d", job.PendingAtStart, want)
	}
	done, err := e.svc.RunJob(ctx, job.ID, nil)
	if err != nil || done.State != store.JobDone {
		t.Fatalf("RunJob = %s, %v; want done, nil", done.State, err)
	}
	if done.Reencrypted != int64(before.Values) {
		t.Errorf("Reencrypted = %d, want %d", done.Reencrypted, before.Values)
	}
	after := rotationtest.Checksum(t, e.db.Pool, e.kr)
	if after.Digest != before.Digest || after.Values != before.Values {
		t.Fatalf("checksum after rotation %+v, before %+v", after, before)
	}
	if len(after.ByKey) != 1 || after.ByKey[job.TargetKeyID] != after.Values {
		t.Errorf("values per key after rotation = %v, want all %d under %d", after.ByKey, after.Values, job.TargetKeyID)
	}
	p, err := e.svc.Progress(ctx)
	if err != nil || p.Job == nil || p.Job.State != store.JobDone || p.PendingValues != 0 || p.PercentDone != 100 {
		t.Errorf("Progress = %+v, %v", p, err)
	}
	if got := metricValue(t, e.reg, "vectabase_rotation_reencrypted_total"); got != float64(before.Values) {
		t.Errorf("vectabase_rotation_reencrypted_total = %v, want %d", got, before.Values)
	}
	if got := metricValue(t, e.reg, "vectabase_rotation_pending_values"); got != 0 {
		t.Errorf("vectabase_rotation_pending_values = %v, want 0", got)
	}
	got := strings.Join(e.aud.actions(), " ")
	for _, want := range []string{"keys.rotate_dek:success", "keys.reencrypt_done:success"} {
		if !strings.Contains(got, want) {
			t.Errorf("audit actions %q lack %q", got, want)
		}
	}
	raw, _ := json.Marshal(e.aud.events)
	for _, secret := range []string{"https://dl.example/", "acct_seed", "secret 0 version"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("audit events hold a plaintext value %q", secret)
		}
	}
}

// API-style writes from an instance whose keyring still has the old
// primary, while two workers on two instances share a rotation: no write
// is lost and nothing is left under the old key.
func TestConcurrentWritesAndTwoWorkers(t *testing.T) {
	t.Parallel()
	cfg := testConfig
	cfg.BatchSize = 100
	cfg.Settle = 1500 * time.Millisecond
	// Products get several key ranges, and one instance runs two workers.
	cfg.ShardRows, cfg.Workers = 500, 2
	e := setup(t, cfg)
	ctx := ctxT(t)
	const n = 3000
	f := rotationtest.Seed(t, e.db.Pool, e.kr, n, 200, 3)
	oldKey := e.kr.PrimaryKeyID()

	// The API instance and a second worker instance open their keyrings
	// before the rotation, so they start with the old primary.
	api := openKeyring(t, e.db, e.kek)
	kr2 := openKeyring(t, e.db, e.kek)
	svc2 := newService(t, e.db, kr2, e.aud, cfg)

	job, err := e.svc.RotateDEK(ctx, rotation.LocalOperator)
	if err != nil {
		t.Fatal(err)
	}
	units, err := store.NewRotations(e.db.Pool).Units(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	shards := 0
	for _, u := range units {
		if u.Table == "products" {
			shards++
		}
	}
	if shards < 2 {
		t.Fatalf("products split into %d key ranges, want several", shards)
	}

	expected := make([][]byte, n)
	for i := range n {
		expected[i] = rotationtest.Value(i, 200)
	}
	var stop atomic.Bool
	var writes, staleWrites atomic.Int64
	var wg sync.WaitGroup
	writerErr := make(chan error, 1)
	wg.Add(1)
	go func() { // the API: read-modify-write of random products
		defer wg.Done()
		r := rand.New(rand.NewPCG(1, 2))
		lastReload := time.Now()
		for !stop.Load() {
			// Like a serving instance, reload the keysets periodically;
			// until the first reload it writes under the old key.
			if time.Since(lastReload) > 400*time.Millisecond {
				if _, err := api.Status(ctx); err != nil {
					writerErr <- err
					return
				}
				lastReload = time.Now()
			}
			i := r.IntN(n)
			id := f.ProductIDs[i]
			loc := keyring.Location{Table: "products", Column: "download_url", RowID: id}
			val := []byte("written by the API " + time.Now().String() + " " + id)
			ct, err := api.Encrypt(ctx, loc, val)
			if err != nil {
				writerErr <- err
				return
			}
			if _, err := e.db.Pool.Exec(ctx, `UPDATE products SET download_url = $1, updated_at = now() WHERE id = $2`, ct, id); err != nil {
				writerErr <- err
				return
			}
			expected[i] = val
			writes.Add(1)
			if k, _ := keyring.KeyIDOf(ct); k == oldKey {
				staleWrites.Add(1)
			}
		}
	}()

	var workers sync.WaitGroup
	results := make([]store.RotationJob, 2)
	errs := make([]error, 2)
	var batches [2]atomic.Int64
	for w, svc := range []*rotation.Service{e.svc, svc2} {
		workers.Add(1)
		go func() {
			defer workers.Done()
			results[w], errs[w] = svc.RunJob(ctx, job.ID, func(rotation.Progress) { batches[w].Add(1) })
		}()
	}
	workers.Wait()
	stop.Store(true)
	wg.Wait()
	select {
	case err := <-writerErr:
		t.Fatalf("API writer: %v", err)
	default:
	}
	for w := range 2 {
		if errs[w] != nil || results[w].State != store.JobDone {
			t.Fatalf("worker %d: %s, %v; want done", w, results[w].State, errs[w])
		}
	}
	if staleWrites.Load() == 0 {
		t.Fatalf("the API made no write under the old key (%d writes): the test did not test that case", writes.Load())
	}
	t.Logf("%d API writes, %d under the old key; %d passes; batches per worker %d, %d",
		writes.Load(), staleWrites.Load(), results[0].Pass, batches[0].Load(), batches[1].Load())
	if batches[0].Load() == 0 || batches[1].Load() == 0 {
		t.Errorf("batches per worker %d, %d: want both workers to share the job", batches[0].Load(), batches[1].Load())
	}

	// Every product holds what was written last, and every value in the
	// database is under the new key.
	rows, err := e.db.Pool.Query(ctx, `SELECT id::text, download_url FROM products`)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string][]byte{}
	for rows.Next() {
		var id string
		var ct []byte
		if err := rows.Scan(&id, &ct); err != nil {
			t.Fatal(err)
		}
		byID[id] = ct
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	for i, id := range f.ProductIDs {
		ct := byID[id]
		if k, _ := keyring.KeyIDOf(ct); k != job.TargetKeyID {
			t.Fatalf("product %d under key %d, want %d", i, k, job.TargetKeyID)
		}
		pt, err := e.kr.Decrypt(ctx, keyring.Location{Table: "products", Column: "download_url", RowID: id}, ct)
		if err != nil {
			t.Fatal(err)
		}
		if string(pt) != string(expected[i]) {
			t.Fatalf("product %d = %q, want the last write %q (lost update)", i, pt, expected[i])
		}
	}
	sum := rotationtest.Checksum(t, e.db.Pool, e.kr)
	if len(sum.ByKey) != 1 || sum.ByKey[job.TargetKeyID] != sum.Values {
		t.Errorf("values per key = %v, want all under %d", sum.ByKey, job.TargetKeyID)
	}
}

// destroy-old refuses, with the counts, while ciphertexts use an old key,
// and destroys it once re-encryption is done; every value still decrypts.
func TestDestroyOldRefusesWhileKeysAreUsed(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig)
	ctx := ctxT(t)
	rotationtest.Seed(t, e.db.Pool, e.kr, 120, 64, 2)
	before := rotationtest.Checksum(t, e.db.Pool, e.kr)
	oldKey := e.kr.PrimaryKeyID()

	// A rotation whose job is not recorded (a crash between the two).
	newKey, err := e.kr.RotateDEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.DestroyOld(ctx, rotation.LocalOperator)
	if !errors.Is(err, rotation.ErrKeysInUse) || vectabase.ErrorCode(err) != vectabase.ECONFLICT {
		t.Fatalf("DestroyOld err = %v, want CONFLICT wrapping ErrKeysInUse", err)
	}
	if len(res.InUse) != 1 || res.InUse[0].KeyID != oldKey || res.InUse[0].Ciphertexts != int64(before.Values) {
		t.Fatalf("DestroyOld InUse = %+v, want key %d with %d ciphertexts", res.InUse, oldKey, before.Values)
	}
	if !strings.Contains(vectabase.ErrorMessage(err), "ciphertexts") {
		t.Errorf("refusal message %q does not show the counts", vectabase.ErrorMessage(err))
	}
	if ids := e.kr.KeyIDs(); len(ids) != 2 {
		t.Fatalf("keys after a refused destroy = %v, want both", ids)
	}

	job, err := e.svc.EnsureJob(ctx, rotation.LocalOperator)
	if err != nil || job.TargetKeyID != newKey {
		t.Fatalf("EnsureJob = %+v, %v; want a job to %d", job, err, newKey)
	}
	// While the job runs, destroy-old refuses too.
	if _, err := e.svc.DestroyOld(ctx, rotation.LocalOperator); vectabase.ErrorCode(err) != vectabase.ECONFLICT {
		t.Fatalf("DestroyOld during a job err = %v, want CONFLICT", err)
	}
	if j, err := e.svc.RunJob(ctx, job.ID, nil); err != nil || j.State != store.JobDone {
		t.Fatalf("RunJob = %s, %v", j.State, err)
	}
	res, err = e.svc.DestroyOld(ctx, rotation.LocalOperator)
	if err != nil || len(res.Destroyed) != 1 || res.Destroyed[0] != oldKey {
		t.Fatalf("DestroyOld = %+v, %v; want key %d destroyed", res, err, oldKey)
	}
	// A fresh instance reads everything with the one key left.
	fresh := openKeyring(t, e.db, e.kek)
	if ids := fresh.KeyIDs(); len(ids) != 1 || ids[0] != newKey {
		t.Errorf("keys after destroy = %v, want [%d]", ids, newKey)
	}
	if after := rotationtest.Checksum(t, e.db.Pool, fresh); after.Digest != before.Digest {
		t.Errorf("checksum after destroy-old differs")
	}
	got := strings.Join(e.aud.actions(), " ")
	if !strings.Contains(got, "keys.destroy_old:denied") || !strings.Contains(got, "keys.destroy_old:success") {
		t.Errorf("audit actions %q lack the refused and the done destroy-old", got)
	}
	// Nothing to do now: EnsureJob says so.
	if _, err := e.svc.EnsureJob(ctx, rotation.LocalOperator); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("EnsureJob with nothing to do err = %v, want ErrNotFound", err)
	}
}

// After rotate-kek to a new key file, a restart with the new key reads
// every value, and the old key no longer opens the keyring.
func TestRotateKEKThenRestartWithNewKey(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig)
	ctx := ctxT(t)
	rotationtest.Seed(t, e.db.Pool, e.kr, 200, 64, 2)
	before := rotationtest.Checksum(t, e.db.Pool, e.kr)
	dataBefore := dataHash(t, e.db)

	_, next := newKEK(t)
	job, err := e.svc.RotateKEK(ctx, rotation.LocalOperator, next)
	if err != nil || job.State != store.JobDone || job.Kind != store.RotationKEK {
		t.Fatalf("RotateKEK = %+v, %v", job, err)
	}
	if dataHash(t, e.db) != dataBefore {
		t.Fatal("rotate-kek changed stored data")
	}
	restarted := openKeyring(t, e.db, next)
	if after := rotationtest.Checksum(t, e.db.Pool, restarted); after.Digest != before.Digest {
		t.Fatal("values read after a restart with the new KEK differ")
	}
	if _, err := keyring.Open(ctx, store.NewKeysets(e.db.Pool), e.kek); !errors.Is(err, keyring.ErrUnwrap) {
		t.Errorf("Open with the old KEK err = %v, want ErrUnwrap", err)
	}
	if !strings.Contains(strings.Join(e.aud.actions(), " "), "keys.rotate_kek:success") {
		t.Errorf("audit actions %v lack keys.rotate_kek", e.aud.actions())
	}
}

// failingKEK wraps the first keyset and fails on the next: a KMS going
// down in the middle of a KEK rotation.
type failingKEK struct {
	keyring.KEK
	calls atomic.Int32
}

func (f *failingKEK) Encrypt(ctx context.Context, pt, ad []byte) ([]byte, error) {
	if f.calls.Add(1) > 1 {
		return nil, errors.New("kms: connection reset")
	}
	return f.KEK.Encrypt(ctx, pt, ad)
}

// A KEK rotation failing midway leaves every value readable by the old
// KEK, in this process and after a restart.
func TestRotateKEKFailingMidwayLeavesEverythingReadable(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig)
	ctx := ctxT(t)
	rotationtest.Seed(t, e.db.Pool, e.kr, 200, 64, 2)
	before := rotationtest.Checksum(t, e.db.Pool, e.kr)

	_, nextKEK := newKEK(t)
	job, err := e.svc.RotateKEK(ctx, rotation.LocalOperator, &failingKEK{KEK: nextKEK})
	if err == nil {
		t.Fatal("RotateKEK with a failing KEK err = nil, want an error")
	}
	if job.State != store.JobFailed {
		t.Errorf("job state = %q, want failed", job.State)
	}
	if after := rotationtest.Checksum(t, e.db.Pool, e.kr); after.Digest != before.Digest {
		t.Fatal("values differ in the running process after a failed rotate-kek")
	}
	restarted := openKeyring(t, e.db, e.kek)
	if after := rotationtest.Checksum(t, e.db.Pool, restarted); after.Digest != before.Digest {
		t.Fatal("values differ after a restart with the old KEK")
	}
	if !strings.Contains(strings.Join(e.aud.actions(), " "), "keys.rotate_kek:failure") {
		t.Errorf("audit actions %v lack the failed keys.rotate_kek", e.aud.actions())
	}
	// The in-place rotation of a local KEK is refused with a clear 4xx.
	if _, err := e.svc.RotateKEKInPlace(ctx, rotation.LocalOperator); vectabase.ErrorCode(err) != vectabase.EVALIDATION {
		t.Errorf("RotateKEKInPlace on a local KEK err = %v, want VALIDATION_FAILED", err)
	}
}

// A rotation is refused before anything changes when its audit record
// cannot be written (fail closed).
func TestRotateDEKFailsClosedWithoutAudit(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig)
	ctx := ctxT(t)
	e.aud.fail = true
	before := e.kr.PrimaryKeyID()
	if _, err := e.svc.RotateDEK(ctx, rotation.LocalOperator); err == nil {
		t.Fatal("RotateDEK with the audit down err = nil, want an error")
	}
	if e.kr.PrimaryKeyID() != before {
		t.Error("the primary key changed although the audit record failed")
	}
}

// dataHash hashes every stored sensitive ciphertext (not plaintext), to
// show that a KEK rotation leaves data untouched.
func dataHash(t *testing.T, db *store.DB) string {
	t.Helper()
	var h string
	err := db.Pool.QueryRow(context.Background(), `SELECT md5(
		coalesce((SELECT string_agg(encode(download_url, 'hex'), ',' ORDER BY id) FROM products), '') ||
		coalesce((SELECT string_agg(encode(value, 'hex'), ',' ORDER BY secret_id, version) FROM secret_versions), ''))`).Scan(&h)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Property: whatever the values (empty to a few KiB), their number and the
// batch size, a DEK rotation leaves every value decrypting to what it was
// and every value under the new primary key.
func TestProperty_RotationPreservesEveryValueUnderTheNewKey(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig)
	ctx := ctxT(t)
	var storeID string
	if err := e.db.Pool.QueryRow(ctx, `WITH u AS (INSERT INTO users (email) VALUES ('prop@example.com') RETURNING id)
		INSERT INTO stores (owner_id, name, slug) SELECT id, 's', 'prop' FROM u RETURNING id::text`).Scan(&storeID); err != nil {
		t.Fatal(err)
	}
	rapid.Check(t, func(rt *rapid.T) {
		// Each case starts from an empty table, so cases stay small.
		if _, err := e.db.Pool.Exec(ctx, `DELETE FROM products`); err != nil {
			rt.Fatal(err)
		}
		want := map[string][]byte{}
		for range rapid.IntRange(0, 30).Draw(rt, "values") {
			var id string
			if err := e.db.Pool.QueryRow(ctx, `INSERT INTO products (store_id, name, price_cents) VALUES ($1, 'p', 1) RETURNING id::text`,
				storeID).Scan(&id); err != nil {
				rt.Fatal(err)
			}
			v := rapid.SliceOfN(rapid.Byte(), 0, 3000).Draw(rt, "value")
			ct, err := e.kr.Encrypt(ctx, keyring.Location{Table: "products", Column: "download_url", RowID: id}, v)
			if err != nil {
				rt.Fatal(err)
			}
			if _, err := e.db.Pool.Exec(ctx, `UPDATE products SET download_url = $1 WHERE id = $2`, ct, id); err != nil {
				rt.Fatal(err)
			}
			want[id] = v
		}
		cfg := testConfig
		cfg.BatchSize = rapid.IntRange(1, 20).Draw(rt, "batch size")
		svc := newService(t, e.db, e.kr, e.aud, cfg)
		job, err := svc.RotateDEK(ctx, rotation.LocalOperator)
		if err != nil {
			rt.Fatal(err)
		}
		if done, err := svc.RunJob(ctx, job.ID, nil); err != nil || done.State != store.JobDone {
			rt.Fatalf("RunJob = %s, %v", done.State, err)
		}
		rows, err := e.db.Pool.Query(ctx, `SELECT id::text, download_url FROM products`)
		if err != nil {
			rt.Fatal(err)
		}
		defer rows.Close()
		seen := 0
		for rows.Next() {
			var id string
			var ct []byte
			if err := rows.Scan(&id, &ct); err != nil {
				rt.Fatal(err)
			}
			if k, _ := keyring.KeyIDOf(ct); k != job.TargetKeyID {
				rt.Fatalf("row %s under key %d, want %d", id, k, job.TargetKeyID)
			}
			pt, err := e.kr.Decrypt(ctx, keyring.Location{Table: "products", Column: "download_url", RowID: id}, ct)
			if err != nil || string(pt) != string(want[id]) {
				rt.Fatalf("row %s decrypts to %d bytes (%v), want %d bytes", id, len(pt), err, len(want[id]))
			}
			seen++
		}
		if rows.Err() != nil || seen != len(want) {
			rt.Fatalf("saw %d rows (%v), want %d", seen, rows.Err(), len(want))
		}
	})
}

// metricValue gathers one unlabelled counter or gauge from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// The in-place KEK rotation (the Vault backend's: a new transit key version,
// then a re-wrap) through a rotator: success re-wraps under what the
// rotator returns; a rotator that fails leaves the keysets as they were.
func TestRotateKEKInPlace(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig)
	ctx := ctxT(t)
	rotationtest.Seed(t, e.db.Pool, e.kr, 50, 64, 1)
	before := rotationtest.Checksum(t, e.db.Pool, e.kr)

	failing := newServiceWith(t, e, rotation.WithKEKRotator(func(context.Context) (keyring.KEK, error) {
		return nil, errors.New("vault: permission denied")
	}))
	if job, err := failing.RotateKEKInPlace(ctx, rotation.LocalOperator); err == nil || job.State != store.JobFailed {
		t.Fatalf("RotateKEKInPlace with a failing rotator = %+v, %v; want a failed job", job, err)
	}
	if after := rotationtest.Checksum(t, e.db.Pool, openKeyring(t, e.db, e.kek)); after.Digest != before.Digest {
		t.Fatal("values differ after a failed in-place KEK rotation")
	}

	_, next := newKEK(t)
	svc := newServiceWith(t, e, rotation.WithKEKRotator(func(context.Context) (keyring.KEK, error) { return next, nil }))
	job, err := svc.RotateKEKInPlace(ctx, rotation.LocalOperator)
	if err != nil || job.State != store.JobDone {
		t.Fatalf("RotateKEKInPlace = %+v, %v", job, err)
	}
	if after := rotationtest.Checksum(t, e.db.Pool, openKeyring(t, e.db, next)); after.Digest != before.Digest {
		t.Fatal("values differ after a restart with the rotated KEK")
	}
}

func newServiceWith(t *testing.T, e *env, opts ...rotation.Option) *rotation.Service {
	t.Helper()
	svc, err := rotation.New(testConfig, e.db, e.kr, e.aud, zerolog.Nop(), prometheus.NewRegistry(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

type memAlerter struct {
	mu  sync.Mutex
	got []alerts.Alert
}

func (m *memAlerter) Raise(a alerts.Alert) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got = append(m.got, a)
}

// A failed KEK rotation raises one alert, naming no key material.
func TestFailedKEKRotationRaisesAlert(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig)
	al := &memAlerter{}
	svc, err := rotation.New(testConfig, e.db, e.kr, e.aud, zerolog.Nop(), prometheus.NewRegistry(), rotation.WithAlerter(al))
	if err != nil {
		t.Fatal(err)
	}
	_, nextKEK := newKEK(t)
	if _, err := svc.RotateKEK(ctxT(t), rotation.LocalOperator, &failingKEK{KEK: nextKEK}); err == nil {
		t.Fatal("RotateKEK with a failing KEK err = nil, want an error")
	}
	al.mu.Lock()
	defer al.mu.Unlock()
	if len(al.got) != 1 || al.got[0].Kind != alerts.KindRotationFailed || !strings.Contains(al.got[0].Message, "KEK rotation failed") {
		t.Fatalf("alerts = %+v, want one key_rotation_failed", al.got)
	}
}
