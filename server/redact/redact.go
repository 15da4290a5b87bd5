// Package redact scrubs secret shapes from log output: bearer tokens, JWTs,
// Vectabase API keys, Stripe keys and webhook secrets, Discord bot tokens,
// passwords in URLs, and the values of fields named like password, secret,
// token or API key. It is a last line of defence under the rule that code
// never logs secrets; cmd installs it under every logger it builds.
package redact

import (
	"io"
	"regexp"
	"sync"
)

// Mask replaces what is redacted.
const Mask = "[REDACTED]"

type rule struct {
	re   *regexp.Regexp
	repl string
}

// sensitiveKey names fields whose value is a credential whatever it looks
// like. The value pattern stops at a quote, so JSON (also JSON escaped
// inside a JSON string), key=value and header forms are all covered.
const sensitiveKey = `(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|apikey|authorization|cookie|client[_-]?secret)[a-z_\-]*`

var rules = []rule{
	// Authorization: Bearer <token> (before the key rules, which
	// would take "Bearer" for the value).
	{regexp.MustCompile(`(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*`), "${1}" + Mask},
	// "password":"...", \"password\":\"...\" (a JSON string, escapes included).
	{regexp.MustCompile(sensitiveKey + `\\?"\s*:\s*\\?")(?:[^"\\]|\\[^"]|\\"[^,}\]\s])*`), "${1}" + Mask},
	// password=..., password: ..., 'password': '...'.
	{regexp.MustCompile(sensitiveKey + `'?\s*[:=]\s*'?)([^"'\s,&;}\\]+)`), "${1}" + Mask},
	// JWTs (header.payload.signature, base64url JSON header).
	{regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`), Mask},
	// Vectabase developer API keys.
	{regexp.MustCompile(`vb_(?:live|test)_[A-Za-z0-9]+`), Mask},
	// Stripe secret, restricted and publishable keys, webhook secrets.
	{regexp.MustCompile(`(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]+`), Mask},
	{regexp.MustCompile(`whsec_[A-Za-z0-9+/=]+`), Mask},
	// Discord bot tokens: base64 user id, timestamp, HMAC.
	{regexp.MustCompile(`[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}`), Mask},
	// Passwords in URLs: scheme://user:password@host.
	{regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://[^:/\s@"]*:)[^@\s/"]+@`), "${1}" + Mask + "@"},
}

// String returns s with every secret shape replaced by Mask.
func String(s string) string {
	for _, r := range rules {
		s = r.re.ReplaceAllString(s, r.repl)
	}
	return s
}

// Bytes is String for a byte slice; it returns b itself when nothing
// matched.
func Bytes(b []byte) []byte {
	out := b
	for _, r := range rules {
		if r.re.Match(out) {
			out = r.re.ReplaceAll(out, []byte(r.repl))
		}
	}
	return out
}

// Writer redacts each write before passing it on. zerolog writes one whole
// event per call, so a secret is never split across writes.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Writer over w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes the redacted p and reports len(p) on success, so loggers do
// not mistake a shorter redacted line for a short write.
func (w *Writer) Write(p []byte) (int, error) {
	out := Bytes(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
