package discord

import (
	"crypto/ed25519"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/store/pgtest"

	"github.com/vectabase/vectabase/store"
)

// TestPropertyDenyRuleAlwaysWins: whatever the caller's permissions and
// other rules, one matching allowed=false rule refuses; with no deny, any
// allow or ADMINISTRATOR permits, and nothing else does.
func TestPropertyDenyRuleAlwaysWins(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rules := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) store.CommandPermission {
			return store.CommandPermission{Command: "redeem", RoleID: "1", Allowed: rapid.Bool().Draw(t, "allowed")}
		}), 0, 6).Draw(t, "rules")
		bits := rapid.Uint64().Draw(t, "permissions")
		perms := strconv.FormatUint(bits, 10)
		admin := bits&(1<<permAdministrator) != 0
		deny, allow := false, false
		for _, r := range rules {
			deny = deny || !r.Allowed
			allow = allow || r.Allowed
		}
		want := !deny && (allow || admin)
		if got := decide(rules, perms); got != want {
			t.Fatalf("decide(%v, %s) = %v, want %v", rules, perms, got, want)
		}
	})
}

// TestPropertySignatureBindsTimestampAndBody: a signature verifies only for
// the exact timestamp and body it was made over.
func TestPropertySignatureBindsTimestampAndBody(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	now := time.Unix(1_790_000_000, 0)
	rapid.Check(t, func(t *rapid.T) {
		body := rapid.SliceOfN(rapid.Byte(), 1, 200).Draw(t, "body")
		ts := strconv.FormatInt(now.Unix()-rapid.Int64Range(0, 200).Draw(t, "age"), 10)
		sig := hex.EncodeToString(ed25519.Sign(priv, append([]byte(ts), body...)))
		if err := verify(pub, sig, ts, body, now); err != nil {
			t.Fatalf("genuine signature refused: %v", err)
		}
		i := rapid.IntRange(0, len(body)-1).Draw(t, "flip")
		tampered := append([]byte(nil), body...)
		tampered[i] ^= 1 << rapid.IntRange(0, 7).Draw(t, "bit")
		if verify(pub, sig, ts, tampered, now) == nil {
			t.Fatal("signature verified over a tampered body")
		}
		// Moving bytes between timestamp and body changes the message too.
		if verify(pub, sig, ts+string(body[:1]), body[1:], now) == nil {
			t.Fatal("signature verified over a shifted timestamp")
		}
	})
}

// FuzzParseInteraction: any body either parses or fails with ErrMalformed,
// never panics, and a parsed command's helpers never panic either.
func FuzzParseInteraction(f *testing.F) {
	for _, s := range []string{
		`{"type":1}`,
		`{"type":2,"guild_id":"1","member":{"user":{"id":"2"},"roles":["3"],"permissions":"8"},"data":{"name":"whitelist","options":[{"type":1,"name":"add","options":[{"type":6,"name":"user","value":"4"},{"type":3,"name":"roblox","value":"bob"}]}]}}`,
		`{"type":2,"guild_id":"1","member":{"user":{"id":"2"},"roles":[],"permissions":"99999999999999999999999999"},"data":{"name":"redeem","options":[{"type":3,"name":"key","value":5}]}}`,
		`{"type":2,"data":{"name":"x","options":[{"type":1,"name":"a","options":[{"type":1,"name":"b"}]}]}}`,
		`{"type":3}`, `null`, `[]`, `{"type":"1"}`, `{"type":2,"member":{"roles":["x"]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := ParseInteraction(body)
		if err != nil {
			return
		}
		name, opts := in.Command()
		_ = name
		_ = stringOption(opts, "key")
		_ = userOption(opts, "user")
		if in.Member != nil {
			_ = isAdministrator(in.Member.Permissions)
		}
	})
}

// FuzzOpenState: any string given as an install state is refused unless
// it is one this server signed; nothing panics.
func FuzzOpenState(f *testing.F) {
	db := pgtest.New(f)
	kr := keyringtest.New(f, db.Pool)
	now := time.Unix(1_790_000_000, 0)
	s := &Service{kr: kr, now: func() time.Time { return now }}
	good, err := s.signState(installState{expires: now.Add(time.Minute)})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{good, "", ".", "a.b", good + "x", "." + good, strings.Repeat("A", 80) + "." + strings.Repeat("B", 43)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, state string) {
		st, err := s.openState(state)
		if err == nil && !sameBytes(state, good) {
			t.Fatalf("openState accepted a state it did not sign: %+v", st)
		}
		_ = NormalizeRuleCommand(state)
	})
}
