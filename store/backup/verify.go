package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase"
)

// Verify decrypts backup id, checks its checksum, restores it into a
// scratch database on the same server (created and dropped here; the role
// needs CREATEDB) and compares the row counts with the manifest. A backup
// that fails any check gives a VALIDATION_FAILED error saying which.
func (s *Service) Verify(ctx context.Context, a Actor, id string, progress ProgressFunc) (VerifyResult, error) {
	if err := s.lock(); err != nil {
		return VerifyResult{}, err
	}
	defer s.busy.Unlock()
	res, err := s.verify(ctx, id, progress)
	var details map[string]any
	if err == nil {
		details = map[string]any{"tables": res.Tables, "rows": res.Rows}
	}
	return res, s.audit(ctx, a, "backup.verify", id, err, details)
}

func (s *Service) verify(ctx context.Context, id string, progress ProgressFunc) (VerifyResult, error) {
	b, key, err := s.open(ctx, id)
	if err != nil {
		return VerifyResult{}, err
	}
	defer b.close()

	scratch := "vb_verify_" + randomHex(6)
	admin, err := pgx.Connect(ctx, s.db.pgxURL())
	if err != nil {
		return VerifyResult{}, unreachable(err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{scratch}.Sanitize()); err != nil {
		return VerifyResult{}, fmt.Errorf("backup: verify needs a scratch database and could not create one (does the role have CREATEDB?): %w", flatten(err))
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if _, err := admin.Exec(dctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{scratch}.Sanitize()+" WITH (FORCE)"); err != nil {
			s.log.Warn().Str("database", scratch).Str("error", err.Error()).Msg("backup: could not drop the scratch database")
		}
	}()

	target := s.db.database(scratch)
	cmd, tail := s.tools.command("pg_restore", &target, "--no-owner", "--no-acl", "--exit-on-error")
	m := newMeter("verify", b.manifest.DumpSize, progress)
	if err := s.feed(ctx, b, key, cmd, tail, m, nil); err != nil {
		return VerifyResult{}, err
	}
	if err := checkSum(b, m); err != nil {
		return VerifyResult{}, err
	}

	sc, err := pgx.Connect(ctx, target.pgxURL())
	if err != nil {
		return VerifyResult{}, fmt.Errorf("backup: connect to the scratch database: %w", flatten(err))
	}
	defer sc.Close(context.WithoutCancel(ctx))
	tx, err := sc.Begin(ctx)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("backup: %w", flatten(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	got, err := rowCounts(ctx, tx)
	if err != nil {
		return VerifyResult{}, err
	}
	if diff := countDiff(b.manifest.RowCounts, got); diff != "" {
		return VerifyResult{}, vectabase.WrapError(vectabase.EVALIDATION,
			fmt.Sprintf("backup %s: the restored rows differ from the manifest: %s", id, diff), ErrCorrupt)
	}
	res := VerifyResult{ID: id, OK: true, DumpSHA256: b.manifest.DumpSHA256, Tables: len(got), SchemaVersion: b.manifest.SchemaVersion}
	for _, n := range got {
		res.Rows += n
	}
	return res, nil
}

// feed streams b's decrypted dump into cmd's stdin through m, and waits
// for cmd. It reads the body to its end even when cmd stops reading early,
// so that the checksum and the last segment's tag are always checked.
// started, if set, runs once cmd has started or failed to.
func (s *Service) feed(ctx context.Context, b *backupFile, key *bodyKey, cmd *exec.Cmd, tail *stderrTail, m *meter, started func()) error {
	if started != nil {
		defer func() {
			if started != nil {
				started()
			}
		}()
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	r, err := key.reader(b)
	if err != nil {
		return fileError(b.hdr.id, err)
	}
	err = cmd.Start()
	if started != nil {
		started()
		started = nil
	}
	if err != nil {
		return fmt.Errorf("backup: start %s: %w", tail.tool, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	defer stop()
	sink := &lenientWriter{w: in}
	_, readErr := io.Copy(io.MultiWriter(m, sink), ctxReader{ctx: ctx, r: r})
	_ = in.Close()
	m.flush()
	if readErr != nil {
		// Do not let the tool finish on a dump cut short.
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case readErr != nil:
		return fileError(b.hdr.id, readErr)
	case waitErr != nil:
		return fmt.Errorf("backup %s: %w", b.hdr.id, tail.err(waitErr))
	}
	m.done()
	return nil
}

// ctxReader stops a copy when its context ends: a cancelled restore does
// not read the rest of a large file first.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// lenientWriter passes writes on until the first failure (the reader
// exited), then swallows them, so the stream is still read to its end.
type lenientWriter struct {
	w   io.Writer
	err error
}

func (l *lenientWriter) Write(p []byte) (int, error) {
	if l.err == nil {
		_, l.err = l.w.Write(p)
	}
	return len(p), nil
}

// checkSum compares the streamed dump's size and SHA-256 with the manifest.
func checkSum(b *backupFile, m *meter) error {
	if m.n != b.manifest.DumpSize || m.sum() != b.manifest.DumpSHA256 {
		return vectabase.WrapError(vectabase.EVALIDATION,
			fmt.Sprintf("backup %s: the dump's SHA-256 or size does not match the manifest", b.hdr.id), ErrCorrupt)
	}
	return nil
}

// countDiff describes where got differs from want, or "".
func countDiff(want, got map[string]int64) string {
	var d []string
	for t, n := range want {
		g, ok := got[t]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("%s missing (manifest %d rows)", t, n))
		case g != n:
			d = append(d, fmt.Sprintf("%s has %d rows, manifest %d", t, g, n))
		}
	}
	for t := range got {
		if _, ok := want[t]; !ok {
			d = append(d, t+" not in the manifest")
		}
	}
	sort.Strings(d)
	return strings.Join(d, "; ")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
