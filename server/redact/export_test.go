package redact

// Reference is the redactor without its prefilter: every rule's expression
// on every line, as it was before the prefilter. The property test holds
// the fast path to it.
func Reference(b []byte) []byte {
	out := b
	for i := range rules {
		if rules[i].re.Match(out) {
			out = rules[i].re.ReplaceAll(out, rules[i].repl)
		}
	}
	return out
}

// Candidates exposes the prefilter's verdict for tests.
func Candidates(b []byte) uint32 { return candidates(b) }
