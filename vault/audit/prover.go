package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// Prover makes proofs against the checkpoints the log has signed and
// stored, for GET /api/audit/proof/*: a client names the tree size of a
// checkpoint it holds (or asks for the newest) and checks the proof with
// CheckProof (vectabase audit check-proof).
type Prover struct {
	l *Log
	c *Checkpointer
}

// NewProver returns the prover of l's proofs against c's checkpoints.
func NewProver(l *Log, c *Checkpointer) *Prover { return &Prover{l: l, c: c} }

// Record audits through the log, for the routes that serve proofs.
func (p *Prover) Record(ctx context.Context, ev vectabase.AuditEvent) error {
	return p.l.Record(ctx, ev)
}

// storedCheckpoint returns the stored checkpoint of size leaves: NOT_FOUND
// when none was signed at that size.
func (p *Prover) storedCheckpoint(ctx context.Context, size uint64) ([]byte, error) {
	cp, err := p.c.db.AuditCheckpointAt(ctx, int64(min(size, 1<<62)))
	if errors.Is(err, store.ErrNotFound) {
		return nil, vectabase.Errorf(vectabase.ENOTFOUND, "no checkpoint of %d rows was signed", size)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint: %w", err)
	}
	return []byte(cp.Note), nil
}

// InclusionProof proves row rowID against the stored checkpoint of size
// leaves, or, when size is 0, against a checkpoint signed now (which is
// stored and published like any other). Errors: NOT_FOUND (no such row,
// no checkpoint of that size), CONFLICT (the row is newer than the
// checkpoint).
func (p *Prover) InclusionProof(ctx context.Context, rowID int64, size uint64) (Proof, error) {
	var kept []byte
	if size > 0 {
		var err error
		if kept, err = p.storedCheckpoint(ctx, size); err != nil {
			return Proof{}, err
		}
	}
	return p.l.ProveInclusion(ctx, p.c, rowID, kept)
}

// ConsistencyProof proves that the tree of from leaves is a prefix of the
// tree of the stored checkpoint of to leaves (0: the newest stored
// checkpoint). Errors: NOT_FOUND (no checkpoint of to leaves), CONFLICT
// (from is past it).
func (p *Prover) ConsistencyProof(ctx context.Context, from, to uint64) (Proof, error) {
	var signed []byte
	var err error
	if to == 0 {
		signed, err = p.c.Latest(ctx)
	} else {
		signed, err = p.storedCheckpoint(ctx, to)
	}
	if err != nil {
		return Proof{}, err
	}
	vkey, _, err := p.c.VerifierKey(ctx)
	if err != nil {
		return Proof{}, err
	}
	cp, err := ParseCheckpoint(signed, vkey)
	if err != nil {
		return Proof{}, err
	}
	pr, err := p.l.proveConsistency(ctx, cp, string(signed), from)
	if err != nil {
		return Proof{}, fmt.Errorf("audit: prove: %w", err)
	}
	return pr, nil
}
