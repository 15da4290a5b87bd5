package discord

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TestProperty27_RobloxCacheIsBoundedAndFresh: whatever the sequence of
// look-ups, insertions and clock moves (rapid's default 100 runs), the
// username cache never holds more than its size, never answers an entry
// older than its TTL, and answers what was last stored for a name.
func TestProperty27_RobloxCacheIsBoundedAndFresh(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		now := time.Unix(1_790_000_000, 0)
		size := rapid.IntRange(1, 8).Draw(t, "size")
		ttl := time.Duration(rapid.IntRange(1, 100).Draw(t, "ttl")) * time.Second
		c := newTTLCache(size, ttl, func() time.Time { return now })
		type stored struct {
			id int64
			at time.Time
		}
		model := map[string]stored{}
		names := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"}
		steps := rapid.IntRange(1, 200).Draw(t, "steps")
		for i := range steps {
			name := rapid.SampledFrom(names).Draw(t, "name")
			switch rapid.IntRange(0, 2).Draw(t, "op") {
			case 0:
				id := int64(i + 1)
				c.put(name, RobloxUser{ID: id, Name: name})
				model[name] = stored{id, now}
			case 1:
				u, ok := c.get(name)
				if ok {
					m, known := model[name]
					if !known || m.id != u.ID {
						t.Fatalf("get(%s) = %d, want the last stored %v", name, u.ID, m)
					}
					if !now.Before(m.at.Add(ttl)) {
						t.Fatalf("get(%s) answered an entry stored %v ago (TTL %v)", name, now.Sub(m.at), ttl)
					}
				}
			case 2:
				now = now.Add(time.Duration(rapid.IntRange(0, 50).Draw(t, "advance")) * time.Second)
			}
			if n := c.len(); n > size {
				t.Fatalf("cache holds %d entries, bound %d", n, size)
			}
		}
	})
}

// TestProperty28_InstallStateBindsUserStoreAndTime: a signed install state
// opens to exactly the user, store and expiry it was made for (rapid's
// default 100 runs); any changed byte, a truncation, or its expiry passing
// makes it refused.
func TestProperty28_InstallStateBindsUserStoreAndTime(t *testing.T) {
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	now := time.Unix(1_790_000_000, 0)
	s := &Service{kr: kr, now: func() time.Time { return now }, log: zerolog.Nop()}
	rapid.Check(t, func(t *rapid.T) {
		st := installState{
			expires: now.Add(time.Duration(rapid.IntRange(1, 600).Draw(t, "ttl")) * time.Second),
		}
		copy(st.user[:], rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "user"))
		copy(st.store[:], rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "store"))
		copy(st.nonce[:], rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "nonce"))
		signed, err := s.signState(st)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.openState(signed)
		if err != nil || got.user != st.user || got.store != st.store || got.nonce != st.nonce || !got.expires.Equal(st.expires.Truncate(time.Second)) {
			t.Fatalf("openState(signState(%+v)) = %+v, %v", st, got, err)
		}
		i := rapid.IntRange(0, len(signed)-1).Draw(t, "pos")
		alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
		c := alphabet[rapid.IntRange(0, len(alphabet)-1).Draw(t, "char")]
		tampered := signed[:i] + string(c) + signed[i+1:]
		// Base64's last character of a part may carry unused bits, so two
		// spellings can decode to the same bytes: only a change of the
		// decoded bytes must be refused.
		if !sameBytes(signed, tampered) {
			if _, err := s.openState(tampered); err == nil {
				t.Fatalf("a tampered state (byte %d) was accepted", i)
			}
		}
		if _, err := s.openState(signed[:rapid.IntRange(0, len(signed)-1).Draw(t, "cut")]); err == nil {
			t.Fatal("a truncated state was accepted")
		}
		later := &Service{kr: kr, now: func() time.Time { return st.expires }}
		if _, err := later.openState(signed); err == nil {
			t.Fatal("an expired state was accepted")
		}
	})
}

// TestProperty29_RuleCommandsMatchWhatTheyName: for any spelling of a
// command rule (case, slash, spaces), the normalized rule is matched by
// exactly the commands it names: itself, or every sub-command of its group
// (rapid's default 100 runs).
func TestProperty29_RuleCommandsMatchWhatTheyName(t *testing.T) {
	commands := []string{CmdWhitelistAdd, CmdWhitelistRemove, CmdWhitelistCheck, CmdRedeem}
	rapid.Check(t, func(t *rapid.T) {
		rule := rapid.SampledFrom(KnownRuleCommands).Draw(t, "rule")
		words := strings.Fields(rule)
		for i, w := range words {
			if rapid.Bool().Draw(t, "upper") {
				words[i] = strings.ToUpper(w)
			}
		}
		spelled := strings.Join(words, strings.Repeat(" ", rapid.IntRange(1, 3).Draw(t, "spaces")))
		if rapid.Bool().Draw(t, "slash") {
			spelled = "/" + spelled
		}
		spelled = strings.Repeat(" ", rapid.IntRange(0, 2).Draw(t, "pad")) + spelled
		stored := NormalizeRuleCommand(spelled)
		if stored != rule {
			t.Fatalf("NormalizeRuleCommand(%q) = %q, want %q", spelled, stored, rule)
		}
		for _, cmd := range commands {
			matched := false
			for _, n := range ruleNames(cmd) {
				matched = matched || n == stored
			}
			group, _, _ := strings.Cut(cmd, " ")
			want := stored == cmd || (stored == group && group != cmd)
			if matched != want {
				t.Fatalf("rule %q matches /%s = %v, want %v", stored, cmd, matched, want)
			}
		}
		// Anything else names no command.
		junk := rapid.StringMatching(`[a-z/ ]{0,20}`).Draw(t, "junk")
		if n := NormalizeRuleCommand(junk); n != "" {
			found := false
			for _, k := range KnownRuleCommands {
				found = found || k == n
			}
			if !found {
				t.Fatalf("NormalizeRuleCommand(%q) = %q, not a command", junk, n)
			}
		}
	})
}

// sameBytes reports whether two states decode to the same payload and MAC.
func sameBytes(a, b string) bool {
	dec := func(s string) (string, bool) {
		p, m, ok := strings.Cut(s, ".")
		if !ok || strings.Contains(m, ".") {
			return "", false
		}
		pb, err1 := base64.RawURLEncoding.DecodeString(p)
		mb, err2 := base64.RawURLEncoding.DecodeString(m)
		return string(pb) + "|" + string(mb), err1 == nil && err2 == nil
	}
	x, ok1 := dec(a)
	y, ok2 := dec(b)
	return ok1 && ok2 && x == y
}
