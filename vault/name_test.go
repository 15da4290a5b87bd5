package vault_test

import (
	"strings"
	"testing"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/vault"
)

// FuzzValidName: every accepted name is 1 to 255 characters from the
// allowed set with no empty, "." or ".." segment; refusals are
// VALIDATION_FAILED and never repeat the name.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"a", "dev/u/k", "a//b", "/a", "a/", "../x", "a/./b", "ü", strings.Repeat("a", 256), "stripe_secret_key", "x\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := vault.ValidName(name)
		if err != nil {
			if vectabase.ErrorCode(err) != vectabase.EVALIDATION {
				t.Fatalf("ValidName(%q) code %s, want VALIDATION_FAILED", name, vectabase.ErrorCode(err))
			}
			if len(name) > 3 && strings.Contains(vectabase.ErrorMessage(err), name) {
				t.Fatalf("ValidName(%q) message repeats the name", name)
			}
			return
		}
		if len(name) < 1 || len(name) > 255 {
			t.Fatalf("ValidName accepted a name of %d bytes", len(name))
		}
		for _, r := range name {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/", r)) {
				t.Fatalf("ValidName(%q) accepted %q", name, r)
			}
		}
		for _, seg := range strings.Split(name, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("ValidName(%q) accepted segment %q", name, seg)
			}
		}
	})
}
