package redact_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/server/redact"
)

// fieldNames are field names a logger uses: ordinary ones, and ones named
// like secrets in the shapes code writes them.
var fieldNames = []string{
	"message", "error", "route", "requestId", "url", "detail", "user", "data", "header", "name", "keyId",
	"password", "token", "apiKey", "Authorization", "cookie", "client_secret", "dbPassword", "x-api-key",
	"refreshToken", "stripe_secret_key", "secret", "tokens", "passwordHash1", "token2", "pwd", "KEYRING_PASSPHRASE",
}

// secretShapes prefix a canary so that it becomes (part of) a secret the
// old path may mask, or sits beside one.
var secretShapes = []string{
	"", "Bearer ", "vb_live_", "sk_test_", "whsec_", "password=", "token: ", `"password":"`, `\"apiKey\":\"`,
	"postgres://u:", "eyJhbGciOiJFZERTQSJ9.eyJzdWIi", "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GhIjKl.", "cookie=", "authorization: Bearer ",
	"dial ", "pa55w0rd@", "ſecret=", "tok", " ",
}

// TestProperty42_FieldRedactionRevealsNothingTheScannerHid claims that on
// zerolog lines (strings, nested objects, arrays, numbers, with every
// escape zerolog writes), every canary the old path (the scanner over the
// whole line, redact.Bytes) hides, the structured path (redact.Line) hides
// too; and that a line that was a JSON object still is one. 100 cases
// (rapid's default).
func TestProperty42_FieldRedactionRevealsNothingTheScannerHid(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		var buf bytes.Buffer
		logger := zerolog.New(&buf)
		ev := logger.Info()
		var canaries []string
		canary := func(label string) string {
			c := "C" + rapid.StringMatching(`[A-Za-z0-9]{10,14}`).Draw(rt, label)
			canaries = append(canaries, c)
			return c
		}
		text := func(label string) string {
			var sb strings.Builder
			for j := range rapid.IntRange(1, 3).Draw(rt, label+" parts") {
				sb.WriteString(rapid.SampledFrom(secretShapes).Draw(rt, fmt.Sprintf("%s shape %d", label, j)))
				sb.WriteString(canary(fmt.Sprintf("%s canary %d", label, j)))
				sb.WriteString(rapid.SampledFrom([]string{"", "@db", " ", "\"", "\\", "\n", ",", "}", "é"}).Draw(rt, fmt.Sprintf("%s tail %d", label, j)))
			}
			return sb.String()
		}
		for i := range rapid.IntRange(1, 6).Draw(rt, "fields") {
			name := rapid.SampledFrom(fieldNames).Draw(rt, fmt.Sprintf("field %d name", i))
			label := fmt.Sprintf("field %d", i)
			switch rapid.IntRange(0, 4).Draw(rt, label+" kind") {
			case 0, 1:
				ev = ev.Str(name, text(label))
			case 2:
				ev = ev.Strs(name, []string{text(label + " a"), text(label + " b")})
			case 3:
				inner := rapid.SampledFrom(fieldNames).Draw(rt, label+" inner")
				ev = ev.Dict(name, zerolog.Dict().Str(inner, text(label+" inner")).Int("n", 7))
			case 4:
				ev = ev.Int(name, rapid.IntRange(-5, 1<<20).Draw(rt, label+" int"))
			}
		}
		if rapid.Bool().Draw(rt, "error") {
			ev = ev.Err(errors.New(text("err")))
		}
		ev.Msg(text("msg"))
		line := buf.Bytes()

		old := string(redact.Bytes(bytes.Clone(line)))
		got := redact.Line(bytes.Clone(line))
		for _, c := range canaries {
			if !strings.Contains(old, c) && bytes.Contains(got, []byte(c)) {
				rt.Fatalf("canary %s hidden by the scanner but shown by the field path\nline: %s\nold:  %s\nnew:  %s", c, line, old, got)
			}
		}
		if json.Valid(line) && json.Valid([]byte(old)) && !json.Valid(got) {
			rt.Fatalf("field path broke the JSON\nline: %s\nnew:  %s", line, got)
		}
	})
}

// Fields named like secrets are masked whole by name, whatever their
// value; other fields keep numbers and literals, and their text is
// scanned; lines that are not one JSON object take the old path.
func TestLineMasksByName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`{"level":"info","password":"hunter2 has spaces","message":"x"}`, `{"level":"info","password":"[REDACTED]","message":"x"}`},
		{`{"dbPassword":"p\"q","status":200}`, `{"dbPassword":"[REDACTED]","status":200}`},
		{`{"X-Api-Key":["a","b"],"n":1}`, `{"X-Api-Key":"[REDACTED]","n":1}`},
		{`{"session":{"refreshToken":"r1","id":"i"}}`, `{"session":{"refreshToken":"[REDACTED]","id":"i"}}`},
		{`{"cookie":{"a":"b"}}`, `{"cookie":"[REDACTED]"}`},
		{`{"signingKey":"k","pin":1234,"tokenValid":true,"secret":null}`, `{"signingKey":"[REDACTED]","pin":1234,"tokenValid":true,"secret":null}`},
		{`{"token2":"kept","error":"dial postgres://u:pw@db/x: refused"}`, `{"token2":"kept","error":"dial postgres://u:[REDACTED]@db/x: refused"}`},
		{`{"message":"Authorization: Bearer abc.def"}` + "\n", `{"message":"Authorization: [REDACTED] [REDACTED]"}` + "\n"},
		{`not json password=abc`, `not json password=[REDACTED]`},
		{`{"a":1} trailing vb_live_x`, `{"a":1} trailing [REDACTED]`},
		{`{"vb_live_key":"x"}`, `{"[REDACTED]":"x"}`},
	} {
		if got := string(redact.Line([]byte(tc.in))); got != tc.want {
			t.Errorf("Line(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	plain := []byte(`{"level":"info","status":200,"message":"request"}`)
	if got := redact.Line(plain); &got[0] != &plain[0] {
		t.Errorf("Line of a line with nothing to redact copied it")
	}
}

// FuzzLine: no input panics the field path; input that is not JSON gets
// exactly what the old path gives; and on any input, a word of eight or
// more letters and digits that the old path hid everywhere in the line,
// the field path hides too.
func FuzzLine(f *testing.F) {
	for _, l := range realisticLines {
		f.Add(l)
	}
	for _, p := range pieces {
		f.Add([]byte(`{"message":"` + p + `"}`))
		f.Add([]byte(`{"` + p + `":"x"}`))
		f.Add([]byte(`{"a":` + p + `}`))
	}
	f.Add([]byte(`{"a":eyJhbGciOiJI.eyJzdWIiOiIx.c2lnbmF0dXJl}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		got := redact.Line(bytes.Clone(line))
		old := redact.Bytes(bytes.Clone(line))
		if !json.Valid(line) && !bytes.HasPrefix(bytes.TrimLeft(line, " \t\r\n"), []byte("{")) && !bytes.Equal(got, old) {
			t.Fatalf("Line(%q) = %q, want the old path's %q", line, got, old)
		}
		for _, w := range words(line) {
			if !bytes.Contains(old, w) && bytes.Contains(got, w) {
				t.Fatalf("Line(%q) = %q shows %q, which the old path hid: %q", line, got, w, old)
			}
		}
	})
}

// words are the runs of eight or more ASCII letters and digits in b.
func words(b []byte) [][]byte {
	var out [][]byte
	start := -1
	for i := 0; i <= len(b); i++ {
		alnum := i < len(b) && ('a' <= b[i] && b[i] <= 'z' || 'A' <= b[i] && b[i] <= 'Z' || '0' <= b[i] && b[i] <= '9')
		switch {
		case alnum && start < 0:
			start = i
		case !alnum && start >= 0:
			if i-start >= 8 {
				out = append(out, b[start:i])
			}
			start = -1
		}
	}
	return out
}

// BenchmarkRedactLineFields is the structured path's cost per log line
// over realisticLines, beside BenchmarkRedactLine (the scanner over the
// whole line) in the same run.
func BenchmarkRedactLineFields(b *testing.B) {
	b.ReportAllocs()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		redact.Line(realisticLines[i%len(realisticLines)])
	}
}
