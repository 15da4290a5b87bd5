package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault/audit"
)

// proofLog is a Log with its Checkpointer on a fresh database.
func proofLog(t *testing.T, cfg audit.CheckpointConfig) (*audit.Log, *audit.Checkpointer, *store.DB) {
	t.Helper()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	l := audit.New(db, kr, zerolog.Nop(), nil)
	t.Cleanup(l.Close)
	c := audit.NewCheckpointer(db, kr, cfg, zerolog.Nop())
	restart.set(db, func() *audit.Log { return audit.New(db, kr, zerolog.Nop(), nil) })
	return l, c, db
}

// restart gives a new writer on a database's keyring (a restarted server).
// Tests on different databases touch different keys.
var restart = syncMap[*store.DB, func() *audit.Log]{}

type syncMap[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V
}

func (s *syncMap[K, V]) set(k K, v V) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[K]V{}
	}
	s.m[k] = v
}

func (s *syncMap[K, V]) get(k K) V {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[k]
}

func sign(t *testing.T, c *audit.Checkpointer) []byte {
	t.Helper()
	cp, err := c.Sign(context.Background())
	if err != nil {
		t.Fatalf("Sign() err = %v, want nil", err)
	}
	return []byte(cp.Note)
}

func verifyAgainst(t *testing.T, l *audit.Log, c *audit.Checkpointer, kept []byte) audit.CheckpointResult {
	t.Helper()
	res, err := l.VerifyCheckpoint(context.Background(), c, kept, "")
	if err != nil {
		t.Fatalf("VerifyCheckpoint err = %v, want nil", err)
	}
	return res
}

// TestKeptCheckpointCatchesRewrites: each way of rewriting the log that the
// hash chain alone cannot see (or can) is caught against a kept checkpoint.
func TestKeptCheckpointCatchesRewrites(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// attack rewrites the log after the checkpoint was kept; backup
		// holds the tables as they were after the first 10 rows.
		attack func(t *testing.T, l *audit.Log, db *store.DB)
		want   string
	}{
		{"delete all rows and the head", func(t *testing.T, l *audit.Log, db *store.DB) {
			exec(t, db, `DELETE FROM audit_logs`)
			exec(t, db, `DELETE FROM audit_chain_head`)
		}, "rows were deleted"},
		{"truncate the newest rows", func(t *testing.T, l *audit.Log, db *store.DB) {
			exec(t, db, `DELETE FROM audit_logs WHERE id IN (SELECT id FROM audit_logs ORDER BY id DESC LIMIT 3)`)
		}, "rows were deleted"},
		{"edit a single row", func(t *testing.T, l *audit.Log, db *store.DB) {
			exec(t, db, `UPDATE audit_logs SET actor_id = 'someone-else' WHERE id = (SELECT min(id) + 4 FROM audit_logs)`)
		}, "no longer match"},
		{"restore an older backup", func(t *testing.T, l *audit.Log, db *store.DB) {
			exec(t, db, `DELETE FROM audit_logs`)
			exec(t, db, `INSERT INTO audit_logs SELECT * FROM audit_logs_backup`)
			exec(t, db, `DELETE FROM audit_chain_head`)
			exec(t, db, `INSERT INTO audit_chain_head SELECT * FROM audit_chain_head_backup`)
		}, "rows were deleted"},
		{"restore an older backup, then keep writing", func(t *testing.T, l *audit.Log, db *store.DB) {
			exec(t, db, `DELETE FROM audit_logs`)
			exec(t, db, `INSERT INTO audit_logs SELECT * FROM audit_logs_backup`)
			exec(t, db, `DELETE FROM audit_chain_head`)
			exec(t, db, `INSERT INTO audit_chain_head SELECT * FROM audit_chain_head_backup`)
			// A new writer (the restored server) appends past the old size:
			// its chain is intact, only the checkpoint sees the rewind.
			l2 := restart.get(db)()
			record(t, l2, 40)
			l2.Close()
			if res, err := l2.Verify(context.Background()); err != nil || !res.OK {
				t.Fatalf("the rewound chain = %+v, %v; want it intact by itself", res, err)
			}
		}, "no longer match"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, c, db := proofLog(t, audit.CheckpointConfig{})
			record(t, l, 10)
			exec(t, db, `CREATE TABLE audit_logs_backup AS SELECT * FROM audit_logs`)
			exec(t, db, `CREATE TABLE audit_chain_head_backup AS SELECT * FROM audit_chain_head`)
			record(t, l, 15)
			kept := sign(t, c)
			if res := verifyAgainst(t, l, c, kept); !res.OK || res.CheckpointSize != 25 {
				t.Fatalf("before the attack: %+v, want OK at 25", res)
			}
			l.Close()
			tc.attack(t, l, db)
			res := verifyAgainst(t, l, c, kept)
			if res.OK || !strings.Contains(res.Reason, tc.want) {
				t.Fatalf("after %s: %+v, want not OK with %q", tc.name, res, tc.want)
			}
		})
	}
}

func TestCheckpointStaysValidAsLogGrows(t *testing.T) {
	t.Parallel()
	l, c, _ := proofLog(t, audit.CheckpointConfig{})
	empty := sign(t, c)
	record(t, l, 7)
	kept := sign(t, c)
	record(t, l, 30)
	for _, k := range [][]byte{empty, kept} {
		if res := verifyAgainst(t, l, c, k); !res.OK || res.LogSize != 37 {
			t.Fatalf("VerifyCheckpoint = %+v, want OK with 37 rows", res)
		}
	}
	// A checkpoint signed by another key is refused, not "OK".
	_, other, _ := proofLog(t, audit.CheckpointConfig{})
	foreign := sign(t, other)
	if _, err := l.VerifyCheckpoint(context.Background(), c, foreign, ""); !errors.Is(err, audit.ErrBadCheckpoint) {
		t.Fatalf("VerifyCheckpoint(foreign checkpoint) err = %v, want ErrBadCheckpoint", err)
	}
}

// TestStandAloneCheckerVerifiesProofs: every row's inclusion proof and a
// consistency proof pass CheckProof with only the verifier key; tampered
// proofs, a wrong key and a foreign checkpoint fail.
func TestStandAloneCheckerVerifiesProofs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, c, db := proofLog(t, audit.CheckpointConfig{})
	record(t, l, 13)
	kept := sign(t, c)
	record(t, l, 20)
	vkey, origin, err := c.VerifierKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(vkey, origin+"+") {
		t.Fatalf("verifier key %q does not name origin %q", vkey, origin)
	}
	all := ids(t, db)
	latest := sign(t, c)
	for _, id := range all {
		p, err := l.ProveInclusion(ctx, c, id, latest)
		if err != nil {
			t.Fatalf("ProveInclusion(%d) err = %v", id, err)
		}
		raw, _ := json.Marshal(p)
		res, err := audit.CheckProof(raw, latest, vkey)
		if err != nil || res.RowID != id || res.TreeSize != 33 {
			t.Fatalf("CheckProof(row %d) = %+v, %v; want row %d in 33", id, res, err, id)
		}
	}
	// Rows in the kept (older) checkpoint prove against it too.
	p, err := l.ProveInclusion(ctx, c, all[12], kept)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(p)
	if _, err := audit.CheckProof(raw, kept, vkey); err != nil {
		t.Fatalf("CheckProof(row in kept checkpoint) err = %v", err)
	}
	if _, err := l.ProveInclusion(ctx, c, all[13], kept); err == nil {
		t.Fatal("ProveInclusion(row after the kept checkpoint) err = nil, want an error")
	}

	// Tampering with the proof's row, index, hashes or checkpoint fails.
	base, _ := l.ProveInclusion(ctx, c, all[5], nil)
	tampers := map[string]func(p *audit.Proof){
		"row action": func(p *audit.Proof) { p.Row.Action = "secret.list" },
		"row time":   func(p *audit.Proof) { p.Row.OccurredAt = "2020-01-01T00:00:00.000000Z" },
		"leaf index": func(p *audit.Proof) { p.LeafIndex++ },
		"a hash":     func(p *audit.Proof) { p.Hashes[0] = append([]byte{}, p.Hashes[1]...) },
		"checkpoint": func(p *audit.Proof) { p.Checkpoint = strings.Replace(p.Checkpoint, "\n33\n", "\n34\n", 1) },
		"tree size":  func(p *audit.Proof) { p.TreeSize = 32 },
	}
	for name, tamper := range tampers {
		b, _ := json.Marshal(base)
		var p audit.Proof
		_ = json.Unmarshal(b, &p)
		tamper(&p)
		b, _ = json.Marshal(p)
		if _, err := audit.CheckProof(b, nil, vkey); err == nil {
			t.Errorf("CheckProof(tampered %s) err = nil, want an error", name)
		}
	}
	_, otherC, _ := proofLog(t, audit.CheckpointConfig{})
	foreignKey, _, err := otherC.VerifierKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ = json.Marshal(base)
	if _, err := audit.CheckProof(raw, nil, foreignKey); !errors.Is(err, audit.ErrBadCheckpoint) {
		t.Errorf("CheckProof(another log's key) err = %v, want ErrBadCheckpoint", err)
	}

	// Consistency from the kept checkpoint to now.
	cons, err := l.ProveConsistency(ctx, c, kept)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ = json.Marshal(cons)
	if res, err := audit.CheckProof(raw, kept, vkey); err != nil || res.FromSize != 13 || res.TreeSize != 33 {
		t.Fatalf("CheckProof(consistency) = %+v, %v; want 13 -> 33", res, err)
	}
	// Against a checkpoint of another log of the same size it fails.
	_, l2c, _ := func() (*audit.Log, *audit.Checkpointer, *store.DB) {
		l2, c2, _ := proofLog(t, audit.CheckpointConfig{})
		record(t, l2, 13)
		return l2, c2, nil
	}()
	if _, err := audit.CheckProof(raw, sign(t, l2c), vkey); err == nil {
		t.Error("CheckProof(consistency, a foreign kept checkpoint) err = nil, want an error")
	}
}

func TestCheckpointsGoToWitnesses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	got := make(chan string, 4)
	srv := witnessServer(t, got)
	l, c, _ := proofLog(t, audit.CheckpointConfig{WitnessDir: dir, WitnessURLs: []string{srv}})
	record(t, l, 3)
	kept := sign(t, c)
	sign(t, c) // the same tree again: stored once, published once
	files, _ := filepath.Glob(filepath.Join(dir, "*.checkpoint"))
	if len(files) != 1 || filepath.Base(files[0]) != "00000000000000000003.checkpoint" {
		t.Fatalf("witness dir = %v, want one file for size 3", files)
	}
	b, _ := os.ReadFile(files[0])
	if string(b) != string(kept) {
		t.Fatalf("witness file = %q, want the checkpoint %q", b, kept)
	}
	if body := <-got; body != string(kept) {
		t.Fatalf("witness POST body = %q, want the checkpoint", body)
	}
	select {
	case b := <-got:
		t.Fatalf("a second POST %q for the same checkpoint", b)
	default:
	}
}

func TestTreeIsBuiltOverRowsWrittenBeforeIt(t *testing.T) {
	t.Parallel()
	l, c, db := proofLog(t, audit.CheckpointConfig{})
	record(t, l, 9)
	l.Close()
	// As after migration 00025 on a database with audit rows.
	exec(t, db, `UPDATE audit_chain_head SET tree_size = 0, tree_root = '', tree_range = '{}'`)
	l2 := restart.get(db)()
	defer l2.Close()
	record(t, l2, 4)
	kept := sign(t, c)
	if res := verifyAgainst(t, l2, c, kept); !res.OK || res.CheckpointSize != 13 {
		t.Fatalf("VerifyCheckpoint = %+v, want OK at 13", res)
	}
}

func TestEveryParses(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"1000": "1000", "1m": "1m0s", "500,30s": "500,30s", "30s,500": "500,30s", "off": "off", "": "off"} {
		var e audit.Every
		if err := e.UnmarshalText([]byte(in)); err != nil || e.String() != want {
			t.Errorf("Every(%q) = %v, %v; want %s", in, e, err, want)
		}
	}
	for _, in := range []string{"0", "-5", "1,2", "1m,2m", "10ms", "soon"} {
		var e audit.Every
		if err := e.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("Every(%q) err = nil, want an error", in)
		}
	}
}

func witnessServer(t *testing.T, got chan<- string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost {
			got <- string(b)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestArchiveThenVerifyAcrossTheBoundary: rows past retention move to
// signed, encrypted segment files; the chain, a kept checkpoint and
// inclusion proofs of archived rows still verify across archive and live
// rows; a changed or missing segment file is caught.
func TestArchiveThenVerifyAcrossTheBoundary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, c, db := proofLog(t, audit.CheckpointConfig{})
	dir := t.TempDir()
	l.SetArchive(dir, c)
	old := time.Now().Add(-48 * time.Hour)
	for i := range 12 {
		ev := event(i)
		ev.Time = old.Add(time.Duration(i) * time.Second)
		if err := l.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	record(t, l, 5)
	kept := sign(t, c)
	all := ids(t, db)
	n, err := l.Archive(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != 12 {
		t.Fatalf("Archive = %d, %v; want 12 rows", n, err)
	}
	if live := len(ids(t, db)); live != 5 {
		t.Fatalf("%d live rows after archiving, want 5", live)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "audit-segment-*.json"))
	if len(files) != 1 {
		t.Fatalf("segment files %v, want 1", files)
	}
	if b, _ := os.ReadFile(files[0]); strings.Contains(string(b), "secret.read") || strings.Contains(string(b), "user-3") {
		t.Fatal("the segment file holds rows in clear")
	}
	record(t, l, 3)
	if res := verify(t, l); !res.OK || res.Rows != 20 {
		t.Fatalf("Verify after archiving = %+v, want OK with 20 rows", res)
	}
	if res := verifyAgainst(t, l, c, kept); !res.OK || res.LogSize != 20 {
		t.Fatalf("VerifyCheckpoint after archiving = %+v, want OK", res)
	}
	vkey, _, _ := c.VerifierKey(ctx)
	for _, id := range []int64{all[0], all[11], all[12]} { // archived, last archived, live
		p, err := l.ProveInclusion(ctx, c, id, nil)
		if err != nil {
			t.Fatalf("ProveInclusion(%d) err = %v", id, err)
		}
		raw, _ := json.Marshal(p)
		if res, err := audit.CheckProof(raw, nil, vkey); err != nil || res.RowID != id {
			t.Fatalf("CheckProof(row %d) = %+v, %v", id, res, err)
		}
	}
	// Nothing old is left: a second pass archives nothing.
	if n, err := l.Archive(ctx, time.Now().Add(-24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("second Archive = %d, %v; want 0", n, err)
	}

	b, _ := os.ReadFile(files[0])
	if err := os.WriteFile(files[0], []byte(strings.Replace(string(b), `"rows":12`, `"rows":11`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := verify(t, l); res.OK || !strings.Contains(res.Reason, "archive segment 1") {
		t.Fatalf("Verify with a changed segment = %+v, want it named", res)
	}
	_ = os.Remove(files[0])
	if res := verify(t, l); res.OK || !strings.Contains(res.Reason, "archive segment 1") {
		t.Fatalf("Verify with a missing segment = %+v, want it named", res)
	}
}
