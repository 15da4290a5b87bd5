package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
)

// RewrapResult is what RewrapAll did to each backup in the directory.
type RewrapResult struct {
	// Rewrapped are the backups now wrapped by the new KEK.
	Rewrapped []string `json:"rewrapped"`
	// Failed are the backups left as they were, with why (a file made under
	// a KEK older than the configured one, a damaged file).
	Failed map[string]string `json:"failed,omitempty"`
}

// RewrapAll wraps the key of every backup in the directory under to, the
// KEK that replaces the service's (keys rotate-kek), so that kept backups
// restore with the new KEK alone. A backup the service's KEK cannot open is
// left untouched and reported in Failed; the others are rewritten one by
// one, each atomically (a new file renamed over the old one).
func (s *Service) RewrapAll(ctx context.Context, a Actor, to keyring.KEK) (RewrapResult, error) {
	res := RewrapResult{Rewrapped: []string{}, Failed: map[string]string{}}
	list, err := s.List(ctx)
	if err != nil {
		return res, err
	}
	for _, b := range list {
		if err := s.Rewrap(ctx, a, b.ID, to); err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			var ve *vectabase.Error
			if errors.As(err, &ve) && ve.Code == vectabase.EUNAVAILABLE {
				return res, err
			}
			res.Failed[b.ID] = err.Error()
			continue
		}
		res.Rewrapped = append(res.Rewrapped, b.ID)
	}
	return res, nil
}

// Rewrap wraps backup id's key under to instead of the service's KEK. The
// backup key, and so the dump's encryption, stay the same; the header
// changes, and with it the associated data of the body and the manifest
// tag, so the body is decrypted and encrypted again as it streams into a
// new file (its checksum checked on the way) that replaces the old one only
// when complete. Audited as backup.rewrap.
func (s *Service) Rewrap(ctx context.Context, a Actor, id string, to keyring.KEK) error {
	if !s.busy.TryLock() {
		return vectabase.Errorf(vectabase.ECONFLICT, "another backup operation is running; try again when it ends")
	}
	defer s.busy.Unlock()
	from, err := s.rewrap(ctx, id, to)
	return s.audit(ctx, a, "backup.rewrap", id, err, map[string]any{"from": from, "to": describeKEK(to)})
}

func (s *Service) rewrap(ctx context.Context, id string, to keyring.KEK) (string, error) {
	b, key, err := s.open(ctx, id)
	if err != nil {
		return "", err
	}
	defer b.close()
	from := b.hdr.kek
	kek := s.kek
	if len(b.hdr.kekParams) > 0 && s.kekFor != nil {
		if kek, err = s.kekFor(ctx, b.hdr.kekParams); err != nil {
			return from, fmt.Errorf("backup %s: derive its KEK: %w", id, err)
		}
	}
	_, ks, err := openBackupKeyset(ctx, kek, b.hdr)
	if err != nil {
		return from, fileError(id, err)
	}
	wrapped, err := wrapBackupKey(ctx, to, ks, id)
	if err != nil {
		return from, err
	}
	hdr := encodeHeader(id, describeKEK(to), b.hdr.kekParams, wrapped)
	// The new KEK must open what it wrapped before the old file goes.
	if _, err := openBackupKey(ctx, to, header{id: id, kek: describeKEK(to), wrappedKey: wrapped}); err != nil {
		return from, fmt.Errorf("backup %s: the new KEK cannot read back its own wrap: %w", id, err)
	}

	final := s.path(id)
	tmp := final + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return from, fmt.Errorf("backup: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if _, err := bw.Write(hdr); err != nil {
		return from, fmt.Errorf("backup: write: %w", err)
	}
	body := &countingWriter{w: bw}
	enc, err := key.sa.NewEncryptingWriter(body, hdr)
	if err != nil {
		return from, fmt.Errorf("backup: %w", err)
	}
	r, err := key.reader(b)
	if err != nil {
		return from, fileError(id, err)
	}
	m := newMeter("rewrap", b.manifest.DumpSize, nil)
	if _, err := io.Copy(io.MultiWriter(enc, m), r); err != nil {
		return from, fileError(id, err)
	}
	if err := checkSum(b, m); err != nil {
		return from, err
	}
	if err := enc.Close(); err != nil {
		return from, fmt.Errorf("backup: write: %w", err)
	}
	if body.n != b.bodyLen {
		return from, fmt.Errorf("backup %s: the re-encrypted body is %d bytes, the manifest says %d", id, body.n, b.bodyLen)
	}
	tag, err := manifestTag(key.sa, hdr, b.rawMan)
	if err != nil {
		return from, fmt.Errorf("backup: %w", err)
	}
	for _, p := range [][]byte{b.rawMan, tag, encodeTrailer(len(b.rawMan), len(tag))} {
		if _, err := bw.Write(p); err != nil {
			return from, fmt.Errorf("backup: write: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return from, fmt.Errorf("backup: write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return from, fmt.Errorf("backup: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return from, fmt.Errorf("backup: close: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return from, fmt.Errorf("backup: %w", err)
	}
	ok = true
	syncDir(s.cfg.Dir)
	return from, nil
}
