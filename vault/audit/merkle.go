package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/vectabase/vectabase/store"
)

// The Merkle tree's leaves are the rows' canonical bytes (LeafData), not
// their chain hashes: the chain hash is a keyed MAC nobody outside can
// recompute, while the canonical bytes let a stand-alone verifier see what
// the row says and check that exactly that row is in the log. Leaf i is the
// i-th row of the chain (0-based, in id order, counting archived rows), so
// a row's leaf index is not its id (ids may skip numbers).

// leafVersion starts every leaf, so that a later encoding cannot collide.
const leafVersion = "vectabase/audit/leaf/v1\x00"

// hasher is RFC 6962's SHA-256 tree hasher: leaf = SHA-256(0x00 || data),
// node = SHA-256(0x01 || left || right).
var hasher = rfc6962.DefaultHasher

var rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}

// LeafData is a row's leaf in the audit Merkle tree:
//
//	"vectabase/audit/leaf/v1\x00"
//	uvarint(len(prev_hash)) prev_hash
//	uint64be(id) uint64be(occurred_at in Unix microseconds)
//	for each of actor_type, actor_id, action, resource_type, resource_id,
//	  result, ip, request_id, details (canonical JSON): uvarint(len) bytes
//	uvarint(len(hash)) hash
//
// Empty strings stand for NULL; prev_hash and hash are the row's chain
// links as stored. The README documents the same encoding.
func LeafData(r store.AuditRow) []byte {
	b := make([]byte, 0, 320+len(r.Details))
	b = append(b, leafVersion...)
	b = appendBytes(b, r.PrevHash)
	b = binary.BigEndian.AppendUint64(b, uint64(r.ID))
	b = binary.BigEndian.AppendUint64(b, uint64(r.OccurredAt.UnixMicro()))
	for _, f := range [...]string{r.ActorType, r.ActorID, r.Action, r.ResourceType, r.ResourceID,
		r.Result, r.IP, r.RequestID} {
		b = appendBytes(b, []byte(f))
	}
	b = appendBytes(b, r.Details)
	return appendBytes(b, r.Hash)
}

// canonicalRow is r as read back from the database with its details in
// the canonical JSON the writer hashed (jsonb spells them its own way).
func canonicalRow(r store.AuditRow) (store.AuditRow, error) {
	d, err := canonicalJSON(r.Details)
	if err != nil {
		return r, fmt.Errorf("audit: row %d: %w", r.ID, err)
	}
	r.Details = d
	return r, nil
}

// LeafHash is RFC 6962's hash of the row's leaf.
func LeafHash(r store.AuditRow) []byte { return hasher.HashLeaf(LeafData(r)) }

// emptyRoot is the root of a tree with no leaves: SHA-256 of nothing.
var emptyRoot = func() []byte { s := sha256.Sum256(nil); return s[:] }()

// treeAfter appends rows' leaves to the tree of head and returns the new
// size, root and compact range. head's range is not modified.
func treeAfter(head store.AuditHead, rows []store.AuditRow) (int64, []byte, [][]byte, error) {
	rng, err := rangeFactory.NewRange(0, uint64(head.TreeSize), slices.Clone(head.TreeRange))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("audit: the chain head's Merkle range is damaged: %w", err)
	}
	for _, r := range rows {
		if err := rng.Append(LeafHash(r), nil); err != nil {
			return 0, nil, nil, err
		}
	}
	root, err := rootOf(rng)
	if err != nil {
		return 0, nil, nil, err
	}
	return int64(rng.End()), root, rng.Hashes(), nil
}

func rootOf(rng *compact.Range) ([]byte, error) {
	if rng.End() == 0 {
		return emptyRoot, nil
	}
	return rng.GetRootHash(nil)
}
