package discord

import (
	"encoding/json"
	"errors"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The interaction decoder. Every command Discord sends is parsed, and
// encoding/json's reflection over Interaction was the largest share of the
// Go work of /whitelist check (about 10 µs of the check's 30 in the
// handler benchmark's profile). decodeInteraction reads the same fields
// by hand and is meant to be indistinguishable from
// json.Unmarshal(body, &in): the same bodies are accepted (syntax checked
// everywhere, unknown fields skipped, at most encoding/json's 10,000 levels
// of nesting), keys match fields exactly or case-insensitively as
// encoding/json's do, strings are unquoted alike (invalid UTF-8 and lone
// surrogates become U+FFFD), a repeated key decodes into what the first
// one left (pointers and slice elements are reused), null leaves strings
// and numbers alone and clears pointers and slices, and a value of the
// wrong type is an error. FuzzDecodeInteractionMatchesJSON holds it to
// encoding/json on random bodies.

// errDecode is every decoding failure: ParseInteraction reports one
// message whatever the cause, as it did over encoding/json.
var errDecode = errors.New("invalid interaction JSON")

// maxNesting is encoding/json's bound on nested objects and arrays.
const maxNesting = 10000

type decoder struct {
	b     []byte
	i     int
	depth int
}

// decodeInteraction decodes body into in as json.Unmarshal would.
func decodeInteraction(body []byte, in *Interaction) error {
	d := decoder{b: body}
	var err error
	switch d.peek() {
	case '{':
		err = d.interaction(in)
	case 'n':
		err = d.null()
	default:
		// Any other value (or none) is a syntax or type error.
		err = errDecode
	}
	if err != nil {
		return err
	}
	if d.peek() != 0 || d.i != len(d.b) {
		return errDecode
	}
	return nil
}

// peek skips white space and returns the next byte (0 at the end).
func (d *decoder) peek() byte {
	for d.i < len(d.b) {
		switch c := d.b[d.i]; c {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return c
		}
	}
	return 0
}

func (d *decoder) literal(word string) error {
	if len(d.b)-d.i < len(word) || string(d.b[d.i:d.i+len(word)]) != word {
		return errDecode
	}
	d.i += len(word)
	return nil
}

func (d *decoder) null() error { return d.literal("null") }

// open consumes '{' or '[' and reports whether the container is empty (its
// closing byte consumed too).
func (d *decoder) open(closing byte) (empty bool, err error) {
	d.depth++
	if d.depth > maxNesting {
		return false, errDecode
	}
	d.i++
	if d.peek() == closing {
		d.i++
		d.depth--
		return true, nil
	}
	return false, nil
}

// next consumes the ',' before another member or element and reports
// true, or the closing byte and reports false.
func (d *decoder) next(closing byte) (bool, error) {
	switch d.peek() {
	case ',':
		d.i++
		return true, nil
	case closing:
		d.i++
		d.depth--
		return false, nil
	}
	return false, errDecode
}

// key reads an object key and its ':'. The key aliases the body unless
// it had escapes or invalid UTF-8.
func (d *decoder) key() ([]byte, error) {
	if d.peek() != '"' {
		return nil, errDecode
	}
	k, err := d.stringBytes()
	if err != nil {
		return nil, err
	}
	if d.peek() != ':' {
		return nil, errDecode
	}
	d.i++
	return k, nil
}

// field returns the index in names of the field key names, matching as
// encoding/json does: exactly, else case-insensitively (Unicode simple
// folding: "ſ" matches "s"); -1 when none does.
func field(key []byte, names []string) int {
	for i, n := range names {
		if string(key) == n {
			return i
		}
	}
	for i, n := range names {
		if strings.EqualFold(string(key), n) {
			return i
		}
	}
	return -1
}

// scanString checks the string literal at d.i and moves past it. It
// returns its contents' bounds and whether they need unquoting (escapes
// or bytes outside ASCII).
func (d *decoder) scanString() (start, end int, plain bool, err error) {
	d.i++ // the opening quote
	start, plain = d.i, true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			end = d.i
			d.i++
			return start, end, plain, nil
		case c == '\\':
			plain = false
			if d.i+1 >= len(d.b) {
				return 0, 0, false, errDecode
			}
			switch d.b[d.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.i += 2
			case 'u':
				if d.i+6 > len(d.b) {
					return 0, 0, false, errDecode
				}
				for _, h := range d.b[d.i+2 : d.i+6] {
					if !isHex(h) {
						return 0, 0, false, errDecode
					}
				}
				d.i += 6
			default:
				return 0, 0, false, errDecode
			}
		case c < ' ':
			return 0, 0, false, errDecode
		default:
			if c >= utf8.RuneSelf {
				plain = false
			}
			d.i++
		}
	}
	return 0, 0, false, errDecode
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// stringBytes reads a string literal's value.
func (d *decoder) stringBytes() ([]byte, error) {
	start, end, plain, err := d.scanString()
	if err != nil {
		return nil, err
	}
	if plain {
		return d.b[start:end], nil
	}
	t, ok := unquoteBytes(d.b[start-1 : end+1])
	if !ok {
		return nil, errDecode
	}
	return t, nil
}

// str decodes a JSON string into p; null leaves it as it was.
func (d *decoder) str(p *string) error {
	switch d.peek() {
	case '"':
		b, err := d.stringBytes()
		if err != nil {
			return err
		}
		*p = string(b)
		return nil
	case 'n':
		return d.null()
	}
	return errDecode
}

// name is str for command and option names, which are mostly the bot's
// own: those are not allocated again.
func (d *decoder) name(p *string) error {
	if d.peek() != '"' {
		return d.str(p)
	}
	b, err := d.stringBytes()
	if err != nil {
		return err
	}
	*p = internName(b)
	return nil
}

func internName(b []byte) string {
	switch string(b) {
	case "whitelist":
		return "whitelist"
	case "check":
		return "check"
	case "add":
		return "add"
	case "remove":
		return "remove"
	case "redeem":
		return "redeem"
	case "user":
		return "user"
	case "roblox":
		return "roblox"
	case "product":
		return "product"
	case "key":
		return "key"
	}
	return string(b)
}

// integer decodes a JSON integer into p as encoding/json does into an int:
// a fraction, an exponent or an overflow is an error; null leaves p.
func (d *decoder) integer(p *int) error {
	c := d.peek()
	if c == 'n' {
		return d.null()
	}
	if c != '-' && (c < '0' || c > '9') {
		return errDecode
	}
	start := d.i
	if err := d.number(); err != nil {
		return err
	}
	n, ok := parseInt64(d.b[start:d.i])
	if !ok {
		return errDecode
	}
	*p = int(n)
	return nil
}

// parseInt64 parses a JSON number with no fraction or exponent.
func parseInt64(b []byte) (int64, bool) {
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false // '.', 'e' or 'E'
		}
		if u > (1<<63)/10 {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
		if u > 1<<63 {
			return 0, false
		}
	}
	if neg {
		return -int64(u), true // -(1<<63) wraps to itself, as it should
	}
	if u == 1<<63 {
		return 0, false
	}
	return int64(u), true
}

// number checks the number literal at d.i and moves past it.
func (d *decoder) number() error {
	b, i := d.b, d.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		return errDecode
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return errDecode
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return errDecode
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	d.i = i
	return nil
}

// skip checks any JSON value and moves past it.
func (d *decoder) skip() error {
	switch c := d.peek(); {
	case c == '"':
		_, _, _, err := d.scanString()
		return err
	case c == '{':
		empty, err := d.open('}')
		for more := !empty; err == nil && more; more, err = d.next('}') {
			if _, err := d.key(); err != nil {
				return err
			}
			if err := d.skip(); err != nil {
				return err
			}
		}
		return err
	case c == '[':
		empty, err := d.open(']')
		for more := !empty; err == nil && more; more, err = d.next(']') {
			if err := d.skip(); err != nil {
				return err
			}
		}
		return err
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.null()
	case c == '-' || '0' <= c && c <= '9':
		return d.number()
	}
	return errDecode
}

// raw decodes any value into p as json.RawMessage's UnmarshalJSON does
// (null included).
func (d *decoder) raw(p *json.RawMessage) error {
	d.peek()
	start := d.i
	if err := d.skip(); err != nil {
		return err
	}
	*p = append((*p)[:0], d.b[start:d.i]...)
	return nil
}

var (
	interactionFields = []string{"id", "application_id", "type", "token", "guild_id", "member", "user", "data"}
	memberFields      = []string{"user", "roles", "permissions"}
	userFields        = []string{"id", "username"}
	commandDataFields = []string{"id", "name", "type", "options"}
	optionFields      = []string{"name", "type", "value", "options"}
)

// object decodes the object at d.i, calling member for each key that
// names one of fields (by its index) and skipping the others.
func (d *decoder) object(fields []string, member func(int) error) error {
	empty, err := d.open('}')
	for more := !empty; err == nil && more; more, err = d.next('}') {
		k, err := d.key()
		if err != nil {
			return err
		}
		if f := field(k, fields); f >= 0 {
			err = member(f)
		} else {
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
	return err
}

func (d *decoder) interaction(in *Interaction) error {
	return d.object(interactionFields, func(f int) error {
		switch f {
		case 0:
			return d.str(&in.ID)
		case 1:
			return d.str(&in.ApplicationID)
		case 2:
			return d.integer(&in.Type)
		case 3:
			return d.str(&in.Token)
		case 4:
			return d.str(&in.GuildID)
		case 5:
			return d.member(&in.Member)
		case 6:
			return d.user(&in.User)
		default:
			return d.data(&in.Data)
		}
	})
}

// pointerTo reports what to do with a pointer field: decode an object
// into it (allocated when nil), or clear it for null.
func (d *decoder) pointerTo() (object bool, err error) {
	switch d.peek() {
	case '{':
		return true, nil
	case 'n':
		return false, d.null()
	}
	return false, errDecode
}

func (d *decoder) member(p **Member) error {
	obj, err := d.pointerTo()
	if !obj {
		if err == nil {
			*p = nil
		}
		return err
	}
	if *p == nil {
		*p = new(Member)
	}
	m := *p
	return d.object(memberFields, func(f int) error {
		switch f {
		case 0:
			return d.user(&m.User)
		case 1:
			return d.strings(&m.Roles)
		default:
			return d.str(&m.Permissions)
		}
	})
}

func (d *decoder) user(p **User) error {
	obj, err := d.pointerTo()
	if !obj {
		if err == nil {
			*p = nil
		}
		return err
	}
	if *p == nil {
		*p = new(User)
	}
	u := *p
	return d.object(userFields, func(f int) error {
		if f == 0 {
			return d.str(&u.ID)
		}
		return d.str(&u.Username)
	})
}

func (d *decoder) data(p **CommandData) error {
	obj, err := d.pointerTo()
	if !obj {
		if err == nil {
			*p = nil
		}
		return err
	}
	if *p == nil {
		*p = new(CommandData)
	}
	c := *p
	return d.object(commandDataFields, func(f int) error {
		switch f {
		case 0:
			return d.str(&c.ID)
		case 1:
			return d.name(&c.Name)
		case 2:
			return d.integer(&c.Type)
		default:
			return d.options(&c.Options)
		}
	})
}

// option decodes into an option in place (null leaves it as it was).
func (d *decoder) option(o *InteractionOption) error {
	switch d.peek() {
	case 'n':
		return d.null()
	case '{':
	default:
		return errDecode
	}
	return d.object(optionFields, func(f int) error {
		switch f {
		case 0:
			return d.name(&o.Name)
		case 1:
			return d.integer(&o.Type)
		case 2:
			return d.raw(&o.Value)
		default:
			return d.options(&o.Options)
		}
	})
}

// slice decodes a JSON array into *p as encoding/json does into a slice:
// elements are decoded in place into the slice's existing elements (up to
// its capacity), the slice ends as long as the array (empty but not nil
// for []), and null makes it nil.
func slice[T any](d *decoder, p *[]T, elem func(*T) error) error {
	switch d.peek() {
	case 'n':
		if err := d.null(); err != nil {
			return err
		}
		*p = nil
		return nil
	case '[':
	default:
		return errDecode
	}
	s := *p
	i := 0
	empty, err := d.open(']')
	for more := !empty; err == nil && more; more, err = d.next(']') {
		switch {
		case i >= cap(s):
			var zero T
			s = append(s, zero)
		case i >= len(s):
			s = s[:i+1]
		}
		if err := elem(&s[i]); err != nil {
			return err
		}
		i++
	}
	if err != nil {
		return err
	}
	if i < len(s) {
		s = s[:i]
	}
	if i == 0 {
		s = []T{}
	}
	*p = s
	return nil
}

func (d *decoder) strings(p *[]string) error { return slice(d, p, d.str) }

func (d *decoder) options(p *[]InteractionOption) error { return slice(d, p, d.option) }

// unquoteBytes is encoding/json's (Go 1.26, BSD licence): it unquotes a
// string literal the scanner accepted, keeping valid UTF-8 and turning
// invalid bytes and lone surrogates into U+FFFD.
func unquoteBytes(s []byte) (t []byte, ok bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return
	}
	s = s[1 : len(s)-1]

	// Check for unusual characters. If there are none, then no unquoting
	// is needed, so return a slice of the original bytes.
	r := 0
	for r < len(s) {
		c := s[r]
		if c == '\\' || c == '"' || c < ' ' {
			break
		}
		rr, size := utf8.DecodeRune(s[r:])
		if rr == utf8.RuneError && size == 1 {
			break
		}
		r += size
	}
	if r == len(s) {
		return s, true
	}

	b := make([]byte, len(s)+2*utf8.UTFMax)
	w := copy(b, s[0:r])
	for r < len(s) {
		// Out of room? Can only happen if s is full of malformed UTF-8
		// and we're replacing each byte with RuneError.
		if w >= len(b)-2*utf8.UTFMax {
			nb := make([]byte, (len(b)+utf8.UTFMax)*2)
			copy(nb, b[0:w])
			b = nb
		}
		switch c := s[r]; {
		case c == '\\':
			r++
			if r >= len(s) {
				return
			}
			switch s[r] {
			default:
				return
			case '"', '\\', '/', '\'':
				b[w] = s[r]
				r++
				w++
			case 'b':
				b[w] = '\b'
				r++
				w++
			case 'f':
				b[w] = '\f'
				r++
				w++
			case 'n':
				b[w] = '\n'
				r++
				w++
			case 'r':
				b[w] = '\r'
				r++
				w++
			case 't':
				b[w] = '\t'
				r++
				w++
			case 'u':
				r--
				rr := getu4(s[r:])
				if rr < 0 {
					return
				}
				r += 6
				if utf16.IsSurrogate(rr) {
					rr1 := getu4(s[r:])
					if dec := utf16.DecodeRune(rr, rr1); dec != unicode.ReplacementChar {
						// A valid pair; consume.
						r += 6
						w += utf8.EncodeRune(b[w:], dec)
						break
					}
					// Invalid surrogate; fall back to replacement rune.
					rr = unicode.ReplacementChar
				}
				w += utf8.EncodeRune(b[w:], rr)
			}

		// Quote, control characters are invalid.
		case c == '"', c < ' ':
			return

		// ASCII
		case c < utf8.RuneSelf:
			b[w] = c
			r++
			w++

		// Coerce to well-formed UTF-8.
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			w += utf8.EncodeRune(b[w:], rr)
		}
	}
	return b[0:w], true
}

// getu4 decodes \uXXXX from the beginning of s, returning the hex value,
// or it returns -1 (encoding/json's).
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
