package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// Proofs used to read and hash every row of the log for each proof. A Log
// now keeps the tree it last read (the cache below, keyed by its size and
// the id of its newest row) and catches up by reading only the rows
// written since, in one snapshot with the chain head: a proof costs the
// new rows plus about log2(size) hash lookups instead of the whole log.
// The cache is checked against the chain head's tree (size and root, which
// the head's MAC seals) and against the checkpoint a proof is made for;
// when either disagrees (a restore rewound the log, rows were changed),
// it is thrown away and rebuilt from every row, archive included, once.

// cacheStride: the cached tree keeps the hashes of the complete subtrees at
// every cacheStride-th level (leaves, subtrees of 16 leaves, of 256, ...),
// so any node is at most cacheStride-1 levels above a kept one (at most
// 2^(cacheStride-1)-1 hashes to compute) and the cache holds about 1.07
// hashes per leaf (about 34 MB, plus 8 MB of row ids, for a million rows).
const cacheStride = 4

// layered is a Merkle tree's leaves and kept subtree hashes.
type layered struct {
	// ids[i] is the id of leaf i's row (ascending, as in the chain).
	ids []int64
	// levels[j] holds the 32-byte hashes of the complete subtrees of
	// 2^(j*cacheStride) leaves, left to right.
	levels [][]byte
}

func newLayered() *layered { return &layered{levels: make([][]byte, 1)} }

func (t *layered) size() uint64 { return uint64(len(t.ids)) }

// append adds the leaf of row id, keeping the subtrees it completes.
func (t *layered) append(id int64, leaf []byte) {
	t.ids = append(t.ids, id)
	t.levels[0] = append(t.levels[0], leaf...)
	n := t.size()
	for j := 1; ; j++ {
		span := uint64(1) << (j * cacheStride)
		if n%span != 0 {
			return
		}
		if len(t.levels) == j {
			t.levels = append(t.levels, nil)
		}
		t.levels[j] = append(t.levels[j], t.node(uint(j*cacheStride), n/span-1)...)
	}
}

// node is the hash of the complete subtree of 2^k leaves at index i; the
// caller makes sure it lies within the tree.
func (t *layered) node(k uint, i uint64) []byte {
	if k%cacheStride == 0 {
		if j := k / cacheStride; j < uint(len(t.levels)) && (i+1)*32 <= uint64(len(t.levels[j])) {
			return t.levels[j][i*32 : (i+1)*32]
		}
	}
	return hasher.HashChildren(t.node(k-1, 2*i), t.node(k-1, 2*i+1))
}

func (t *layered) leaf(i uint64) []byte { return t.node(0, i) }

// root is the root of the tree of the first size leaves.
func (t *layered) root(size uint64) ([]byte, error) {
	if size > t.size() {
		return nil, fmt.Errorf("audit: a tree of %d leaves has no root of %d", t.size(), size)
	}
	if size == 0 {
		return emptyRoot, nil
	}
	ids := compact.RangeNodes(0, size, nil)
	hs := make([][]byte, len(ids))
	for i, id := range ids {
		hs[i] = t.node(id.Level, id.Index)
	}
	rng, err := rangeFactory.NewRange(0, size, hs)
	if err != nil {
		return nil, err
	}
	return rng.GetRootHash(nil)
}

// hashes returns the hashes of a proof's nodes, rehashed as RFC 6962 wants.
func (t *layered) hashes(n proof.Nodes) ([][]byte, error) {
	hs := make([][]byte, len(n.IDs))
	for i, id := range n.IDs {
		begin, end := id.Coverage()
		if end > t.size() || end <= begin {
			return nil, fmt.Errorf("audit: proof node %v beyond %d leaves", id, t.size())
		}
		hs[i] = bytes.Clone(t.node(id.Level, id.Index))
	}
	return n.Rehash(hs, hasher.HashChildren)
}

// index is the leaf index of row id.
func (t *layered) index(id int64) (uint64, bool) {
	i, ok := slices.BinarySearch(t.ids, id)
	return uint64(i), ok
}

// matches checks that the first cp.Size leaves have cp's root.
func (t *layered) matches(cp *log.Checkpoint) error {
	if t.size() < cp.Size {
		return fmt.Errorf("%w: the log has %d rows, fewer than the %d of its checkpoint", ErrBadProof, t.size(), cp.Size)
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

// treeCache is a Log's cached tree.
type treeCache struct {
	mu sync.Mutex
	t  *layered // nil: not read yet
}

// withTree calls fn with the log's tree, caught up with every committed
// row, holding the cache for the call. When fn finds the tree wrong
// (ErrBadProof: not the checkpoint's root, not the row's leaf), the tree
// is rebuilt from every row and fn called once more.
func (l *Log) withTree(ctx context.Context, fn func(t *layered) error) error {
	l.cache.mu.Lock()
	defer l.cache.mu.Unlock()
	rebuild := func() error {
		t, err := l.buildTree(ctx)
		if err != nil {
			l.cache.t = nil
			return fmt.Errorf("audit: read the tree: %w", err)
		}
		l.cache.t = t
		return nil
	}
	rebuilt := false
	if l.cache.t == nil {
		if err := rebuild(); err != nil {
			return err
		}
		rebuilt = true
	} else if ok, err := l.catchUp(ctx, l.cache.t); err != nil {
		l.cache.t = nil
		return fmt.Errorf("audit: read the tree: %w", err)
	} else if !ok {
		// The head's tree is not the cached one: a restore, or a change.
		if err := rebuild(); err != nil {
			return err
		}
		rebuilt = true
	}
	err := fn(l.cache.t)
	if rebuilt || !errors.Is(err, ErrBadProof) {
		return err
	}
	if err := rebuild(); err != nil {
		return err
	}
	return fn(l.cache.t)
}

// buildTree reads the whole tree: archived rows, then live ones.
func (l *Log) buildTree(ctx context.Context) (*layered, error) {
	t := newLayered()
	fn := func(r store.AuditRow) error {
		r, err := canonicalRow(r)
		if err != nil {
			return err
		}
		t.append(r.ID, LeafHash(r))
		return nil
	}
	err := l.db.WalkAuditChain(ctx, func(_ store.AuditHead, _ bool, segs []store.AuditSegment) error {
		return l.walkArchive(ctx, segs, fn)
	}, fn)
	return t, err
}

// catchUp appends the rows written since t was read; ok is false when the
// result disagrees with the chain head's tree read in the same snapshot.
func (l *Log) catchUp(ctx context.Context, t *layered) (ok bool, err error) {
	var head store.AuditHead
	var found bool
	after := int64(0)
	if n := len(t.ids); n > 0 {
		after = t.ids[n-1]
	}
	err = l.db.WalkAuditChainAfter(ctx, after, func(h store.AuditHead, ok bool) error {
		head, found = h, ok
		return nil
	}, func(r store.AuditRow) error {
		r, err := canonicalRow(r)
		if err != nil {
			return err
		}
		t.append(r.ID, LeafHash(r))
		return nil
	})
	if err != nil || !found || head.TreeSize != head.RowCount {
		// No head, or a tree still behind the chain: nothing to compare
		// with; the checkpoint's root is checked by the caller.
		return true, err
	}
	if uint64(head.TreeSize) != t.size() {
		return false, nil
	}
	root, err := t.root(t.size())
	if err != nil {
		return false, err
	}
	return bytes.Equal(root, head.TreeRoot), nil
}

// rowAt returns row id as its leaf has it: from audit_logs or, once
// archived, from its segment.
func (l *Log) rowAt(ctx context.Context, id int64) (store.AuditRow, error) {
	r, err := l.db.AuditRowByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		segs, serr := l.db.AuditSegments(ctx)
		if serr != nil {
			return r, serr
		}
		for _, s := range segs {
			if id < s.FirstID || id > s.LastID {
				continue
			}
			rows, serr := l.readSegment(ctx, s)
			if serr != nil {
				return r, serr
			}
			for _, sr := range rows {
				if sr.ID == id {
					return canonicalRow(sr)
				}
			}
		}
		return r, vectabase.Errorf(vectabase.ENOTFOUND, "audit row %d not found", id)
	}
	if err != nil {
		return r, err
	}
	return canonicalRow(r)
}

// proveInclusion proves row rowID against cp (signed is its note).
func (l *Log) proveInclusion(ctx context.Context, cp *log.Checkpoint, signed string, rowID int64) (Proof, error) {
	var out Proof
	err := l.withTree(ctx, func(t *layered) error {
		index, ok := t.index(rowID)
		if !ok {
			return vectabase.Errorf(vectabase.ENOTFOUND, "audit row %d not found", rowID)
		}
		if index >= cp.Size {
			return vectabase.Errorf(vectabase.ECONFLICT, "audit row %d is newer than the checkpoint (%d rows)", rowID, cp.Size)
		}
		if err := t.matches(cp); err != nil {
			return err
		}
		row, err := l.rowAt(ctx, rowID)
		if err != nil {
			return err
		}
		if !bytes.Equal(LeafHash(row), t.leaf(index)) {
			return fmt.Errorf("%w: audit row %d is not the row the tree was built from", ErrBadProof, rowID)
		}
		n, err := proof.Inclusion(index, cp.Size)
		if err != nil {
			return err
		}
		hs, err := t.hashes(n)
		if err != nil {
			return err
		}
		pr := proofRow(row)
		out = Proof{Format: InclusionFormat, Checkpoint: signed, TreeSize: cp.Size, LeafIndex: index, Row: &pr, Hashes: hs}
		return nil
	})
	return out, err
}

// proveConsistency proves the tree of from leaves a prefix of cp's.
func (l *Log) proveConsistency(ctx context.Context, cp *log.Checkpoint, signed string, from uint64) (Proof, error) {
	if from > cp.Size {
		return Proof{}, vectabase.Errorf(vectabase.ECONFLICT, "the kept checkpoint has %d rows, the log's checkpoint only %d", from, cp.Size)
	}
	var out Proof
	err := l.withTree(ctx, func(t *layered) error {
		if err := t.matches(cp); err != nil {
			return err
		}
		n, err := proof.Consistency(from, cp.Size)
		if err != nil {
			return err
		}
		hs, err := t.hashes(n)
		if err != nil {
			return err
		}
		out = Proof{Format: ConsistencyFormat, Checkpoint: signed, TreeSize: cp.Size, FromSize: from, Hashes: hs}
		return nil
	})
	return out, err
}
