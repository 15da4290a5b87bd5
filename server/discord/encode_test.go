package discord

import (
	"encoding/json"
	"testing"
)

// FuzzResponseJSONMatchesMarshal: Response.AppendJSON writes the bytes
// json.Marshal writes, whatever the reply's content (escapes, HTML
// characters, invalid UTF-8, U+2028), type, flags and allowed mentions.
func FuzzResponseJSONMatchesMarshal(f *testing.F) {
	for _, s := range []string{
		"", "<@200000000000000002> is whitelisted as Roblox user bob (42); products: A & B.",
		"\"quoted\" \\ back\b\f\n\r\t\x00\x1f\x7f", "\xff\xfe bad \xc3 utf-8", "line\u2028para\u2029end é 😀",
		"Something went wrong; nothing was changed. Try again later (request 0123).",
	} {
		f.Add(s, 4, 64, uint8(0))
	}
	f.Add("", 1, 0, uint8(3))
	f.Add("x", 5, 64, uint8(2))
	f.Fuzz(func(t *testing.T, content string, typ, flags int, shape uint8) {
		r := Response{Type: typ}
		if shape&3 != 3 {
			r.Data = &ResponseData{Content: content, Flags: flags}
			switch shape & 3 {
			case 1:
				r.Data.AllowedMentions.Parse = []string{}
			case 2:
				r.Data.AllowedMentions.Parse = []string{content, "users", ""}
			}
		}
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.AppendJSON([]byte("prefix")); string(got) != "prefix"+string(want) {
			t.Fatalf("AppendJSON(%+v) = %q, json.Marshal gives %q", r, got[len("prefix"):], want)
		}
	})
}
