package discord_test

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/vectabase/vectabase"
)

// deferredWithin sends body and checks that the first answer is a
// deferred ephemeral reply sent within limit, then returns the follow-up.
// The limit is Discord's 3 seconds: the deferred answer waits on nothing
// outside, so a busy machine still meets it.
func (e *env) deferredWithin(body []byte, limit time.Duration) (time.Duration, string) {
	e.t.Helper()
	start := time.Now()
	res := e.postAt(body, e.now, nil)
	took := time.Since(start)
	raw, _ := io.ReadAll(res.Body)
	var r reply
	_ = json.Unmarshal(raw, &r)
	if res.StatusCode != 200 || r.Type != 5 || r.Data == nil || r.Data.Flags != 64 {
		e.t.Fatalf("first answer = %d %s, want a deferred ephemeral reply", res.StatusCode, raw)
	}
	if took >= limit {
		e.t.Errorf("the deferred reply took %v, want under %v", took, limit)
	}
	var in struct{ Token string }
	_ = json.Unmarshal(body, &in)
	return took, e.discord.followUp(e.t, in.Token)
}

// TestSlowRobloxGetsDeferredReplyAtOnce: Roblox answering after 2.8 s
// (past Discord's deadline with our own work added) does not delay the
// answer to Discord; the follow-up carries the result.
func TestSlowRobloxGetsDeferredReplyAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.roblox.mu.Lock()
	e.roblox.delay = 2800 * time.Millisecond
	e.roblox.mu.Unlock()
	took, content := e.deferredWithin(command(guildID, adminID, adminPerms, nil, "whitelist", sub("add", userOpt(buyerID), strOpt("roblox", robloxName))), 3*time.Second)
	t.Logf("deferred reply after %v with Roblox taking 2.8 s", took)
	if !strings.Contains(content, "Whitelisted <@"+buyerID+">") || !strings.Contains(content, "1234567") {
		t.Fatalf("follow-up %q, want the whitelisting", content)
	}
	// The answer is cached: the next look-up of the name does not call Roblox.
	e.roblox.mu.Lock()
	e.roblox.delay = 0
	e.roblox.mu.Unlock()
	e.run(command(guildID, adminID, adminPerms, nil, "whitelist", sub("remove", userOpt(buyerID))))
	e.run(command(guildID, adminID, adminPerms, nil, "whitelist", sub("add", userOpt(otherID), strOpt("roblox", strings.ToUpper(robloxName)))))
	if n := len(e.roblox.requests()); n != 1 {
		t.Errorf("roblox requests = %d, want 1 (the second look-up cached)", n)
	}
}

// TestRobloxRateLimitIsRetried: a 429 with Retry-After: 1 is waited out
// and retried; the member gets the result, not an error.
func TestRobloxRateLimitIsRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.roblox.mu.Lock()
	e.roblox.throttle = 1
	e.roblox.mu.Unlock()
	_, content := e.deferredWithin(command(guildID, adminID, adminPerms, nil, "whitelist", sub("add", userOpt(buyerID), strOpt("roblox", robloxName))), 3*time.Second)
	if !strings.Contains(content, "Whitelisted") {
		t.Fatalf("follow-up %q, want the whitelisting", content)
	}
	if n := len(e.roblox.requests()); n != 2 {
		t.Errorf("roblox requests = %d, want 2 (429, then the answer)", n)
	}
}

// TestRobloxDownIsReportedClearly: Roblox failing for the whole budget
// gives the member a reply naming Roblox, and changes nothing.
func TestRobloxDownIsReportedClearly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.roblox.mu.Lock()
	e.roblox.throttle = 1000
	e.roblox.mu.Unlock()
	_, content := e.deferredWithin(command(guildID, adminID, adminPerms, nil, "whitelist", sub("add", userOpt(buyerID), strOpt("roblox", robloxName))), 3*time.Second)
	if !strings.Contains(content, "Roblox is not answering") || !strings.Contains(content, "nothing was changed") {
		t.Fatalf("follow-up %q, want Roblox reported down", content)
	}
	if e.count(`SELECT count(*) FROM whitelist_users`)+e.count(`SELECT count(*) FROM bot_whitelisted_users`) != 0 || len(e.discord.requests()) != 0 {
		t.Fatal("a failed look-up changed something")
	}
}

// TestRoleGrantRetried: Discord's role endpoint failing twice (500) then
// succeeding leaves the member with the role, the grant done, and one
// audit row.
func TestRoleGrantRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.repo.SetCommandPermission(t.Context(), e.server.ID, "redeem", guildID, true); err != nil {
		t.Fatal(err)
	}
	key := e.newKey(779)
	e.discord.failNext(2)
	_, content := e.deferredWithin(command(guildID, buyerID, plainPerms, nil, "redeem", []opt{strOpt("key", key)}), 3*time.Second)
	if !strings.Contains(content, "linked to your Discord account") || !strings.Contains(content, "<@&"+buyerRole+">") {
		t.Fatalf("follow-up %q", content)
	}
	puts := 0
	for _, r := range e.discord.requests() {
		if r.Method == "PUT" && r.Path == "/guilds/"+guildID+"/members/"+buyerID+"/roles/"+buyerRole {
			puts++
		}
	}
	if puts != 3 {
		t.Errorf("role PUTs = %d, want 3 (two failures, then success)", puts)
	}
	if n := e.count(`SELECT count(*) FROM bot_role_grants WHERE state = 'done' AND attempts = 3 AND last_status IS NULL AND discord_user_id = $1`, buyerID); n != 1 {
		t.Errorf("done grants with 3 attempts = %d, want 1", n)
	}
	var redeems []vectabase.AuditEvent
	for _, ev := range e.audit.all() {
		if ev.Action == "discord.redeem" {
			redeems = append(redeems, ev)
		}
	}
	if len(redeems) != 1 || redeems[0].Result != vectabase.ResultSuccess {
		t.Errorf("redeem audit rows = %+v, want one success", redeems)
	}
}

// TestInteractionReplayIsIgnored: Discord delivering the same interaction
// twice runs the command once.
func TestInteractionReplayIsIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := command(guildID, adminID, adminPerms, nil, "whitelist", sub("add", userOpt(buyerID), strOpt("roblox", robloxName)))
	if r := e.run(body); !strings.Contains(r.content(), "Whitelisted") {
		t.Fatalf("first delivery: %q", r.content())
	}
	res := e.postAt(body, e.now, nil)
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || !strings.Contains(string(raw), `"type":5`) {
		t.Fatalf("second delivery = %d %s, want an acknowledgement", res.StatusCode, raw)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(e.roblox.requests()); n != 1 {
		t.Errorf("roblox requests = %d, want 1", n)
	}
	if n := len(e.discord.requests()); n != 1 {
		t.Errorf("role requests = %d, want 1", n)
	}
	if n := len(e.audit.all()); n != 1 {
		t.Errorf("audit events = %d, want 1", n)
	}
	// A database-only command replayed: answered, nothing run.
	check := command(guildID, adminID, adminPerms, nil, "whitelist", sub("check", userOpt(buyerID)))
	e.run(check)
	if r := e.run(check); !strings.Contains(r.content(), "already handled") {
		t.Errorf("replayed check: %q", r.content())
	}
}
