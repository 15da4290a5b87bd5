package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"

	"github.com/vectabase/vectabase/store"
)

// VerifyResult is the outcome of walking the chain. When OK is false,
// FirstBroken is the id of the first row that does not verify (or, when the
// newest rows were deleted, the id the chain head says the last row had)
// and Reason says what is wrong in words fit for an operator.
type VerifyResult struct {
	OK          bool   `json:"ok"`
	Rows        int    `json:"rows"`
	FirstBroken int64  `json:"firstBroken,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// errBroken stops the walk at the first broken row.
var errBroken = errors.New("broken")

// Verify checks every row's MAC and its link to the row before, in id
// order, then the chain head. It errors only when the check itself could
// not run (database unreachable); a broken chain is OK false.
func (l *Log) Verify(ctx context.Context) (VerifyResult, error) {
	res, err := l.verify(ctx)
	if err == nil && !res.OK {
		l.alertBroken(fmt.Sprintf("chain broken at row %d", res.FirstBroken), res.Reason)
	}
	return res, err
}

func (l *Log) verify(ctx context.Context) (VerifyResult, error) {
	var (
		res     VerifyResult
		head    store.AuditHead
		hasHead bool
		prev    []byte
		lastID  int64
		rng     = rangeFactory.NewEmptyRange(0)
	)
	broken := func(id int64, format string, args ...any) error {
		res.FirstBroken, res.Reason = id, fmt.Sprintf(format, args...)
		return errBroken
	}
	rowFn := func(r store.AuditRow) error {
		details, err := canonicalJSON(r.Details)
		if err != nil {
			return broken(r.ID, "row %d: its details are not a JSON object", r.ID)
		}
		r.Details = details
		switch {
		case !bytes.Equal(r.PrevHash, prev) && res.Rows == 0:
			return broken(r.ID, "row %d: it links to an earlier row that is gone: rows before it were deleted", r.ID)
		case !bytes.Equal(r.PrevHash, prev):
			return broken(r.ID, "row %d: its link does not match row %d before it: a row between them was deleted, inserted or moved", r.ID, lastID)
		}
		want, err := rowHash(l.kr, prev, r)
		if err != nil {
			return err
		}
		if !hmac.Equal(want, r.Hash) {
			return broken(r.ID, "row %d: its hash does not match its contents: the row was changed, inserted or moved", r.ID)
		}
		res.Rows++
		prev, lastID = r.Hash, r.ID
		return rng.Append(LeafHash(r), nil)
	}
	err := l.db.WalkAuditChain(ctx, func(h store.AuditHead, ok bool, segs []store.AuditSegment) error {
		head, hasHead = h, ok
		err := l.walkArchive(ctx, segs, rowFn)
		if errors.Is(err, errSegment) {
			return broken(0, "%v", err)
		}
		return err
	}, rowFn)
	if errors.Is(err, errBroken) {
		return res, nil
	}
	if err != nil {
		return VerifyResult{}, fmt.Errorf("audit: verify: %w", err)
	}
	if !hasHead {
		if res.Rows > 0 {
			_ = broken(lastID, "row %d: the chain head is missing although %d rows exist", lastID, res.Rows)
			return res, nil
		}
		res.OK = true
		return res, nil
	}
	sealed, err := headSeal(l.kr, head)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("audit: verify: %w", err)
	}
	switch {
	case sealed == sealBroken:
		_ = broken(head.LastID, "row %d: the chain head that names it as the newest row was changed: its row count, its Merkle tree's size or root, or the row it ends at (rows after it may have been deleted)", head.LastID)
	case head.LastID > lastID || head.RowCount > int64(res.Rows):
		_ = broken(head.LastID, "row %d: the newest rows were deleted (the chain head names row %d and %d rows; the chain ends at row %d with %d rows)",
			head.LastID, head.LastID, head.RowCount, lastID, res.Rows)
	case head.LastID != lastID || head.RowCount != int64(res.Rows) || !bytes.Equal(head.LastHash, prev):
		_ = broken(lastID, "row %d: the chain does not end where its head says (row %d, %d rows)", lastID, head.LastID, head.RowCount)
	case head.TreeSize == head.RowCount && head.TreeSize > 0:
		// The Merkle tree beside the head must be the tree of these rows,
		// or the next checkpoints would sign something else.
		root, err := rootOf(rng)
		if err != nil {
			return VerifyResult{}, fmt.Errorf("audit: verify: %w", err)
		}
		if !bytes.Equal(root, head.TreeRoot) {
			_ = broken(lastID, "the Merkle tree root kept with the chain head does not match the rows")
		} else {
			res.OK = true
		}
	default:
		res.OK = true
	}
	return res, nil
}
