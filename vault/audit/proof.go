package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"

	"github.com/vectabase/vectabase/store"
)

// Proof formats, named in each proof's "format" field. The README's
// "Audit proofs" section documents them for other verifiers.
const (
	InclusionFormat   = "vectabase-audit-inclusion/v1"
	ConsistencyFormat = "vectabase-audit-consistency/v1"
)

// ErrBadCheckpoint is in the chain of errors about a checkpoint that does
// not parse or is not signed by the log's key.
var ErrBadCheckpoint = errors.New("audit: bad checkpoint")

// ErrBadProof is in the chain of errors about a proof that does not hold.
var ErrBadProof = errors.New("audit: proof does not verify")

// ProofRow is an audit row as a proof carries it: every field of its leaf
// (LeafData), details as the canonical JSON text that was hashed.
type ProofRow struct {
	ID           int64  `json:"id"`
	OccurredAt   string `json:"occurredAt"` // RFC 3339, UTC, microseconds
	ActorType    string `json:"actorType"`
	ActorID      string `json:"actorId"`
	Action       string `json:"action"`
	ResourceType string `json:"resourceType"`
	ResourceID   string `json:"resourceId"`
	Result       string `json:"result"`
	IP           string `json:"ip"`
	RequestID    string `json:"requestId"`
	Details      string `json:"details"`
	PrevHash     []byte `json:"prevHash"` // base64
	Hash         []byte `json:"hash"`     // base64
}

func proofRow(r store.AuditRow) ProofRow {
	return ProofRow{ID: r.ID, OccurredAt: r.OccurredAt.UTC().Format("2006-01-02T15:04:05.000000Z"),
		ActorType: r.ActorType, ActorID: r.ActorID, Action: r.Action, ResourceType: r.ResourceType,
		ResourceID: r.ResourceID, Result: r.Result, IP: r.IP, RequestID: r.RequestID,
		Details: string(r.Details), PrevHash: r.PrevHash, Hash: r.Hash}
}

func (p ProofRow) row() (store.AuditRow, error) {
	t, err := time.Parse(time.RFC3339Nano, p.OccurredAt)
	if err != nil {
		return store.AuditRow{}, fmt.Errorf("%w: row.occurredAt: %v", ErrBadProof, err)
	}
	return store.AuditRow{ID: p.ID, OccurredAt: t, ActorType: p.ActorType, ActorID: p.ActorID,
		Action: p.Action, ResourceType: p.ResourceType, ResourceID: p.ResourceID, Result: p.Result,
		IP: p.IP, RequestID: p.RequestID, Details: []byte(p.Details), PrevHash: p.PrevHash, Hash: p.Hash}, nil
}

// Proof is an inclusion proof (one row is leaf LeafIndex of the tree of
// TreeSize leaves) or a consistency proof (the tree of FromSize leaves is
// a prefix of the tree of TreeSize leaves). Checkpoint is the log's signed
// checkpoint of TreeSize; Hashes the RFC 6962 proof, base64 each.
type Proof struct {
	Format     string    `json:"format"`
	Checkpoint string    `json:"checkpoint"`
	TreeSize   uint64    `json:"treeSize"`
	LeafIndex  uint64    `json:"leafIndex,omitempty"`
	Row        *ProofRow `json:"row,omitempty"`
	FromSize   uint64    `json:"fromSize,omitempty"`
	Hashes     [][]byte  `json:"hashes"`
}

// ParseCheckpoint opens a signed checkpoint with the note verifier key
// vkey; the log's origin is the key's name.
func ParseCheckpoint(signed []byte, vkey string) (*log.Checkpoint, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("%w: verifier key: %v", ErrBadCheckpoint, err)
	}
	cp, _, _, err := log.ParseCheckpoint(bytes.TrimLeft(signed, "\r\n\t "), v.Name(), v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	return cp, nil
}

// CheckResult says what CheckProof established.
type CheckResult struct {
	Format   string `json:"format"`
	Origin   string `json:"origin"`
	TreeSize uint64 `json:"treeSize"`
	RowID    int64  `json:"rowId,omitempty"`
	FromSize uint64 `json:"fromSize,omitempty"`
}

// CheckProof checks a proof with nothing but the log's verifier key: the
// proof's checkpoint must be signed by it; an inclusion proof must put its
// row's leaf under that checkpoint's root; a consistency proof must show
// kept (a checkpoint of FromSize leaves, required then) is a prefix. For an
// inclusion proof a non-empty kept must be the same checkpoint as the
// proof's (same size and root). Errors wrap ErrBadProof or ErrBadCheckpoint.
func CheckProof(raw, kept []byte, vkey string) (CheckResult, error) {
	var p Proof
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return CheckResult{}, fmt.Errorf("%w: not a proof: %v", ErrBadProof, err)
	}
	cp, err := ParseCheckpoint([]byte(p.Checkpoint), vkey)
	if err != nil {
		return CheckResult{}, err
	}
	if cp.Size != p.TreeSize {
		return CheckResult{}, fmt.Errorf("%w: the proof is for %d leaves, its checkpoint has %d", ErrBadProof, p.TreeSize, cp.Size)
	}
	res := CheckResult{Format: p.Format, Origin: cp.Origin, TreeSize: cp.Size}
	var old *log.Checkpoint
	if len(bytes.TrimSpace(kept)) > 0 {
		if old, err = ParseCheckpoint(kept, vkey); err != nil {
			return CheckResult{}, err
		}
	}
	switch p.Format {
	case InclusionFormat:
		if p.Row == nil {
			return CheckResult{}, fmt.Errorf("%w: no row", ErrBadProof)
		}
		if old != nil && (old.Size != cp.Size || !bytes.Equal(old.Hash, cp.Hash)) {
			return CheckResult{}, fmt.Errorf("%w: the proof is against a checkpoint of %d leaves, not the kept one of %d; ask for a proof against the kept checkpoint",
				ErrBadProof, cp.Size, old.Size)
		}
		r, err := p.Row.row()
		if err != nil {
			return CheckResult{}, err
		}
		if err := proof.VerifyInclusion(hasher, p.LeafIndex, cp.Size, LeafHash(r), p.Hashes, cp.Hash); err != nil {
			return CheckResult{}, fmt.Errorf("%w: row %d is not leaf %d of the checkpoint: %v", ErrBadProof, r.ID, p.LeafIndex, err)
		}
		res.RowID = r.ID
	case ConsistencyFormat:
		if old == nil {
			return CheckResult{}, fmt.Errorf("%w: a consistency proof is checked against a kept checkpoint (--checkpoint)", ErrBadProof)
		}
		if old.Size != p.FromSize {
			return CheckResult{}, fmt.Errorf("%w: the proof starts at %d leaves, the kept checkpoint has %d", ErrBadProof, p.FromSize, old.Size)
		}
		if err := proof.VerifyConsistency(hasher, old.Size, cp.Size, p.Hashes, old.Hash, cp.Hash); err != nil {
			return CheckResult{}, fmt.Errorf("%w: the log of %d leaves does not extend the kept checkpoint of %d: %v", ErrBadProof, cp.Size, old.Size, err)
		}
		res.FromSize = old.Size
	default:
		return CheckResult{}, fmt.Errorf("%w: unknown format %q", ErrBadProof, p.Format)
	}
	return res, nil
}

// checkpointFor returns the checkpoint proofs are made against: kept when
// given (it must verify under the log's key), else a freshly signed one.
func (l *Log) checkpointFor(ctx context.Context, c *Checkpointer, kept []byte) (*log.Checkpoint, string, error) {
	vkey, _, err := c.VerifierKey(ctx)
	if err != nil {
		return nil, "", err
	}
	signed := kept
	if len(bytes.TrimSpace(kept)) == 0 {
		cp, err := c.Sign(ctx)
		if err != nil {
			return nil, "", err
		}
		signed = []byte(cp.Note)
	}
	cp, err := ParseCheckpoint(signed, vkey)
	if err != nil {
		return nil, "", err
	}
	return cp, string(signed), nil
}

// ProveInclusion returns the inclusion proof of row rowID against kept (a
// checkpoint of this log), or against a new checkpoint when kept is empty.
// A row that does not exist is NOT_FOUND; one newer than the checkpoint
// CONFLICT.
func (l *Log) ProveInclusion(ctx context.Context, c *Checkpointer, rowID int64, kept []byte) (Proof, error) {
	cp, signed, err := l.checkpointFor(ctx, c, kept)
	if err != nil {
		return Proof{}, err
	}
	p, err := l.proveInclusion(ctx, cp, signed, rowID)
	if err != nil {
		return Proof{}, fmt.Errorf("audit: prove: %w", err)
	}
	return p, nil
}

// ProveConsistency returns the proof that the log now (a new checkpoint)
// extends kept.
func (l *Log) ProveConsistency(ctx context.Context, c *Checkpointer, kept []byte) (Proof, error) {
	vkey, _, err := c.VerifierKey(ctx)
	if err != nil {
		return Proof{}, err
	}
	old, err := ParseCheckpoint(kept, vkey)
	if err != nil {
		return Proof{}, err
	}
	cp, signed, err := l.checkpointFor(ctx, c, nil)
	if err != nil {
		return Proof{}, err
	}
	p, err := l.proveConsistency(ctx, cp, signed, old.Size)
	if err != nil {
		return Proof{}, fmt.Errorf("audit: prove: %w", err)
	}
	return p, nil
}

// CheckpointResult is the outcome of VerifyCheckpoint.
type CheckpointResult struct {
	VerifyResult
	CheckpointSize uint64 `json:"checkpointSize"`
	LogSize        uint64 `json:"logSize"`
}

// VerifyCheckpoint proves the live log consistent with kept, a checkpoint
// this log signed earlier and someone kept: the log must still have at
// least its rows, its first rows must hash to its root, and a consistency
// proof from it to the log's current tree must verify; the hash chain is
// checked too (Verify). vkey, when not empty, pins the verifier key (else
// the one stored with the log). OK false names what is wrong; an error
// means the check could not run, or kept is no checkpoint of this key.
func (l *Log) VerifyCheckpoint(ctx context.Context, c *Checkpointer, kept []byte, vkey string) (CheckpointResult, error) {
	res, err := l.verifyCheckpoint(ctx, c, kept, vkey)
	if err == nil && !res.OK && res.FirstBroken == 0 {
		// A broken chain (FirstBroken set) was alerted by Verify already.
		l.alertBroken(fmt.Sprintf("kept checkpoint %d %v", res.CheckpointSize, res.LogSize < res.CheckpointSize), res.Reason)
	}
	return res, err
}

func (l *Log) verifyCheckpoint(ctx context.Context, c *Checkpointer, kept []byte, vkey string) (CheckpointResult, error) {
	if vkey == "" {
		var err error
		if vkey, _, err = c.VerifierKey(ctx); err != nil {
			return CheckpointResult{}, err
		}
	}
	old, err := ParseCheckpoint(kept, vkey)
	if err != nil {
		return CheckpointResult{}, err
	}
	res := CheckpointResult{CheckpointSize: old.Size}
	// Every row read and hashed afresh, not the tree proofs are served
	// from: this checks the rows as they are now.
	t, err := l.buildTree(ctx)
	if err != nil {
		return CheckpointResult{}, fmt.Errorf("audit: verify: %w", err)
	}
	size := t.size()
	res.LogSize = size
	if size < old.Size {
		res.Reason = fmt.Sprintf("the log has %d rows but the kept checkpoint has %d: rows were deleted, or an older backup was restored", size, old.Size)
		return res, nil
	}
	root, err := t.root(old.Size)
	if err != nil {
		return CheckpointResult{}, err
	}
	if !bytes.Equal(root, old.Hash) {
		res.Reason = fmt.Sprintf("the log's first %d rows no longer match the kept checkpoint: a row was edited or deleted, or the log was rewound and written again", old.Size)
		return res, nil
	}
	n, err := proof.Consistency(old.Size, size)
	if err != nil {
		return CheckpointResult{}, err
	}
	hs, err := t.hashes(n)
	if err != nil {
		return CheckpointResult{}, err
	}
	cur, err := t.root(size)
	if err != nil {
		return CheckpointResult{}, err
	}
	if err := proof.VerifyConsistency(hasher, old.Size, size, hs, old.Hash, cur); err != nil {
		res.Reason = "the log is not consistent with the kept checkpoint: " + err.Error()
		return res, nil
	}
	chain, err := l.Verify(ctx)
	if err != nil {
		return CheckpointResult{}, err
	}
	res.VerifyResult = chain
	if chain.OK {
		res.Rows = int(size)
	}
	return res, nil
}
