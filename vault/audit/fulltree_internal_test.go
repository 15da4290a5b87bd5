package audit

import (
	"bytes"
	"context"
	"fmt"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"

	"github.com/vectabase/vectabase/store"
)

// The whole Merkle tree hashed from its leaves, as proofs were made before
// the kept tree (treecache.go): the oracle Property 44 holds the kept tree
// to, and the baseline of BenchmarkInclusionProof.

// tree is the whole Merkle tree in memory as its leaf hashes.
type tree struct{ leaves [][]byte }

// perfect is the hash of the perfect subtree over leaves [begin, end),
// whose size is a power of two (every node a proof names is one).
func (t *tree) perfect(begin, end uint64) []byte {
	if end-begin == 1 {
		return t.leaves[begin]
	}
	mid := begin + (end-begin)/2
	return hasher.HashChildren(t.perfect(begin, mid), t.perfect(mid, end))
}

// root is the root of the first size leaves.
func (t *tree) root(size uint64) ([]byte, error) {
	rng := rangeFactory.NewEmptyRange(0)
	for _, h := range t.leaves[:size] {
		if err := rng.Append(h, nil); err != nil {
			return nil, err
		}
	}
	return rootOf(rng)
}

// hashes returns the hashes of a proof's nodes, rehashed as RFC 6962 wants.
func (t *tree) hashes(n proof.Nodes) ([][]byte, error) {
	hs := make([][]byte, len(n.IDs))
	for i, id := range n.IDs {
		begin, end := id.Coverage()
		if end > uint64(len(t.leaves)) || end <= begin {
			return nil, fmt.Errorf("audit: proof node %v beyond %d leaves", id, len(t.leaves))
		}
		hs[i] = t.perfect(begin, end)
	}
	return n.Rehash(hs, hasher.HashChildren)
}

// snapshot reads the whole tree (and, when rowID > 0, that row and its
// leaf index) from one consistent snapshot of the log.
func (l *Log) snapshot(ctx context.Context, rowID int64) (*tree, *store.AuditRow, uint64, error) {
	t := &tree{}
	var found *store.AuditRow
	var index uint64
	var fn func(r store.AuditRow) error
	fn = func(r store.AuditRow) error {
		r, err := canonicalRow(r)
		if err != nil {
			return err
		}
		if r.ID == rowID {
			found, index = &r, uint64(len(t.leaves))
		}
		t.leaves = append(t.leaves, LeafHash(r))
		return nil
	}
	err := l.db.WalkAuditChain(ctx, func(_ store.AuditHead, _ bool, segs []store.AuditSegment) error {
		return l.walkArchive(ctx, segs, fn)
	}, fn)
	return t, found, index, err
}

// matches checks that the first cp.Size leaves have cp's root.
func (t *tree) matches(cp *log.Checkpoint) error {
	if uint64(len(t.leaves)) < cp.Size {
		return fmt.Errorf("%w: the log has %d rows, fewer than the %d of its checkpoint", ErrBadProof, len(t.leaves), cp.Size)
	}
	root, err := t.root(cp.Size)
	if err != nil {
		return err
	}
	if !bytes.Equal(root, cp.Hash) {
		return fmt.Errorf("%w: the log's first %d rows do not hash to the checkpoint's root", ErrBadProof, cp.Size)
	}
	return nil
}
