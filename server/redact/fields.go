package redact

// The structured path. zerolog writes one JSON object per line, so the
// writer knows each value's field name: a field named like a secret
// (password, token, secret, API key, authorization, cookie, key
// material...) is masked whole by its name, with no expression, whatever
// its value looks like; the scanner (prefilter, then expressions) runs
// only over the other string values, the free text (message, error, a
// URL...). Numbers, true, false and null pass as they are: no rule can
// match inside them. Anything the path does not fully understand (not one
// JSON object, a key with an escape or a byte outside ASCII, a key that
// itself holds a secret shape, a syntax error) goes through the old path,
// Bytes over the whole line, so the structured path never shows what the
// old one hides (Property 42).

// sensitiveWords are the names that make a field secret when they appear
// in its name followed only by more letters, '_' or '-' (dbPassword,
// stripe_secret_key, x-api-key, accessToken), the old key rules' names
// and a few more for key material. Lower case; names compare in any case.
var sensitiveWords = []string{
	"password", "passwd", "pwd", "passphrase", "secret", "token",
	"apikey", "api_key", "api-key", "authorization", "cookie",
	"privatekey", "private_key", "private-key", "masterkey", "master_key",
	"master-key", "signingkey", "signing_key", "signing-key",
}

// sensitiveName reports whether a field name (ASCII, unescaped) names a
// secret: one of sensitiveWords, in any case, followed by nothing but
// letters, '_' and '-' to the end of the name.
func sensitiveName(name []byte) bool {
	// The tail after a word must be all name characters, so only a word
	// starting after the last other character can qualify.
	from := 0
	for i, c := range name {
		if !(isLetter(c) || c == '_' || c == '-') {
			from = i + 1
		}
	}
	for i := from; i < len(name); i++ {
		for _, w := range wordsByFirst[lower(name[i])] {
			if hasFold(name[i:], w) {
				return true
			}
		}
	}
	return false
}

// wordsByFirst files sensitiveWords by their first letter.
var wordsByFirst = func() (t [256][]string) {
	for _, w := range sensitiveWords {
		t[w[0]] = append(t[w[0]], w)
	}
	return t
}()

// maskedValue replaces the value of a field named like a secret.
var maskedValue = []byte(`"` + Mask + `"`)

// Line redacts one log line: field by field when it is a JSON object (the
// structured path), else as Bytes does. It returns b itself when nothing
// was redacted.
func Line(b []byte) []byte {
	p := lineParser{b: b}
	if !p.line() {
		return Bytes(b)
	}
	if p.out == nil {
		return b
	}
	return append(p.out, b[p.last:]...)
}

// lineParser walks one JSON object, copying b to out lazily: out stays
// nil until a value changes, and b[last:] is what is not copied yet.
type lineParser struct {
	b    []byte
	i    int
	out  []byte
	last int
}

// replace puts repl in place of b[from:to].
func (p *lineParser) replace(from, to int, repl []byte) {
	if p.out == nil {
		p.out = make([]byte, 0, len(p.b)+16)
	}
	p.out = append(p.out, p.b[p.last:from]...)
	p.out = append(p.out, repl...)
	p.last = to
}

// line parses the whole line: one object, then only white space.
func (p *lineParser) line() bool {
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != '{' || !p.object(0) {
		return false
	}
	p.space()
	return p.i == len(p.b)
}

// maxDepth bounds nesting: deeper lines take the old path.
const maxDepth = 32

func (p *lineParser) space() {
	for p.i < len(p.b) && isSpace(p.b[p.i]) {
		p.i++
	}
}

// object parses {"key": value, ...} at p.i.
func (p *lineParser) object(depth int) bool {
	if depth > maxDepth {
		return false
	}
	p.i++ // '{'
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return true
	}
	for {
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return false
		}
		start := p.i + 1
		end, plain := p.str()
		if end < 0 || !plain {
			return false // an escaped or non-ASCII key: the old path
		}
		key := p.b[start:end]
		if candidates(key) != 0 {
			return false // a key that holds a secret shape itself
		}
		p.i = end + 1
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return false
		}
		p.i++
		p.space()
		if sensitiveName(key) {
			from := p.i
			if !p.value(depth, true) {
				return false
			}
			if !literal(p.b[from:p.i]) {
				p.replace(from, p.i, maskedValue)
			}
		} else if !p.value(depth, false) {
			return false
		}
		p.space()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return true
		default:
			return false
		}
	}
}

// array parses [value, ...] at p.i.
func (p *lineParser) array(depth int, skip bool) bool {
	if depth > maxDepth {
		return false
	}
	p.i++ // '['
	p.space()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return true
	}
	for {
		p.space()
		if !p.value(depth, skip) {
			return false
		}
		p.space()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return true
		default:
			return false
		}
	}
}

// value parses one value at p.i. Strings are free text and go through
// the scanner unless skip (the value is masked whole by the caller).
func (p *lineParser) value(depth int, skip bool) bool {
	if p.i >= len(p.b) {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		start := p.i + 1
		end, _ := p.str()
		if end < 0 {
			return false
		}
		p.i = end + 1
		if !skip {
			text := p.b[start:end]
			if red := Bytes(text); !sameSlice(red, text) {
				p.replace(start, end, red)
			}
		}
		return true
	case c == '{':
		if skip {
			return p.skipNested(depth)
		}
		return p.object(depth + 1)
	case c == '[':
		if skip {
			return p.skipNested(depth)
		}
		return p.array(depth+1, false)
	default:
		// true, false, null, or a number (digits, '-', '+', '.', 'e',
		// 'E'): no rule can match inside those. Any other bare word is
		// not JSON and could be a token: the old path takes the line.
		for _, lit := range []string{"true", "false", "null"} {
			if has(p.b[p.i:], lit) {
				p.i += len(lit)
				return true
			}
		}
		start := p.i
		for p.i < len(p.b) && isNumberByte(p.b[p.i]) {
			p.i++
		}
		return p.i > start
	}
}

// skipNested passes over an object or array that is masked whole.
func (p *lineParser) skipNested(depth int) bool {
	out, last := p.out, p.last
	ok := false
	if p.b[p.i] == '{' {
		ok = p.object(depth + 1)
	} else {
		ok = p.array(depth+1, true)
	}
	// Whatever was redacted inside is replaced as a whole by the caller.
	p.out, p.last = out, last
	return ok
}

// str finds the closing quote of the string opening at p.i: its index
// (-1 if none) and whether the string is plain (no escape, ASCII only).
func (p *lineParser) str() (end int, plain bool) {
	plain = true
	for j := p.i + 1; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			return j, plain
		case c == '\\':
			plain = false
			j++
		case c >= 0x80 || c < 0x20:
			plain = false
		}
	}
	return -1, false
}

func isNumberByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

func literal(v []byte) bool {
	s := string(v)
	return s == "true" || s == "false" || s == "null"
}

// sameSlice reports whether a is b itself (Bytes returns its argument
// when nothing matched).
func sameSlice(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
