package audit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/vectabase/vectabase/store"
	"golang.org/x/mod/sumdb/note"
	"pgregory.net/rapid"
)

func randomTree(t *rapid.T, n int) *tree {
	tr := &tree{}
	for i := range n {
		h := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(rapid.IntRange(0, 255).Draw(t, "salt"))})
		tr.leaves = append(tr.leaves, hasher.HashLeaf(h[:]))
	}
	return tr
}

// TestProperty33_ProofsFromTheTreeVerify claims: for any tree size, every
// inclusion proof the tree makes verifies against its root, and every
// consistency proof between two sizes verifies between their roots, while
// the same proof fails for a neighbouring leaf. 100 iterations (rapid's
// default, stated here as the minimum).
func TestProperty33_ProofsFromTheTreeVerify(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 300).Draw(t, "size")
		tr := randomTree(t, n)
		size := uint64(n)
		root, err := tr.root(size)
		if err != nil {
			t.Fatal(err)
		}
		i := uint64(rapid.IntRange(0, n-1).Draw(t, "index"))
		nodes, err := proof.Inclusion(i, size)
		if err != nil {
			t.Fatal(err)
		}
		hs, err := tr.hashes(nodes)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyInclusion(hasher, i, size, tr.leaves[i], hs, root); err != nil {
			t.Fatalf("inclusion of %d in %d: %v", i, size, err)
		}
		if n > 1 {
			j := (i + 1) % size
			if proof.VerifyInclusion(hasher, i, size, tr.leaves[j], hs, root) == nil {
				t.Fatalf("inclusion proof of %d also proves leaf %d", i, j)
			}
		}
		m := uint64(rapid.IntRange(0, n).Draw(t, "older"))
		old, err := tr.root(m)
		if err != nil {
			t.Fatal(err)
		}
		cn, err := proof.Consistency(m, size)
		if err != nil {
			t.Fatal(err)
		}
		chs, err := tr.hashes(cn)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyConsistency(hasher, m, size, chs, old, root); err != nil {
			t.Fatalf("consistency %d -> %d: %v", m, size, err)
		}
	})
}

// TestProperty34_WriterTreeMatchesFullTree claims: the compact range the
// writer keeps with the chain head, grown batch by batch in any split,
// always has the root of the whole tree over the same rows (so checkpoints
// sign what proofs are made from). At least 100 iterations.
func TestProperty34_WriterTreeMatchesFullTree(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var head struct {
			size  int64
			root  []byte
			rng   [][]byte
			full  tree
			count int
		}
		batches := rapid.IntRange(1, 12).Draw(t, "batches")
		for b := range batches {
			k := rapid.IntRange(1, 40).Draw(t, "batch")
			rows := make([]storeRow, k)
			for i := range rows {
				rows[i] = testRow(head.count, b)
				head.count++
			}
			size, root, rng, err := treeAfter(headOf(head.size, head.rng), rows)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				head.full.leaves = append(head.full.leaves, LeafHash(r))
			}
			want, _ := head.full.root(uint64(len(head.full.leaves)))
			if size != int64(len(head.full.leaves)) || string(root) != string(want) {
				t.Fatalf("after %d rows: writer tree (%d, %x), full tree (%d, %x)", head.count, size, root, len(head.full.leaves), want)
			}
			head.size, head.root, head.rng = size, root, rng
		}
	})
}

// FuzzCheckProof: no input makes the stand-alone checker panic, and it
// accepts an inclusion proof only for a row that is really a leaf of the
// signed tree (the fuzzer cannot sign, so it can only reuse the real
// checkpoint).
func FuzzCheckProof(f *testing.F) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "vectabase/audit/fuzz")
	if err != nil {
		f.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	tr := &tree{}
	var rows []store.AuditRow
	for i := range 3 {
		r := testRow(i, 0)
		rows = append(rows, r)
		tr.leaves = append(tr.leaves, LeafHash(r))
	}
	root, _ := tr.root(3)
	signed, _ := note.Sign(&note.Note{Text: string(log.Checkpoint{Origin: "vectabase/audit/fuzz", Size: 3, Hash: root}.Marshal())}, signer)
	nodes, _ := proof.Inclusion(1, 3)
	hs, _ := tr.hashes(nodes)
	pr := proofRow(rows[1])
	valid, _ := json.Marshal(Proof{Format: InclusionFormat, Checkpoint: string(signed), TreeSize: 3, LeafIndex: 1, Row: &pr, Hashes: hs})
	f.Add(valid, []byte(""))
	f.Add(valid, signed)
	f.Add([]byte(`{"format":"vectabase-audit-consistency/v1","checkpoint":"","treeSize":0,"fromSize":3,"hashes":["AA=="]}`), []byte("a\n2\n\n"))
	f.Add([]byte(`{}`), []byte("\n\n\n— x"))
	f.Fuzz(func(t *testing.T, raw, kept []byte) {
		res, err := CheckProof(raw, kept, vkey)
		if err != nil || res.Format != InclusionFormat {
			return
		}
		var p Proof
		_ = json.Unmarshal(raw, &p)
		r, err := p.Row.row()
		if err != nil || p.LeafIndex >= 3 || string(LeafHash(r)) != string(tr.leaves[p.LeafIndex]) {
			t.Fatalf("CheckProof accepted a row that is not a leaf of the tree: %s", raw)
		}
	})
}

type storeRow = store.AuditRow

func testRow(i, batch int) store.AuditRow {
	h := sha256.Sum256([]byte{byte(i), byte(batch)})
	return store.AuditRow{ID: int64(i + 1), OccurredAt: time.Unix(int64(i), 0).UTC(), ActorType: "user",
		Action: "secret.read", Result: "allowed", Details: []byte("{}"), Hash: h[:]}
}

func headOf(size int64, rng [][]byte) store.AuditHead {
	return store.AuditHead{TreeSize: size, TreeRange: rng}
}

// BenchmarkTreeAfter is the Merkle tree's CPU cost per writer batch: 32
// rows appended to a tree of about a million leaves (the compact range the
// head carries), beside canonicalJSON of one row's details, a cost the
// writer already paid before the tree.
func BenchmarkTreeAfter(b *testing.B) {
	rng := rangeFactory.NewEmptyRange(0)
	for i := range 1<<20 - 7 {
		h := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		_ = rng.Append(h[:], nil)
	}
	head := store.AuditHead{TreeSize: int64(rng.End()), TreeRange: rng.Hashes()}
	rows := make([]store.AuditRow, 32)
	for i := range rows {
		rows[i] = testRow(i, 0)
		rows[i].Details = []byte(`{"version":3,"note":"a typical secret read"}`)
	}
	b.Run("tree/32rows", func(b *testing.B) {
		for b.Loop() {
			if _, _, _, err := treeAfter(head, rows); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("canonicalJSON/32rows", func(b *testing.B) {
		for b.Loop() {
			for _, r := range rows {
				if _, err := canonicalJSON(r.Details); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
