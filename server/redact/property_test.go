package redact_test

import (
	"bytes"
	"testing"

	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/server/redact"
)

// pieces are fragments the generator glues together: each secret shape,
// near misses of each, the key words with every separator the key rules
// accept, and ordinary log text.
var pieces = []string{
	`Bearer `, `bearer	`, `BEARER x`, `abc.DEF-123_xyz~=`, `"password":"`, `\"token\":\"`, `"clientSecret" : "`,
	`password=`, `pwd: `, `api_key=`, `x-api-key: `, `Authorization: `, `cookie=`, `secrets/:name`, `/api/`,
	`eyJhbGciOiJFZERTQSJ9`, `.eyJzdWIiOiIxMjMifQ`, `.c2lnbmF0dXJl`, `vb_live_4f9KqZ`, `vb_test_`, `sk_live_51Hx`,
	`rk_test_`, `pk_live_`, `whsec_MfKQ9r8G`, `MTA5ODc2NTQzMjEwOTg3NjU0Mw`, `.GhIjKl.`, `abcdefghijklmnopqrstuvwxyz012`,
	`postgres://`, `u:p@`, `s://:@`, `://u:@`, `1://u:p@`, `a.b://u:p q@`, `vectabase_admin:pa55w0rd@db`, `://`, `:`, `@`, `/`, `"`, `'`, `\`, ` `, `,`, `}`, `{`,
	`=`, `.`, `x`, `7`, `-`, `_`, `Kelvin`, "\u212a", "\u017f", "ſecret", `tok`, `en`, `"level":"info"`,
}

// TestProperty30_RedactionPrefilterChangesNothing claims the prefiltered
// redactor gives exactly what every expression on every line gives, for
// lines built from secret shapes, near misses and separators. 100 cases (rapid's default); FuzzBytesMatchesReference
// covers arbitrary bytes.
func TestProperty30_RedactionPrefilterChangesNothing(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		parts := rapid.SliceOfN(rapid.SampledFrom(pieces), 1, 24).Draw(t, "parts")
		tail := rapid.String().Draw(t, "tail")
		var line []byte
		for _, p := range parts {
			line = append(line, p...)
		}
		line = append(line, tail...)
		want := redact.Reference(bytes.Clone(line))
		got := redact.Bytes(bytes.Clone(line))
		if !bytes.Equal(got, want) {
			t.Fatalf("Bytes(%q) = %q, want %q", line, got, want)
		}
	})
}

// FuzzBytesMatchesReference: on any input the prefiltered redactor equals
// the plain one, and neither panics.
func FuzzBytesMatchesReference(f *testing.F) {
	for _, l := range realisticLines {
		f.Add(l)
	}
	for _, p := range pieces {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		want := redact.Reference(bytes.Clone(line))
		if got := redact.Bytes(bytes.Clone(line)); !bytes.Equal(got, want) {
			t.Fatalf("Bytes(%q) = %q, want %q", line, got, want)
		}
	})
}
