package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// The request-log spool: each serve instance appends every API-key
// request-log row to a local segment file (one write(2), no fsync) before
// the request is answered, so a row outlives a kill -9 of the process in
// the page cache; the batch COPY writes the rows to PostgreSQL as before,
// and a segment's file is removed once every row in it is committed.
//
// A segment's rows are numbered from 1. The rows of a segment committed to
// api_request_logs are always a prefix of them, recorded in
// api_request_log_segments in the same transaction as the rows (migration
// 00028), so a replay after a crash inserts exactly the rows past that
// prefix, and a second replay of the same file inserts nothing.
//
// A record on disk:
//
//	'V' 'L' | payload length (uint32 LE) | CRC-32C of the payload (uint32 LE) | payload
//
// and its payload: seq (uvarint), time (Unix ns, varint), status (varint),
// latency (ns, varint), then request id, API key id, method, path and IP,
// each as a uvarint length and its bytes. A record that is not whole (a
// write torn by a power loss, or a corrupt stretch) is skipped up to the
// next whole one and counted as one lost row.

const (
	spoolMagic0, spoolMagic1 = 'V', 'L'
	spoolHeaderLen           = 10
	spoolMaxPayload          = 64 << 10
	spoolMaxField            = 8 << 10 // longer strings (a path) are cut to this
	spoolExt                 = ".spool"
	spoolTmpExt              = ".spool-new"
)

var spoolCRC = crc32.MakeTable(crc32.Castagnoli)

// spoolRow is a request-log row with its number in its segment.
type spoolRow struct {
	Seq uint64
	RequestLog
}

func cut(s string) string {
	if len(s) > spoolMaxField {
		return s[:spoolMaxField]
	}
	return s
}

// appendSpoolRecord appends l's record, numbered seq, to buf.
func appendSpoolRecord(buf []byte, seq uint64, l RequestLog) []byte {
	start := len(buf)
	buf = append(buf, spoolMagic0, spoolMagic1, 0, 0, 0, 0, 0, 0, 0, 0)
	p := len(buf)
	buf = binary.AppendUvarint(buf, seq)
	buf = binary.AppendVarint(buf, l.At.UnixNano())
	buf = binary.AppendVarint(buf, int64(l.Status))
	buf = binary.AppendVarint(buf, int64(l.Latency))
	for _, s := range [...]string{l.RequestID, l.APIKeyID, l.Method, l.Path, l.IP} {
		s = cut(s)
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	payload := buf[p:]
	binary.LittleEndian.PutUint32(buf[start+2:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[start+6:], crc32.Checksum(payload, spoolCRC))
	return buf
}

// decodeSpoolRecord decodes the record at the start of data and returns it
// with its length; ok is false when data does not start with a whole,
// intact record.
func decodeSpoolRecord(data []byte) (r spoolRow, n int, ok bool) {
	if len(data) < spoolHeaderLen || data[0] != spoolMagic0 || data[1] != spoolMagic1 {
		return r, 0, false
	}
	size := binary.LittleEndian.Uint32(data[2:])
	if size > spoolMaxPayload || int(size) > len(data)-spoolHeaderLen {
		return r, 0, false
	}
	payload := data[spoolHeaderLen : spoolHeaderLen+int(size)]
	if crc32.Checksum(payload, spoolCRC) != binary.LittleEndian.Uint32(data[6:]) {
		return r, 0, false
	}
	d := payload
	uv := func() (uint64, bool) {
		v, k := binary.Uvarint(d)
		if k <= 0 {
			return 0, false
		}
		d = d[k:]
		return v, true
	}
	sv := func() (int64, bool) {
		v, k := binary.Varint(d)
		if k <= 0 {
			return 0, false
		}
		d = d[k:]
		return v, true
	}
	var good bool
	if r.Seq, good = uv(); !good || r.Seq == 0 {
		return r, 0, false
	}
	at, good := sv()
	if !good {
		return r, 0, false
	}
	status, good := sv()
	if !good || status < -1<<31 || status > 1<<31-1 {
		return r, 0, false
	}
	lat, good := sv()
	if !good {
		return r, 0, false
	}
	r.At, r.Status, r.Latency = time.Unix(0, at), int(status), time.Duration(lat)
	for _, s := range [...]*string{&r.RequestID, &r.APIKeyID, &r.Method, &r.Path, &r.IP} {
		l, good := uv()
		if !good || l > uint64(len(d)) {
			return r, 0, false
		}
		*s = string(d[:l])
		d = d[l:]
	}
	if len(d) != 0 {
		return r, 0, false
	}
	return r, spoolHeaderLen + int(size), true
}

// decodeSpool returns every intact record of data in order, and how many
// stretches of data were not intact records (each counted as one lost row:
// a torn last write is one).
func decodeSpool(data []byte) (rows []spoolRow, bad int) {
	inBad := false
	for i := 0; i < len(data); {
		r, n, ok := decodeSpoolRecord(data[i:])
		if ok {
			rows = append(rows, r)
			i += n
			inBad = false
			continue
		}
		if !inBad {
			bad++
			inBad = true
		}
		// On to the next candidate record.
		j := bytes.IndexByte(data[i+1:], spoolMagic0)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return rows, bad
}

// segment is one spool file this instance holds locked.
type segment struct {
	id     string
	path   string
	f      *os.File
	opened time.Time

	// Guarded by RequestLogWriter.mu.
	size   int64
	last   uint64 // the highest seq appended
	sealed bool   // no more appends: last is final

	// broken: some of the segment's rows are not (or no longer) in memory
	// (the queue was full, or a batch failed): the segment is replayed
	// from its file instead, and its rows still queued are dropped.
	broken atomic.Bool

	// Owned by the writer goroutine.
	committed  uint64    // rows 1..committed are in api_request_logs
	replayFail int       // failed replays that were not the database being away
	nextReplay time.Time // when a failed replay is tried again
}

// openSegment creates a new segment in dir, locked with flock. It is
// created under a temporary name and renamed once locked, so another
// instance's scan for orphans never claims a live segment.
func openSegment(dir string) (*segment, error) {
	id := uuid.NewString()
	tmp := filepath.Join(dir, id+spoolTmpExt)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: request-log spool: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("store: request-log spool: lock %s: %w", tmp, err)
	}
	path := filepath.Join(dir, id+spoolExt)
	if err := os.Rename(tmp, path); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("store: request-log spool: %w", err)
	}
	return &segment{id: id, path: path, f: f, opened: time.Now()}, nil
}

// claimSegment opens and locks the orphaned segment at path: one whose
// instance is gone (the kernel dropped its lock with the process). It
// returns nil when another process holds it, or it is gone already.
func claimSegment(path string) *segment {
	id := strings.TrimSuffix(filepath.Base(path), spoolExt)
	if _, err := uuid.Parse(id); err != nil {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil
	}
	// Another instance may have replayed and removed it between our open
	// and our lock: only a file still at path is ours to replay.
	var held, named syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &held) != nil || syscall.Stat(path, &named) != nil ||
		held.Ino != named.Ino || held.Dev != named.Dev || held.Nlink == 0 {
		f.Close()
		return nil
	}
	return &segment{id: id, path: path, f: f, sealed: true, opened: time.Now()}
}

// readAll reads the segment's file from the start.
func (s *segment) readAll() ([]byte, error) {
	st, err := s.f.Stat()
	if err != nil {
		return nil, err
	}
	data := make([]byte, st.Size())
	n, err := s.f.ReadAt(data, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return data[:n], nil
}

// orphanPaths lists the segment files in dir.
func orphanPaths(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), spoolExt) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}
