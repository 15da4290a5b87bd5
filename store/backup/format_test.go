package backup

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpenFile: any bytes, opened as a backup file, give a parsed file or
// an error wrapping ErrCorrupt; never a panic or an unbounded allocation.
func FuzzOpenFile(f *testing.F) {
	hdr := encodeHeader("20260109T120000Z-1a2b3c4d", "local:file:00", []byte("salt"), []byte("wrapped-key"))
	man := []byte(`{"id":"20260109T120000Z-1a2b3c4d","size":1}`)
	whole := append(append(append(append([]byte{}, hdr...), "body"...), man...), "tag"...)
	whole = append(whole, encodeTrailer(len(man), 3)...)
	f.Add(whole)
	f.Add(hdr)
	f.Add([]byte(magic))
	f.Add([]byte{})
	f.Add(append([]byte(magic+"\x00\x01\xff\xff"), make([]byte, 64)...))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "f.vbak")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := openFile(path)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("openFile err = %v, want ErrCorrupt", err)
			}
			return
		}
		defer b.close()
		if b.bodyOff+b.bodyLen > b.size || b.bodyLen < 0 {
			t.Fatalf("body [%d, +%d) outside a %d-byte file", b.bodyOff, b.bodyLen, b.size)
		}
	})
}
