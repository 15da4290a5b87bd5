package discord_test

import (
	"io"
	"testing"
)

// FuzzInteraction: any correctly signed body gets 200 (a reply) or 400,
// never a 500 or a panic, whatever command, guild or options it names.
func FuzzInteraction(f *testing.F) {
	f.Add(command(guildID, adminID, adminPerms, nil, "whitelist", sub("check", userOpt(buyerID))))
	f.Add(command(guildID, adminID, adminPerms, nil, "whitelist", sub("add", userOpt(buyerID), strOpt("roblox", "x"))))
	f.Add(command(guildID, memberID, "not-a-number", []string{staffRole}, "redeem", []opt{strOpt("key", "VB-X"), strOpt("product", "none")}))
	f.Add(command("1", adminID, adminPerms, nil, "whitelist", sub("remove", opt{"type": 6, "name": "user", "value": 12})))
	f.Add([]byte(`{"type":2,"guild_id":"` + guildID + `","member":{"user":{"id":"1"}},"data":{"name":"redeem","options":[{"name":"key","value":{"a":1}}]}}`))
	f.Add([]byte(`{"type":1}`))
	f.Add([]byte(`{}`))
	// One database for every input: a fresh one per input would make
	// fuzzing crawl.
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		e.t = t
		res := e.postAt(body, e.now, nil)
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 && res.StatusCode != 400 {
			t.Fatalf("signed %q = %d %s, want 200 or 400", body, res.StatusCode, b)
		}
	})
}
