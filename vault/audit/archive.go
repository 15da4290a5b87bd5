package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/store"
)

// SegmentFormat names the archive segment file format.
const SegmentFormat = "vectabase-audit-segment/v1"

// segmentRows bounds the rows of one archive segment.
const segmentRows = 10000

// segmentFile is an archive segment as stored: the rows (a JSON array of
// ProofRow) encrypted by the keyring, bound to the segment's number, and a
// note signed by the audit key over the segment's place in the chain and
// the ciphertext's SHA-256.
type segmentFile struct {
	Format     string `json:"format"`
	Seq        int    `json:"seq"`
	FirstIndex int64  `json:"firstIndex"`
	Rows       int64  `json:"rows"`
	FirstID    int64  `json:"firstId"`
	LastID     int64  `json:"lastId"`
	Signature  string `json:"signature"`
	Ciphertext []byte `json:"ciphertext"`
}

func segmentLocation(seq int) keyring.Location {
	return keyring.Location{Table: "audit_archive_segments", Column: "segment", RowID: strconv.Itoa(seq)}
}

func segmentNote(origin string, seq int, firstIndex, rows int64, ct []byte) string {
	sum := sha256.Sum256(ct)
	return fmt.Sprintf("%s\n%s\n%d\n%d\n%d\n%s\n", SegmentFormat, origin, seq, firstIndex, rows, base64.StdEncoding.EncodeToString(sum[:]))
}

// SetArchive tells the Log where archive segments live, so that Verify and
// proofs span the archive and the live table; c signs and checks them.
func (l *Log) SetArchive(dir string, c *Checkpointer) { l.archiveDir, l.archiveKeys = dir, c }

// Archive moves the audit rows written before cutoff out of audit_logs
// into signed, encrypted segment files in the archive directory, oldest
// first, and returns how many it moved. The chain, the Merkle tree and
// checkpoints are unchanged: Verify and proofs read the segments back.
func (l *Log) Archive(ctx context.Context, cutoff time.Time) (int, error) {
	if l.archiveDir == "" || l.archiveKeys == nil {
		return 0, errors.New("audit: archive: no archive directory")
	}
	signer, err := l.archiveKeys.key(ctx)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(l.archiveDir, 0o700); err != nil {
		return 0, fmt.Errorf("audit: archive: %w", err)
	}
	total := 0
	for range 1000 { // bounded: at most 10 million rows per call
		n, err := l.db.ArchiveAudit(ctx, cutoff, segmentRows, func(seq int, firstIndex int64, rows []store.AuditRow) (string, []byte, error) {
			return l.writeSegment(ctx, signer, seq, firstIndex, rows)
		})
		if err != nil {
			return total, fmt.Errorf("audit: archive: %w", err)
		}
		total += n
		if n < segmentRows {
			return total, nil
		}
	}
	return total, nil
}

func (l *Log) writeSegment(ctx context.Context, signer note.Signer, seq int, firstIndex int64, rows []store.AuditRow) (string, []byte, error) {
	prs := make([]ProofRow, len(rows))
	for i, r := range rows {
		r, err := canonicalRow(r)
		if err != nil {
			return "", nil, err
		}
		prs[i] = proofRow(r)
	}
	pt, err := json.Marshal(prs)
	if err != nil {
		return "", nil, err
	}
	ct, err := l.kr.Encrypt(ctx, segmentLocation(seq), pt)
	if err != nil {
		return "", nil, err
	}
	signed, err := note.Sign(&note.Note{Text: segmentNote(l.archiveKeys.origin, seq, firstIndex, int64(len(rows)), ct)}, signer)
	if err != nil {
		return "", nil, err
	}
	b, err := json.Marshal(segmentFile{Format: SegmentFormat, Seq: seq, FirstIndex: firstIndex, Rows: int64(len(rows)),
		FirstID: rows[0].ID, LastID: rows[len(rows)-1].ID, Signature: string(signed), Ciphertext: ct})
	if err != nil {
		return "", nil, err
	}
	name := fmt.Sprintf("audit-segment-%08d.json", seq)
	tmp := filepath.Join(l.archiveDir, name+".tmp")
	if err := writeSynced(tmp, b); err != nil {
		return "", nil, err
	}
	if err := os.Rename(tmp, filepath.Join(l.archiveDir, name)); err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(b)
	return name, sum[:], nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readSegment returns a segment's rows after checking the file against
// its record, the signature and the ciphertext; any mismatch is an error
// naming the segment.
func (l *Log) readSegment(ctx context.Context, seg store.AuditSegment) ([]store.AuditRow, error) {
	if l.archiveDir == "" || l.archiveKeys == nil {
		return nil, fmt.Errorf("audit: %d rows are archived, but no archive directory is configured (AUDIT_ARCHIVE_DIR)", seg.RowCount)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: archive segment %d (%s): %s", errSegment, seg.Seq, seg.File, fmt.Sprintf(format, args...))
	}
	b, err := os.ReadFile(filepath.Join(l.archiveDir, filepath.Base(seg.File)))
	if err != nil {
		return nil, bad("%v", err)
	}
	if sum := sha256.Sum256(b); !bytes.Equal(sum[:], seg.FileSHA256) {
		return nil, bad("the file was changed")
	}
	var f segmentFile
	if err := json.Unmarshal(b, &f); err != nil || f.Format != SegmentFormat {
		return nil, bad("not a segment file")
	}
	vkey, origin, err := l.archiveKeys.VerifierKey(ctx)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	n, err := note.Open([]byte(f.Signature), note.VerifierList(v))
	if err != nil || n.Text != segmentNote(origin, seg.Seq, seg.FirstIndex, seg.RowCount, f.Ciphertext) {
		return nil, bad("the signature does not match")
	}
	pt, err := l.kr.Decrypt(ctx, segmentLocation(seg.Seq), f.Ciphertext)
	if err != nil {
		return nil, bad("does not decrypt")
	}
	var prs []ProofRow
	if err := json.Unmarshal(pt, &prs); err != nil || int64(len(prs)) != seg.RowCount {
		return nil, bad("wrong rows")
	}
	rows := make([]store.AuditRow, len(prs))
	for i, p := range prs {
		if rows[i], err = p.row(); err != nil {
			return nil, bad("row %d: %v", i, err)
		}
	}
	if rows[0].ID != seg.FirstID || rows[len(rows)-1].ID != seg.LastID || !bytes.Equal(rows[len(rows)-1].Hash, seg.LastHash) {
		return nil, bad("its rows are not the ones archived")
	}
	return rows, nil
}

// errSegment marks an archive segment that does not check out: Verify
// reports it as a broken log, not as a failure to run.
var errSegment = errors.New("audit: bad archive segment")

// walkArchive calls fn with every archived row, oldest first.
func (l *Log) walkArchive(ctx context.Context, segs []store.AuditSegment, fn func(store.AuditRow) error) error {
	for _, s := range segs {
		rows, err := l.readSegment(ctx, s)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// Age is a duration that also reads whole days ("90d"); 0 or "off" is off.
type Age time.Duration

// UnmarshalText reads "90d", a Go duration, "0" or "off".
func (a *Age) UnmarshalText(b []byte) error {
	s := string(b)
	if s == "" || s == "off" || s == "0" {
		*a = 0
		return nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return fmt.Errorf("%q: want days as 90d, or a Go duration", s)
		}
		*a = Age(time.Duration(n) * 24 * time.Hour)
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("%q: want days as 90d, or a Go duration", s)
	}
	*a = Age(d)
	return nil
}

// RunArchiver archives rows older than retention every interval until ctx
// ends; errors are logged and retried on the next round.
func (l *Log) RunArchiver(ctx context.Context, retention time.Duration, interval time.Duration) {
	if retention <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := l.Archive(ctx, time.Now().Add(-retention))
		if err != nil {
			l.log.Error().Str("error", err.Error()).Msg("audit: archive")
		} else if n > 0 {
			l.log.Info().Int("rows", n).Msg("audit: rows archived")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
