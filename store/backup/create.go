package backup

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/vectabase/vectabase"
)

// bodyKey decrypts a backup's body.
type bodyKey struct{ sa tink.StreamingAEAD }

// reader streams b's decrypted dump. A segment that does not authenticate,
// or a body cut short, fails the Read that reaches it.
func (k *bodyKey) reader(b *backupFile) (io.Reader, error) {
	r, err := k.sa.NewDecryptingReader(bufio.NewReaderSize(io.NewSectionReader(b.f, b.bodyOff, b.bodyLen), 1<<20), b.hdr.raw)
	if err != nil {
		return nil, fmt.Errorf("backup %s: body: %w", b.hdr.id, ErrCorrupt)
	}
	return &bodyReader{r: r, id: b.hdr.id}, nil
}

// bodyReader names a decryption failure as a corrupt body.
type bodyReader struct {
	r  io.Reader
	id string
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("backup %s: the encrypted dump does not authenticate (altered or truncated): %w", b.id, ErrCorrupt)
	}
	return n, err
}

// meter hashes, counts and reports the dump bytes that pass through it.
type meter struct {
	h        hash.Hash
	n        int64
	total    int64
	phase    string
	progress ProgressFunc
	last     time.Time
}

func newMeter(phase string, total int64, p ProgressFunc) *meter {
	return &meter{h: sha256.New(), total: total, phase: phase, progress: p}
}

func (m *meter) Write(p []byte) (int, error) {
	m.h.Write(p)
	m.n += int64(len(p))
	if m.progress != nil && time.Since(m.last) > 100*time.Millisecond {
		m.last = time.Now()
		m.progress(Progress{Phase: m.phase, Done: m.n, Total: m.total})
	}
	return len(p), nil
}

// flush reports where the stream stopped, also when it failed.
func (m *meter) flush() {
	if m.progress != nil {
		m.progress(Progress{Phase: m.phase, Done: m.n, Total: m.total})
	}
}

func (m *meter) done() {
	if m.progress != nil {
		m.progress(Progress{Phase: m.phase, Done: m.n, Total: m.n})
	}
}

func (m *meter) sum() string { return hex.EncodeToString(m.h.Sum(nil)) }

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func newID(now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// Create dumps the database into a new backup file and returns it. The
// row counts in the manifest and the dump come from one snapshot. A failed
// create leaves no file behind.
// The backup is manual: retention never deletes it (see Prune).
func (s *Service) Create(ctx context.Context, a Actor, progress ProgressFunc) (Backup, error) {
	return s.createKind(ctx, a, KindManual, progress)
}

func (s *Service) createKind(ctx context.Context, a Actor, kind string, progress ProgressFunc) (Backup, error) {
	if err := s.lock(); err != nil {
		return Backup{}, err
	}
	defer s.busy.Unlock()
	now := s.now()
	id := newID(now)
	b, err := s.create(ctx, id, now, kind, progress)
	var details map[string]any
	if err == nil {
		details = map[string]any{"dumpSize": b.DumpSize, "schemaVersion": b.SchemaVersion, "tables": len(b.RowCounts), "kind": kind}
		s.noteSuccess(b.CreatedAt)
	} else {
		s.log.Warn().Str("backup", id).Str("error", err.Error()).Msg("backup failed")
		if s.failures != nil {
			s.failures.Inc()
		}
		if s.onFailure != nil {
			s.onFailure(id, err)
		}
	}
	if err := s.audit(ctx, a, "backup.create", id, err, details); err != nil {
		return b, err
	}
	return b, nil
}

func (s *Service) create(ctx context.Context, id string, now time.Time, kind string, progress ProgressFunc) (Backup, error) {
	if err := os.MkdirAll(s.cfg.Dir, 0o700); err != nil {
		return Backup{}, fmt.Errorf("backup: create %s: %w", s.cfg.Dir, err)
	}
	final := s.path(id)
	tmp := final + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return Backup{}, fmt.Errorf("backup: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()

	// One repeatable-read transaction exports the snapshot pg_dump reads
	// and counts the rows the manifest records, so both see the same data.
	c, err := pgx.Connect(ctx, s.db.pgxURL())
	if err != nil {
		return Backup{}, unreachable(err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Backup{}, fmt.Errorf("backup: %w", flatten(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var snapshot, pgVersion string
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot(), current_setting('server_version')").Scan(&snapshot, &pgVersion); err != nil {
		return Backup{}, fmt.Errorf("backup: export snapshot: %w", flatten(err))
	}
	counts, err := rowCounts(ctx, tx)
	if err != nil {
		return Backup{}, err
	}
	schema, err := schemaVersion(ctx, tx)
	if err != nil {
		return Backup{}, err
	}

	sa, wrapped, err := newBackupKey(ctx, s.kek, s.tmpl, id)
	if err != nil {
		return Backup{}, err
	}
	hdr := encodeHeader(id, describeKEK(s.kek), s.kekParams, wrapped)
	bw := bufio.NewWriterSize(f, 1<<20)
	if _, err := bw.Write(hdr); err != nil {
		return Backup{}, fmt.Errorf("backup: write: %w", err)
	}
	body := &countingWriter{w: bw}
	enc, err := sa.NewEncryptingWriter(body, hdr)
	if err != nil {
		return Backup{}, fmt.Errorf("backup: %w", err)
	}
	m := newMeter("dump", -1, progress)

	cmd, tail := s.tools.command("pg_dump", &s.db, "--format=custom", "--snapshot="+snapshot)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return Backup{}, fmt.Errorf("backup: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return Backup{}, fmt.Errorf("backup: start pg_dump: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	_, copyErr := io.Copy(io.MultiWriter(enc, m), out)
	if copyErr != nil {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	stop()
	switch {
	case ctx.Err() != nil:
		return Backup{}, ctx.Err()
	case waitErr != nil:
		return Backup{}, fmt.Errorf("backup: %w", tail.err(waitErr))
	case copyErr != nil:
		return Backup{}, fmt.Errorf("backup: write: %w", copyErr)
	}
	_ = tx.Rollback(ctx)
	if err := enc.Close(); err != nil {
		return Backup{}, fmt.Errorf("backup: write: %w", err)
	}
	m.done()

	man := Manifest{
		ID: id, CreatedAt: now.UTC(), DumpSize: m.n, DumpSHA256: m.sum(),
		BodySize: body.n, SchemaVersion: schema, RowCounts: counts,
		VectabaseVersion: s.version, PostgresVersion: pgVersion, Kind: kind,
	}
	rawMan, err := json.Marshal(man)
	if err != nil {
		return Backup{}, fmt.Errorf("backup: %w", err)
	}
	tag, err := manifestTag(sa, hdr, rawMan)
	if err != nil {
		return Backup{}, fmt.Errorf("backup: %w", err)
	}
	for _, p := range [][]byte{rawMan, tag, encodeTrailer(len(rawMan), len(tag))} {
		if _, err := bw.Write(p); err != nil {
			return Backup{}, fmt.Errorf("backup: write: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return Backup{}, fmt.Errorf("backup: write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return Backup{}, fmt.Errorf("backup: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return Backup{}, fmt.Errorf("backup: close: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return Backup{}, fmt.Errorf("backup: %w", err)
	}
	ok = true
	syncDir(s.cfg.Dir)
	st, err := os.Stat(final)
	if err != nil {
		return Backup{}, fmt.Errorf("backup: %w", err)
	}
	return Backup{Manifest: man, FileSize: st.Size(), KEK: describeKEK(s.kek)}, nil
}

// syncDir makes a rename durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// rowCounts counts the rows of every ordinary table outside the system
// schemas, keyed "schema.table".
func rowCounts(ctx context.Context, q pgx.Tx) (map[string]int64, error) {
	rows, err := q.Query(ctx, `
		SELECT n.nspname, c.relname
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r'
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
		ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("backup: list tables: %w", flatten(err))
	}
	var names [][2]string
	for rows.Next() {
		var n [2]string
		if err := rows.Scan(&n[0], &n[1]); err != nil {
			return nil, fmt.Errorf("backup: list tables: %w", flatten(err))
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("backup: list tables: %w", flatten(err))
	}
	counts := make(map[string]int64, len(names))
	for _, n := range names {
		var c int64
		if err := q.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{n[0], n[1]}.Sanitize()).Scan(&c); err != nil {
			return nil, fmt.Errorf("backup: count %s.%s: %w", n[0], n[1], flatten(err))
		}
		counts[n[0]+"."+n[1]] = c
	}
	return counts, nil
}

// schemaVersion is goose's current version (0 without a goose table).
func schemaVersion(ctx context.Context, q pgx.Tx) (int64, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass('goose_db_version') IS NOT NULL").Scan(&exists); err != nil {
		return 0, fmt.Errorf("backup: schema version: %w", flatten(err))
	}
	if !exists {
		return 0, nil
	}
	var v int64
	err := q.QueryRow(ctx, "SELECT version_id FROM goose_db_version WHERE is_applied ORDER BY id DESC LIMIT 1").Scan(&v)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("backup: schema version: %w", flatten(err))
	}
	return v, nil
}

// unreachable is the error for a database that cannot be connected to:
// UNAVAILABLE for clients, pgx's reason (no password in it) for logs.
func unreachable(err error) error {
	return vectabase.WrapError(vectabase.EUNAVAILABLE, "backup: the database is unreachable", flatten(err))
}

// flatten keeps pgx's error text but not its types: callers above the
// store see plain errors.
func flatten(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(err.Error())
}
