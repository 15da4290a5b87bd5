package discord

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// A real /whitelist check body as Discord sends it, with fields the bot
// does not read.
const checkBodySeed = `{"app_permissions":"562949953601536","application_id":"500000000000000001","authorizing_integration_owners":{"0":"100000000000000001"},"channel":{"flags":0,"guild_id":"100000000000000001","id":"600000000000000001","name":"general","type":0},"channel_id":"600000000000000001","context":0,"data":{"id":"700000000000000001","name":"whitelist","options":[{"name":"check","options":[{"name":"user","type":6,"value":"200000000000000002"}],"type":1}],"resolved":{"users":{"200000000000000002":{"avatar":null,"id":"200000000000000002","username":"buyer"}}},"type":1},"entitlements":[],"guild":{"features":[],"id":"100000000000000001","locale":"en-US"},"guild_id":"100000000000000001","guild_locale":"en-US","id":"400000000000000001","locale":"en-US","member":{"avatar":null,"deaf":false,"flags":0,"joined_at":"2026-01-01T00:00:00.000000+00:00","mute":false,"nick":null,"pending":false,"permissions":"2251799813685247","premium_since":null,"roles":["300000000000000001"],"user":{"avatar":null,"discriminator":"0","global_name":"Staff","id":"200000000000000001","public_flags":0,"username":"staff"}},"token":"aW50ZXJhY3Rpb246NDAwMDAwMDAwMDAwMDAwMDAx","type":2,"version":1}`

// decodeSeeds are bodies for FuzzDecodeInteractionMatchesJSON: the shapes
// Discord sends and the corners where a hand-written decoder could part
// from encoding/json.
var decodeSeeds = []string{
	checkBodySeed,
	`{"type":1}`,
	`null`, ` null `, `[]`, `"x"`, `1`, `true`, ``, `{}`, `{} x`, `{"type":1}{}`,
	`{"type":2,"guild_id":"1","member":{"user":{"id":"2"},"roles":["3"],"permissions":"8"},"data":{"name":"whitelist","options":[{"type":1,"name":"add","options":[{"type":6,"name":"user","value":"4"},{"type":3,"name":"roblox","value":"bob"}]}]}}`,
	// Keys match case-insensitively, exact names first, escapes decoded.
	`{"ID":"1","Type":2,"GUILD_ID":"3","Member":{"USER":{"Id":"4"}},"DATA":{"NAME":"redeem"}}`,
	`{"\u0069d":"5","typ\u0065":2,"toke\u017f":"t","tO\u212Aen":"k"}`,
	// Repeated keys: the last wins, pointers and slice elements are reused.
	`{"id":"1","id":"2","member":{"user":{"id":"1"},"roles":["a","b","c"]},"member":{"roles":["x"]},"member":{"roles":["y","z"]}}`,
	`{"data":{"options":[{"name":"a","value":1,"options":[{"name":"b"}]},{"name":"c"}]},"data":{"options":[{"type":1}]},"data":{"options":[null,{"value":null}]}}`,
	`{"member":{"roles":["a"]},"member":{"roles":[]},"member":{"roles":null},"member":null,"user":null,"data":null}`,
	`{"member":{"roles":["a",null,"b"]},"member":{"roles":[null,null,null]}}`,
	`{"member":{"roles":[]},"data":{"options":[{"options":[]}]}}`, `{"member":{"roles":null},"data":{"options":null}}`,
	// Types: nulls leave fields alone, other mismatches are errors.
	`{"type":null,"id":null}`, `{"type":"1"}`, `{"type":1.0}`, `{"type":1e2}`, `{"type":-0}`,
	`{"type":9223372036854775807}`, `{"type":9223372036854775808}`, `{"type":-9223372036854775808}`, `{"type":-9223372036854775809}`,
	`{"id":1}`, `{"id":true}`, `{"id":{}}`, `{"member":[]}`, `{"member":"x"}`, `{"member":{"roles":"x"}}`, `{"member":{"roles":[1]}}`,
	`{"data":{"options":{}}}`, `{"data":{"options":[1]}}`, `{"data":{"options":[{"value":{"a":[1,{"b":null}]}}]}}`,
	// Strings: escapes, invalid UTF-8, lone surrogates, control bytes.
	`{"id":"\ud83d\ude00 \ud800 \udc00x \u00e9 \/ \" \\ \b\f\n\r\t"}`, "{\"id\":\"\xff\xfe a\xc3\"}", "{\"id\":\"a\x01\"}",
	`{"id":"\'"}`, `{"id":"\u12"}`, `{"id":"\x"}`, `{"id":"abc`, `{"id":"abc\`,
	// Syntax: numbers, literals, separators.
	`{"x":01}`, `{"x":-}`, `{"x":1.}`, `{"x":1e}`, `{"x":1e+5,"y":-0.5E-3}`, `{"x":tru}`, `{"x":nul}`, `{"x":falsey}`,
	`{"x":1,}`, `{"x":[1,]}`, `{,}`, `{"x" 1}`, `{"x":}`, `{x:1}`, `{"x":[}`, "{\"x\":\t[ 1 ,\n2 ] \r}",
}

// parseStd is ParseInteraction's decoding as it was: encoding/json.
func parseStd(body []byte, in *Interaction) error { return json.Unmarshal(body, in) }

// FuzzDecodeInteractionMatchesJSON: the slim interaction decoder accepts
// exactly the bodies encoding/json accepts into an Interaction and decodes
// them to the same value, into a zero Interaction and into one a check
// body already filled (repeated keys and reused slices); an option value
// reads as the same string json.Unmarshal gives.
func FuzzDecodeInteractionMatchesJSON(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var prefilled Interaction
		if err := parseStd([]byte(checkBodySeed), &prefilled); err != nil {
			t.Fatal(err)
		}
		for _, start := range []func() Interaction{
			func() Interaction { return Interaction{} },
			func() Interaction { var in Interaction; _ = parseStd([]byte(checkBodySeed), &in); return in },
		} {
			want, got := start(), start()
			errStd := parseStd(body, &want)
			errSlim := decodeInteraction(body, &got)
			if (errStd == nil) != (errSlim == nil) {
				t.Fatalf("body %q: encoding/json err = %v, slim decoder err = %v", body, errStd, errSlim)
			}
			if errStd == nil && !reflect.DeepEqual(want, got) {
				t.Fatalf("body %q:\nencoding/json %s\nslim decoder  %s", body, dump(want), dump(got))
			}
		}
		// Option values: the fast path of stringValue against json.Unmarshal.
		if json.Valid(body) {
			var want string
			if json.Unmarshal(body, &want) != nil {
				want = ""
			}
			if got := stringValue(json.RawMessage(body)); got != want {
				t.Fatalf("stringValue(%q) = %q, json.Unmarshal gives %q", body, got, want)
			}
		}
	})
}

// dump shows an Interaction with its pointers followed and nil told from
// empty.
func dump(in Interaction) string {
	b, _ := json.Marshal(struct {
		Interaction
		Member  *Member
		Roles   []string
		IsNil   bool
		Options []InteractionOption
	}{in, in.Member, rolesOf(in), in.Member != nil && in.Member.Roles == nil, optionsOf(in)})
	return string(b)
}

func rolesOf(in Interaction) []string {
	if in.Member == nil {
		return nil
	}
	return in.Member.Roles
}

func optionsOf(in Interaction) []InteractionOption {
	if in.Data == nil {
		return nil
	}
	return in.Data.Options
}

// TestDecodeInteractionNesting: the slim decoder takes the nesting
// encoding/json takes (10,000 levels) and refuses one more, as it does.
func TestDecodeInteractionNesting(t *testing.T) {
	t.Parallel()
	for _, depth := range []int{maxNesting - 1, maxNesting, maxNesting + 1} {
		// The interaction object is the first level.
		body := `{"x":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `,"type":1}`
		var want, got Interaction
		errStd := parseStd([]byte(body), &want)
		errSlim := decodeInteraction([]byte(body), &got)
		if (errStd == nil) != (errSlim == nil) || !reflect.DeepEqual(want, got) {
			t.Errorf("depth %d: encoding/json err = %v, slim decoder err = %v", depth, errStd, errSlim)
		}
		if (depth <= maxNesting) != (errSlim == nil) {
			t.Errorf("depth %d: slim decoder err = %v", depth, errSlim)
		}
	}
}

// BenchmarkParseInteraction: a /whitelist check body through the slim
// decoder beside encoding/json, the decoder it replaced.
func BenchmarkParseInteraction(b *testing.B) {
	body := []byte(checkBodySeed)
	for _, c := range []struct {
		name   string
		decode func([]byte, *Interaction) error
	}{{"encoding-json", parseStd}, {"slim", decodeInteraction}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				var in Interaction
				if err := c.decode(body, &in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
