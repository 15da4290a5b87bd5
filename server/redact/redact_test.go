package redact_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/server/redact"
)

func TestStringScrubsSecretShapes(t *testing.T) {
	t.Parallel()
	jwt := "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlX2J5dGVz"
	cases := []struct{ in, secret string }{
		{`Authorization: Bearer abc.DEF-123_xyz~=`, "abc.DEF-123_xyz"},
		{`token ` + jwt + ` expired`, jwt},
		{`key vb_live_4f9KqZ0aB12cD34eF56gH78iJ90kL`, "4f9KqZ0aB12cD34eF56gH78iJ90kL"},
		{`stripe sk_live_51HxYzAbCdEf and sk_test_9Zz8Yy and rk_live_AbC`, "51HxYzAbCdEf"},
		{`webhook whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		{`bot MTA5ODc2NTQzMjEwOTg3NjU0Mw.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789`, "abcdefghijklmnopqrstuvwxyz0123456789"},
		{`{"email":"a@b.c","password":"hunter2 with spaces"}`, "hunter2"},
		{`{"error":"decode {\"password\":\"s3cr3t\\\"q\"}"}`, "s3cr3t"},
		{`password=hunter2&user=bob`, "hunter2"},
		{`{"refreshToken":"r-123456","clientSecret":"cs-987"}`, "r-123456"},
		{`{"clientSecret":"cs-987"}`, "cs-987"},
		{`dial postgres://vectabase_admin:pa55w0rd@db:5432/vb failed`, "pa55w0rd"},
		{`x-api-key: vb_test_zzz`, "zzz"},
	}
	for _, tc := range cases {
		got := redact.String(tc.in)
		if strings.Contains(got, tc.secret) {
			t.Errorf("String(%q) = %q, still holds %q", tc.in, got, tc.secret)
		}
		if !strings.Contains(got, redact.Mask) {
			t.Errorf("String(%q) = %q, no mask", tc.in, got)
		}
	}
	// Ordinary log fields pass untouched.
	for _, keep := range []string{
		`{"level":"info","requestId":"2f6c0a4e-8a39-4f7e-9a55-0d7c35a1e0b1","method":"GET","route":"/api/secrets/:name","status":200,"action":"secret.read","resourceType":"secret"}`,
	} {
		if got := redact.String(keep); got != keep {
			t.Errorf("String(%q) = %q, want unchanged", keep, got)
		}
	}
}

func TestWriterUnderZerolog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := zerolog.New(redact.NewWriter(&buf))
	log.Info().Str("password", "correct horse").Str("authorization", "Bearer tok-123").Msg("login with sk_live_abc123")
	out := buf.String()
	for _, s := range []string{"correct horse", "tok-123", "sk_live_abc123"} {
		if strings.Contains(out, s) {
			t.Errorf("log line %q holds %q", out, s)
		}
	}
	if !strings.HasSuffix(out, "}\n") {
		t.Errorf("log line %q is no longer one JSON line", out)
	}
}

// FuzzStringIsIdempotent: redacting twice changes nothing more, and
// redaction never panics on any input.
func FuzzStringIsIdempotent(f *testing.F) {
	f.Add(`{"password":"x"}`)
	f.Add(`Bearer abc`)
	f.Add(`\"token\":\"\\\"`)
	f.Fuzz(func(t *testing.T, s string) {
		once := redact.String(s)
		if twice := redact.String(once); twice != once {
			t.Fatalf("String not idempotent: %q -> %q -> %q", s, once, twice)
		}
	})
}
