// Package redact scrubs secret shapes from log output: bearer tokens, JWTs,
// Vectabase API keys, Stripe keys and webhook secrets, Discord bot tokens,
// passwords in URLs, and the values of fields named like password, secret,
// token or API key. It is a last line of defence under the rule that code
// never logs secrets; cmd installs it under every logger it builds.
//
// Every log line passes through it, so it is built to be cheap on the lines
// that hold nothing: one pass over the line looks for what each rule needs
// at the least (a key word followed by a separator, "eyJ", "vb_", "://" and
// "@", two dots six characters apart, ...) and only the rules whose
// necessary condition holds run their regular expression. A rule whose
// condition does not hold cannot match, so the output is the same as
// running every expression on every line.
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
	repl []byte
}

// sensitiveKey names fields whose value is a credential whatever it looks
// like. The value pattern stops at a quote, so JSON (also JSON escaped
// inside a JSON string), key=value and header forms are all covered.
const sensitiveKey = `(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|apikey|authorization|cookie|client[_-]?secret)[a-z_\-]*`

// The rules, in the order they apply; the indexes name them for the
// prefilter.
const (
	ruleBearer = iota
	ruleKeyJSON
	ruleKeyValue
	ruleJWT
	ruleVB
	ruleStripe
	ruleWhsec
	ruleDiscord
	ruleURLPassword
	numRules
)

var rules = [numRules]rule{
	// Authorization: Bearer <token> (before the key rules, which
	// would take "Bearer" for the value).
	ruleBearer: {regexp.MustCompile(`(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*`), []byte("${1}" + Mask)},
	// "password":"...", \"password\":\"...\" (a JSON string, escapes included).
	ruleKeyJSON: {regexp.MustCompile(sensitiveKey + `\\?"\s*:\s*\\?")(?:[^"\\]|\\[^"]|\\"[^,}\]\s])*`), []byte("${1}" + Mask)},
	// password=..., password: ..., 'password': '...'.
	ruleKeyValue: {regexp.MustCompile(sensitiveKey + `'?\s*[:=]\s*'?)([^"'\s,&;}\\]+)`), []byte("${1}" + Mask)},
	// JWTs (header.payload.signature, base64url JSON header).
	ruleJWT: {regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`), []byte(Mask)},
	// Vectabase developer API keys.
	ruleVB: {regexp.MustCompile(`vb_(?:live|test)_[A-Za-z0-9]+`), []byte(Mask)},
	// Stripe secret, restricted and publishable keys, webhook secrets.
	ruleStripe: {regexp.MustCompile(`(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]+`), []byte(Mask)},
	ruleWhsec:  {regexp.MustCompile(`whsec_[A-Za-z0-9+/=]+`), []byte(Mask)},
	// Discord bot tokens: base64 user id, timestamp, HMAC.
	ruleDiscord: {regexp.MustCompile(`[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}`), []byte(Mask)},
	// Passwords in URLs: scheme://user:password@host.
	ruleURLPassword: {regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://[^:/\s@"]*:)[^@\s/"]+@`), []byte("${1}" + Mask + "@")},
}

// String returns s with every secret shape replaced by Mask.
func String(s string) string {
	out := Bytes([]byte(s))
	return string(out)
}

// Bytes is String for a byte slice; it returns b itself when nothing
// matched.
func Bytes(b []byte) []byte {
	need := candidates(b)
	if need == 0 {
		return b
	}
	out := b
	for i := range rules {
		if need&(1<<i) == 0 {
			continue
		}
		r := &rules[i]
		if i == ruleURLPassword {
			// The hand-written matcher gives the expression's result
			// without its unanchored scan for a scheme.
			if m := urlPasswords(out); m != nil {
				out = m
				need = candidates(out)
			}
			continue
		}
		if r.re.Match(out) {
			out = r.re.ReplaceAll(out, r.repl)
			// A replacement changes the text the later rules see:
			// look again rather than trust the first pass.
			need = candidates(out)
		}
	}
	return out
}

// urlPasswords is ruleURLPassword's ReplaceAll without the expression:
// for each "://" preceded by a scheme (a letter, then letters, digits, '+',
// '.' or '-'), a user part free of ':', '/', space, '@' and '"', a ':', and
// a password of at least one byte free of '@', space, '/' and '"' up to an
// '@', the password becomes Mask. Neither part can hold "://", so matches
// never overlap and each "://" is judged on its own. It returns nil when
// nothing matched.
func urlPasswords(b []byte) []byte {
	var out []byte
	last := 0 // b[last:] is not yet copied to out
	for i := 0; i+3 <= len(b); i++ {
		if b[i] != ':' || b[i+1] != '/' || b[i+2] != '/' || i < last {
			continue
		}
		letter := false
		for j := i - 1; j >= last && isSchemeByte(b[j]); j-- {
			if isLetter(b[j]) {
				letter = true
				break
			}
		}
		if !letter {
			continue
		}
		j := i + 3
		for j < len(b) && !(b[j] == ':' || b[j] == '/' || isSpace(b[j]) || b[j] == '@' || b[j] == '"') {
			j++
		}
		if j >= len(b) || b[j] != ':' {
			continue
		}
		k := j + 1
		for k < len(b) && !(b[k] == '@' || isSpace(b[k]) || b[k] == '/' || b[k] == '"') {
			k++
		}
		if k == j+1 || k >= len(b) || b[k] != '@' {
			continue
		}
		out = append(out, b[last:j+1]...)
		out = append(out, Mask+"@"...)
		last = k + 1
		i = k
	}
	if out == nil {
		return nil
	}
	return append(out, b[last:]...)
}

func isSchemeByte(c byte) bool {
	return isLetter(c) || '0' <= c && c <= '9' || c == '+' || c == '.' || c == '-'
}

// allRules asks for every rule: the slow path for text the prefilter does
// not reason about.
const allRules = 1<<numRules - 1

// candidates returns a bit per rule that may match b: a rule whose bit is
// clear cannot match. Text with any byte outside ASCII gets every rule,
// because (?i) folds some non-ASCII letters (the Kelvin sign, the long s)
// onto ASCII ones and the prefilter only knows ASCII.
func candidates(b []byte) uint32 {
	var need uint32
	urlScheme, at := false, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !starts[c] {
			continue
		}
		if c >= 0x80 {
			return allRules
		}
		switch lower(c) {
		case 'b':
			if hasFold(b[i:], "bearer") {
				need |= 1 << ruleBearer
			}
		case 'p':
			if hasFold(b[i:], "passw") || hasFold(b[i:], "pwd") {
				need |= keyRule(b, i+3)
			}
		case 's':
			if hasFold(b[i:], "secret") {
				need |= keyRule(b, i+6)
			}
		case 't':
			if hasFold(b[i:], "token") {
				need |= keyRule(b, i+5)
			}
		case 'a':
			if hasFold(b[i:], "api") {
				need |= keyRule(b, i+3)
			} else if hasFold(b[i:], "authorization") {
				need |= keyRule(b, i+13)
			}
		case 'c':
			if hasFold(b[i:], "cookie") {
				need |= keyRule(b, i+6)
			}
		}
		switch c {
		case 'e':
			if has(b[i:], "eyJ") {
				need |= 1 << ruleJWT
			}
		case 'v':
			if has(b[i:], "vb_") {
				need |= 1 << ruleVB
			}
		case '_':
			if has(b[i:], "_live_") || has(b[i:], "_test_") {
				need |= 1 << ruleStripe
			}
		case 'w':
			if has(b[i:], "whsec_") {
				need |= 1 << ruleWhsec
			}
		case ':':
			if has(b[i:], "://") {
				urlScheme = true
			}
		case '@':
			at = true
		case '.':
			if i+7 < len(b) && b[i+7] == '.' && allToken(b[i+1:i+7]) {
				need |= 1 << ruleDiscord
			}
		}
	}
	if urlScheme && at {
		need |= 1 << ruleURLPassword
	}
	return need
}

// starts marks the bytes the prefilter looks at: the first byte of each
// word it looks for, in both cases, and every byte outside ASCII.
var starts = func() (t [256]bool) {
	for _, c := range []byte("bBpPsStTaAcCevw_:@.") {
		t[c] = true
	}
	for c := 0x80; c < 256; c++ {
		t[c] = true
	}
	return t
}()

// keyRule reports the key rules when the key word ending before at is
// followed, as both key expressions require, by more name characters, then
// quotes, backslashes or spaces, then ':' or '='.
func keyRule(b []byte, at int) uint32 {
	i := at
	for i < len(b) && (isLetter(b[i]) || b[i] == '_' || b[i] == '-') {
		i++
	}
	for i < len(b) && (b[i] == '"' || b[i] == '\'' || b[i] == '\\' || isSpace(b[i])) {
		i++
	}
	if i < len(b) && (b[i] == ':' || b[i] == '=') {
		return 1<<ruleKeyJSON | 1<<ruleKeyValue
	}
	return 0
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isLetter(c byte) bool { c = lower(c); return 'a' <= c && c <= 'z' }

// isSpace is RE2's \s: [\t\n\f\r ].
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

func allToken(b []byte) bool {
	for _, c := range b {
		if !(isLetter(c) || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// hasFold reports whether b starts with the lower-case ASCII word w, in any
// case.
func hasFold(b []byte, w string) bool {
	if len(b) < len(w) {
		return false
	}
	for i := 0; i < len(w); i++ {
		if lower(b[i]) != w[i] {
			return false
		}
	}
	return true
}

func has(b []byte, w string) bool {
	return len(b) >= len(w) && string(b[:len(w)]) == w
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
// not mistake a shorter redacted line for a short write. A JSON line is
// redacted field by field (Line): fields named like secrets masked by
// name, the scanner only over the other strings.
func (w *Writer) Write(p []byte) (int, error) {
	out := Line(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
