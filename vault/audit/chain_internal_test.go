package audit

import (
	"bytes"
	"testing"
)

// FuzzCanonicalJSONIsStable: canonical details re-canonicalise to
// themselves (what Verify recomputes from jsonb equals what Record
// hashed), and no input panics.
func FuzzCanonicalJSONIsStable(f *testing.F) {
	for _, s := range []string{`{}`, `{"b":1,"a":[1.50,2e3,"x\u0000y"]}`, `{"n":1e21,"m":-0.0,"k":12345678901234567890}`, `[1]`, `"s"`, `{"a":{"b":{"c":null}}}`, "{\"\xff\":true}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		once, err := canonicalJSON(raw)
		if err != nil {
			return
		}
		twice, err := canonicalJSON(once)
		if err != nil {
			t.Fatalf("canonicalJSON(%q) = %q, which does not canonicalise again: %v", raw, once, err)
		}
		if !bytes.Equal(once, twice) {
			t.Fatalf("canonicalJSON not stable: %q -> %q -> %q", raw, once, twice)
		}
		if bytes.IndexByte(once, 0) >= 0 || bytes.Contains(once, []byte(`\u0000`)) {
			t.Fatalf("canonicalJSON(%q) = %q keeps a NUL, which jsonb refuses", raw, once)
		}
	})
}
