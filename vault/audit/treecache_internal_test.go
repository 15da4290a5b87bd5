package audit

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"pgregory.net/rapid"
)

// TestProperty44_CachedTreeProvesAsTheFullTree claims: the tree proofs are
// now made from (kept subtree hashes every cacheStride levels, grown row
// by row as catch-ups append them) gives, for any size, the same roots as
// the whole tree hashed from its leaves, and the same inclusion and
// consistency proofs, which verify. 100 iterations (rapid's default).
func TestProperty44_CachedTreeProvesAsTheFullTree(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 700).Draw(t, "size")
		full := &tree{}
		cached := newLayered()
		id := int64(0)
		for i := range n {
			id += int64(rapid.IntRange(1, 3).Draw(t, "idGap"))
			h := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(rapid.IntRange(0, 255).Draw(t, "salt"))})
			leaf := hasher.HashLeaf(h[:])
			full.leaves = append(full.leaves, leaf)
			cached.append(id, leaf)
		}
		size := uint64(n)
		m := uint64(rapid.IntRange(0, n).Draw(t, "older"))
		for _, s := range []uint64{m, size} {
			want, err := full.root(s)
			if err != nil {
				t.Fatal(err)
			}
			got, err := cached.root(s)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("root(%d) = %x, %v; the full tree has %x", s, got, err, want)
			}
		}
		root, _ := full.root(size)
		i := uint64(rapid.IntRange(0, n-1).Draw(t, "index"))
		if idx, ok := cached.index(cached.ids[i]); !ok || idx != i {
			t.Fatalf("index(id of leaf %d) = %d, %v", i, idx, ok)
		}
		nodes, err := proof.Inclusion(i, size)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := full.hashes(nodes)
		got, err := cached.hashes(nodes)
		if err != nil || len(got) != len(want) {
			t.Fatalf("inclusion hashes: %d, %v; want %d", len(got), err, len(want))
		}
		for k := range want {
			if !bytes.Equal(got[k], want[k]) {
				t.Fatalf("inclusion of %d in %d: hash %d differs", i, size, k)
			}
		}
		if err := proof.VerifyInclusion(hasher, i, size, cached.leaf(i), got, root); err != nil {
			t.Fatalf("inclusion of %d in %d: %v", i, size, err)
		}
		cn, err := proof.Consistency(m, size)
		if err != nil {
			t.Fatal(err)
		}
		cwant, _ := full.hashes(cn)
		cgot, err := cached.hashes(cn)
		if err != nil || len(cgot) != len(cwant) {
			t.Fatalf("consistency hashes: %d, %v; want %d", len(cgot), err, len(cwant))
		}
		for k := range cwant {
			if !bytes.Equal(cgot[k], cwant[k]) {
				t.Fatalf("consistency %d -> %d: hash %d differs", m, size, k)
			}
		}
		old, _ := full.root(m)
		if err := proof.VerifyConsistency(hasher, m, size, cgot, old, root); err != nil {
			t.Fatalf("consistency %d -> %d: %v", m, size, err)
		}
	})
}
