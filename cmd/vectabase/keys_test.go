package main

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/server/rotation/rotationtest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// keysEnv is the environment of the keys commands on url with the master
// key in keyFile, tuned for tests (no settle time, no pause).
func keysEnv(url, keyFile string, extra ...string) []string {
	return baseEnv(append([]string{
		"DATABASE_URL=" + url, "KEYRING_MASTER_KEY_FILE=" + keyFile,
		"ROTATION_SETTLE=0s", "ROTATION_BATCH_PAUSE=0s", "ROTATION_POLL_INTERVAL=20ms",
	}, extra...)...)
}

func openTestKeyring(t *testing.T, db *store.DB, keyFile string) *keyring.Keyring {
	t.Helper()
	kek, err := local.NewFromFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.Open(context.Background(), store.NewKeysets(db.Pool), kek)
	if err != nil {
		t.Fatalf("keyring.Open err = %v, want nil", err)
	}
	return kr
}

// The crash test: `vectabase keys reencrypt` over 100,000 values is killed
// with SIGKILL at random points at least 20 times; after each restart it
// goes on from its recorded progress, and at the end every value decrypts
// to what it was, under the new key.
func TestReencryptSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: 100,000 values and 20 kills")
	}
	t.Parallel()
	const values, kills = 100_000, 20
	dir := tempDir(t)
	keyFile := filepath.Join(dir, "master.key")
	url := pgtest.URL(t)
	env := keysEnv(url, keyFile, "ROTATION_BATCH_SIZE=250", "ROTATION_WORKERS=2", "ROTATION_SHARD_ROWS=20000",
		// A short pause between batches keeps an idle, fast machine from
		// finishing the job before the twentieth kill.
		"ROTATION_BATCH_PAUSE=5ms")

	if r := run(t, dir, env, "keys", "init"); r.code != 0 {
		t.Fatalf("keys init: exit %d, stderr %q", r.code, r.stderr)
	}
	db := pgtest.Open(t, url)
	kr := openTestKeyring(t, db, keyFile)
	rotationtest.Seed(t, db.Pool, kr, values, 200, 20)
	before := rotationtest.Checksum(t, db.Pool, kr)

	r := run(t, dir, env, "keys", "rotate-dek", "--json")
	if r.code != 0 {
		t.Fatalf("keys rotate-dek: exit %d, stderr %q", r.code, r.stderr)
	}
	var job struct {
		JobID       string `json:"jobId"`
		TargetKeyID uint32 `json:"targetKeyId"`
		State       string `json:"state"`
		Reencrypted int64  `json:"reencrypted"`
		Pass        int    `json:"pass"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &job); err != nil || job.JobID == "" {
		t.Fatalf("rotate-dek --json printed %q: %v", r.stdout, err)
	}
	if r := run(t, dir, env, "keys", "destroy-old"); r.code != 1 || !strings.Contains(lastLine(r.stderr), "still running") {
		t.Errorf("destroy-old during the rotation: exit %d, stderr %q; want 1 and a clear refusal", r.code, r.stderr)
	}

	progress := func() int64 {
		var n int64
		if err := db.Pool.QueryRow(context.Background(),
			`SELECT coalesce(sum(reencrypted), 0)::bigint FROM rotation_progress WHERE job_id = $1`, job.JobID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	killed, last := 0, int64(0)
	for attempt := 0; killed < kills && attempt < 3*kills; attempt++ {
		cmd := exec.Command(binary, "keys", "reencrypt")
		cmd.Dir, cmd.Env = dir, env
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if attempt%2 == 0 {
			// Anywhere: at start-up, between or inside batches.
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		} else {
			// Mid-work: once this run has committed a batch.
			deadline := time.Now().Add(10 * time.Second)
			for progress() == last && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
			}
			time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := <-exited
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
			killed++
		} else if err == nil {
			t.Logf("run %d finished before its kill", attempt)
			break
		} else {
			t.Fatalf("reencrypt run %d: %v", attempt, err)
		}
		now := progress()
		if now < last {
			t.Fatalf("recorded progress went back from %d to %d after a kill", last, now)
		}
		last = now
	}
	if killed < kills {
		t.Fatalf("killed %d times, want at least %d (the rotation finished too soon to test)", killed, kills)
	}
	t.Logf("killed %d times; %d values re-encrypted before the last restart", killed, last)

	start := time.Now()
	r = run(t, dir, env, "keys", "reencrypt", "--json")
	t.Logf("the last run finished the job in %v", time.Since(start).Round(time.Millisecond))
	if r.code != 0 {
		t.Fatalf("keys reencrypt after the kills: exit %d, stderr %q", r.code, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &job); err != nil || job.State != "done" {
		t.Fatalf("reencrypt --json printed %q (%v); want state done", r.stdout, err)
	}
	fresh := openTestKeyring(t, db, keyFile)
	after := rotationtest.Checksum(t, db.Pool, fresh)
	if after.Digest != before.Digest || after.Values != before.Values {
		t.Fatalf("checksum after the crashes: %d values %s, before %d values %s", after.Values, after.Digest, before.Values, before.Digest)
	}
	if len(after.ByKey) != 1 || after.ByKey[job.TargetKeyID] != after.Values {
		t.Fatalf("values per key after the rotation = %v, want all under %d", after.ByKey, job.TargetKeyID)
	}

	// Now the old key is unused: destroy-old removes it, and status says so.
	if r := run(t, dir, env, "keys", "destroy-old", "--json"); r.code != 0 || !strings.Contains(r.stdout, "destroyed") {
		t.Fatalf("destroy-old after the rotation: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, dir, env, "keys", "status", "--json")
	var st struct {
		DataKeys []struct {
			KeyID       uint32 `json:"keyId"`
			Primary     bool   `json:"primary"`
			Ciphertexts int64  `json:"ciphertexts"`
		} `json:"dataKeys"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.DataKeys) != 1 ||
		st.DataKeys[0].KeyID != job.TargetKeyID || st.DataKeys[0].Ciphertexts != int64(after.Values) {
		t.Fatalf("keys status --json = %q (%v)", r.stdout, err)
	}
}

// The keys commands as a user runs them: destroy-old refuses with counts
// (exit 1) while old ciphertexts exist, rotate-kek to a new key file then
// a restart with it reads everything, and bad usage exits 2.
func TestKeysCommands(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	keyFile := filepath.Join(dir, "master.key")
	url := pgtest.URL(t)
	env := keysEnv(url, keyFile)

	r := run(t, dir, env, "keys", "init", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"masterKeyFileCreated": true`) {
		t.Fatalf("keys init: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key file: %v, %v; want mode 0600", fi, err)
	}
	if r := run(t, dir, env, "keys", "init"); r.code != 0 {
		t.Fatalf("keys init again: exit %d, stderr %q", r.code, r.stderr)
	}
	db := pgtest.Open(t, url)
	kr := openTestKeyring(t, db, keyFile)
	rotationtest.Seed(t, db.Pool, kr, 50, 64, 1)
	before := rotationtest.Checksum(t, db.Pool, kr)
	oldKey := kr.PrimaryKeyID()

	// A new primary made without a job (as by a crash right after it):
	// destroy-old must count what still uses the old key and refuse.
	if _, err := kr.RotateDEK(context.Background()); err != nil {
		t.Fatal(err)
	}
	r = run(t, dir, env, "keys", "destroy-old")
	if r.code != 1 || !strings.Contains(r.stdout, "ciphertexts still use it") || !strings.Contains(lastLine(r.stderr), "refusing") {
		t.Fatalf("destroy-old with old ciphertexts: exit %d, stdout %q, stderr %q; want 1 with counts", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, strconv.Itoa(int(oldKey))) || !strings.Contains(r.stdout, strconv.Itoa(before.Values)) {
		t.Errorf("destroy-old refusal %q does not show key %d with %d ciphertexts", r.stdout, oldKey, before.Values)
	}
	if r := run(t, dir, env, "keys", "reencrypt"); r.code != 0 || !strings.Contains(r.stdout, "done") {
		t.Fatalf("keys reencrypt: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := run(t, dir, env, "keys", "reencrypt"); r.code != 0 || !strings.Contains(r.stdout, "nothing to re-encrypt") {
		t.Fatalf("keys reencrypt with nothing to do: exit %d, stdout %q", r.code, r.stdout)
	}

	newKey := filepath.Join(dir, "new.key")
	if r := run(t, dir, env, "keys", "rotate-kek"); r.code != 2 {
		t.Errorf("rotate-kek with no new KEK: exit %d, want 2", r.code)
	}
	r = run(t, dir, env, "keys", "rotate-kek", "--new-key-file", newKey)
	if r.code != 0 || !strings.Contains(r.stdout, "KEYRING_MASTER_KEY_FILE="+newKey) {
		t.Fatalf("rotate-kek: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// The old key no longer opens the keyring; the new one reads all.
	if r := run(t, dir, env, "keys", "status"); r.code != 1 || !strings.Contains(lastLine(r.stderr), "wrong master key") {
		t.Errorf("status with the old key: exit %d, stderr %q; want 1 naming the wrong key", r.code, r.stderr)
	}
	env2 := keysEnv(url, newKey)
	if r := run(t, dir, env2, "keys", "status"); r.code != 0 || !strings.Contains(r.stdout, "KEK: local file:") {
		t.Fatalf("status with the new key: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	fresh := openTestKeyring(t, db, newKey)
	if after := rotationtest.Checksum(t, db.Pool, fresh); after.Digest != before.Digest {
		t.Fatal("values read with the new KEK differ")
	}
	// A new passphrase from stdin works too, and keeps data readable.
	cmd := exec.Command(binary, "keys", "rotate-kek", "--new-passphrase-stdin", "--json")
	cmd.Dir, cmd.Env = dir, env2
	cmd.Stdin = strings.NewReader("correct horse battery staple\n")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), "correct horse") {
		t.Fatalf("rotate-kek --new-passphrase-stdin: %v, %q", err, out)
	}
	env3 := append(keysEnv(url, ""), "KEYRING_PASSPHRASE=correct horse battery staple")
	if r := run(t, dir, env3, "keys", "status"); r.code != 0 || !strings.Contains(r.stdout, "KEK: local passphrase:") {
		t.Fatalf("status with the new passphrase: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestKeysUsage(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"keys", "-h"}, 0},
		{[]string{"keys", "rotate-kek", "-h"}, 0},
		{[]string{"keys"}, 2},
		{[]string{"keys", "sideways"}, 2},
		{[]string{"keys", "status", "extra"}, 2},
		{[]string{"keys", "reencrypt", "--no-such-flag"}, 2},
	} {
		r := run(t, dir, baseEnv(), tc.args...)
		if r.code != tc.code {
			t.Errorf("vectabase %v: exit %d, want %d (stderr %q)", tc.args, r.code, tc.code, r.stderr)
		}
	}
	// No keyring configured: one clear line naming what is missing.
	r := run(t, dir, baseEnv("DATABASE_URL="+pgtest.URL(t)), "keys", "status")
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "KEYRING_MASTER_KEY_FILE") {
		t.Errorf("keys status without a KEK: exit %d, stderr %q", r.code, r.stderr)
	}
}

// Long work shows a progress bar on a terminal (a pseudo-terminal from
// script(1)) and plain lines otherwise.
func TestReencryptProgress(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	keyFile := filepath.Join(dir, "master.key")
	url := pgtest.URL(t)
	env := keysEnv(url, keyFile, "ROTATION_BATCH_SIZE=200")
	if r := run(t, dir, env, "keys", "init"); r.code != 0 {
		t.Fatalf("keys init: %q", r.stderr)
	}
	db := pgtest.Open(t, url)
	rotationtest.Seed(t, db.Pool, openTestKeyring(t, db, keyFile), 3000, 64, 1)

	if r := run(t, dir, env, "keys", "rotate-dek"); r.code != 0 {
		t.Fatalf("keys rotate-dek: %q", r.stderr)
	}
	r := run(t, dir, env, "keys", "reencrypt")
	if r.code != 0 || !strings.Contains(r.stderr, "re-encrypt: ") || strings.Contains(r.stderr, "█") {
		t.Fatalf("reencrypt without a terminal: exit %d, stderr %q; want plain progress lines", r.code, r.stderr)
	}

	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) not installed: no pseudo-terminal for the progress bar")
	}
	if r := run(t, dir, env, "keys", "rotate-dek"); r.code != 0 {
		t.Fatalf("keys rotate-dek: %q", r.stderr)
	}
	cmd := exec.Command(script, "-qec", binary+" keys reencrypt", "/dev/null")
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "re-encrypting 100%") || !strings.Contains(string(out), "█") {
		t.Fatalf("reencrypt on a terminal: %v, output %q; want a progress bar reaching 100%%", err, out)
	}
}
