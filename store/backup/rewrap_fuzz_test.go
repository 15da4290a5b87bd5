package backup_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/vectabase/vectabase/store/backup"
	"github.com/vectabase/vectabase/store/pgtest"
)

// FuzzRewrapRefusesAlteredBackups: Rewrap reads a backup file, which may
// have been altered on disk. Whatever byte is changed (anywhere: header,
// wrapped key, body, manifest, tag, trailer), Rewrap refuses the file and
// leaves it exactly as it was; an unaltered file is rewrapped.
//
//	go test ./store/backup -run '^$' -fuzz FuzzRewrapRefusesAlteredBackups -fuzztime 15s
func FuzzRewrapRefusesAlteredBackups(f *testing.F) {
	ctx := context.Background()
	url := pgtest.URL(f)
	_, kek := newKEK(f)
	_, next := newKEK(f)
	src := f.TempDir()
	svc, err := backup.New(backup.Config{Dir: src}, url, kek)
	if err != nil {
		f.Fatal(err)
	}
	b, err := svc.Create(ctx, backup.LocalOperator, nil)
	if err != nil {
		f.Fatal(err)
	}
	orig, err := os.ReadFile(filepath.Join(src, b.ID+".vbak"))
	if err != nil {
		f.Fatal(err)
	}
	for _, off := range []uint32{0, 9, 20, 40, 200, uint32(len(orig) / 2), uint32(len(orig) - 200), uint32(len(orig) - 20), uint32(len(orig) - 1), uint32(len(orig) + 5)} {
		f.Add(off, byte(1))
	}
	f.Fuzz(func(t *testing.T, off uint32, flip byte) {
		data := bytes.Clone(orig)
		altered := int(off) < len(data) && flip != 0
		if altered {
			data[off] ^= flip
		}
		dir := t.TempDir()
		path := filepath.Join(dir, b.ID+".vbak")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := backup.New(backup.Config{Dir: dir}, url, kek)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Rewrap(ctx, backup.LocalOperator, b.ID, next)
		after, rerr := os.ReadFile(path)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if altered {
			if err == nil {
				t.Fatalf("Rewrap of a file with byte %d xor %#x = nil, want a refusal", off, flip)
			}
			if !bytes.Equal(after, data) {
				t.Fatalf("a refused Rewrap changed the file (byte %d xor %#x)", off, flip)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "*.partial")); len(left) > 0 {
				t.Fatalf("a refused Rewrap left %v", left)
			}
			return
		}
		if err != nil {
			t.Fatalf("Rewrap of the unaltered file: %v", err)
		}
	})
}
