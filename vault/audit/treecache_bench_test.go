package audit

import (
	"context"
	"flag"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"

	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/store/pgtest"
)

var benchLeaves = flag.Int("audit.benchleaves", 1_000_000, "audit rows in BenchmarkInclusionProof's log")

// benchFixture is a log of *benchLeaves rows (inserted in SQL: the chain's
// MACs do not matter to proofs) whose head carries the tree over them, and
// a checkpoint of it; built once per benchmark run.
var benchFixture struct {
	once sync.Once
	l    *Log
	cp   *log.Checkpoint
	note string
	ids  []int64
	err  error
}

func proofBenchLog(b *testing.B) (*Log, *log.Checkpoint, string, []int64) {
	f := &benchFixture
	f.once.Do(func() {
		ctx := context.Background()
		db := pgtest.New(b)
		kr := keyringtest.New(b, db.Pool)
		n := *benchLeaves
		if _, f.err = db.Pool.Exec(ctx, `INSERT INTO audit_logs (id, occurred_at, actor_type, actor_id, action, resource_type,
				resource_id, result, ip_address, request_id, details, prev_hash, hash)
			SELECT i, '2026-01-01T00:00:00Z'::timestamptz + i * interval '1 millisecond', 'user',
				'00000000-0000-0000-0000-' || lpad(to_hex(i % 5000), 12, '0'), 'secret.read', 'secret', 'app/key-' || (i % 300),
				'allowed', '10.0.0.1', NULL, jsonb_build_object('version', i % 7),
				sha256(int8send(i - 1)), sha256(int8send(i))
			FROM generate_series(1, $1) AS i`, n); f.err != nil {
			return
		}
		l := New(db, kr, zerolog.Nop(), nil)
		var t *layered
		if t, f.err = l.buildTree(ctx); f.err != nil {
			return
		}
		root, _ := t.root(t.size())
		if _, f.err = db.Pool.Exec(ctx, `INSERT INTO audit_chain_head (id, last_id, row_count, last_hash, mac, tree_size, tree_root)
			VALUES (1, $1, $1, sha256(int8send($1::bigint)), '', $1, $2)`, n, root); f.err != nil {
			return
		}
		c := NewCheckpointer(db, kr, CheckpointConfig{}, zerolog.Nop())
		cp, err := c.Sign(ctx)
		if f.err = err; err != nil {
			return
		}
		vkey, _, _ := c.VerifierKey(ctx)
		f.cp, f.err = ParseCheckpoint([]byte(cp.Note), vkey)
		f.l, f.note, f.ids = l, cp.Note, t.ids
	})
	if f.err != nil {
		b.Fatal(f.err)
	}
	return f.l, f.cp, f.note, f.ids
}

// proveByRebuilding is how proofs were made before the cached tree: read
// and hash every row, then the proof's nodes from the leaves.
func (l *Log) proveByRebuilding(ctx context.Context, cp *log.Checkpoint, rowID int64) ([][]byte, error) {
	t, _, index, err := l.snapshot(ctx, rowID)
	if err != nil {
		return nil, err
	}
	if err := t.matches(cp); err != nil {
		return nil, err
	}
	n, err := proof.Inclusion(index, cp.Size)
	if err != nil {
		return nil, err
	}
	return t.hashes(n)
}

// BenchmarkInclusionProof: inclusion proofs in a log of
// -audit.benchleaves rows (default a million), made by rebuilding the tree
// from every row (before: one proof per op) and from the kept tree (after:
// warmed once, then 100 proofs per op, each reading the head, the rows
// since and the row); both report ns/proof.
func BenchmarkInclusionProof(b *testing.B) {
	ctx := context.Background()
	l, cp, note, ids := proofBenchLog(b)
	b.Run("rebuild", func(b *testing.B) {
		proofs := 0
		for b.Loop() {
			if _, err := l.proveByRebuilding(ctx, cp, ids[(proofs*7919)%len(ids)]); err != nil {
				b.Fatal(err)
			}
			proofs++
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(proofs), "ns/proof")
	})
	b.Run("cached", func(b *testing.B) {
		if _, err := l.proveInclusion(ctx, cp, note, ids[0]); err != nil {
			b.Fatal(err)
		}
		proofs := 0
		for b.Loop() {
			for range 100 {
				if _, err := l.proveInclusion(ctx, cp, note, ids[(proofs*7919)%len(ids)]); err != nil {
					b.Fatal(err)
				}
				proofs++
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(proofs), "ns/proof")
	})
}
