package discord_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vectabase/vectabase"
)

// tokenOf is an interaction body's token.
func tokenOf(body []byte) string {
	var in struct{ Token string }
	_ = json.Unmarshal(body, &in)
	return in.Token
}

// followUpContaining waits (up to 20 s) for the reply of interaction token
// to be edited into content containing want, and returns it ("" if never).
func (d *discordDouble) followUpContaining(token, want string) string {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		b, ok := d.followups[token]
		d.mu.Unlock()
		var m struct{ Content string }
		if ok && json.Unmarshal(b, &m) == nil && strings.Contains(m.Content, want) {
			return m.Content
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ""
}

// runWorker runs the grant worker until stop is called.
func (e *env) runWorker() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.bot.RunGrants(ctx, 20*time.Millisecond) }()
	return func() { cancel(); <-done }
}

// pendingRemoval whitelists buyerID, then removes them while Discord
// refuses, leaving the role removal owed; it returns the remove's body.
func (e *env) pendingRemoval() []byte {
	e.t.Helper()
	e.add(adminID, adminPerms, nil, buyerID, robloxName)
	e.discord.setStatus(http.StatusForbidden)
	body := command(guildID, adminID, adminPerms, nil, "whitelist", sub("remove", userOpt(buyerID)))
	if r := e.run(body); !strings.Contains(r.content(), "it will be retried") {
		e.t.Fatalf("remove while Discord refuses: %q", r.content())
	}
	e.discord.setStatus(http.StatusNoContent)
	// The worker takes grants left pending for two minutes.
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE bot_role_grants SET updated_at = now() - interval '3 minutes' WHERE state = 'pending'`); err != nil {
		e.t.Fatal(err)
	}
	return body
}

// TestGrantFinishedLaterIsReported: a role change the grant worker
// finishes after the command answered is reported to the member by
// editing the command's reply (PATCH …/messages/@original with the
// interaction's token), the token is then forgotten, and the outcome is
// audited.
func TestGrantFinishedLaterIsReported(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := e.pendingRemoval()
	if n := e.count(`SELECT count(*) FROM bot_role_grants WHERE state = 'pending' AND interaction_token IS NOT NULL`); n != 1 {
		t.Fatalf("pending grants keeping their interaction's token = %d, want 1", n)
	}
	stop := e.runWorker()
	got := e.discord.followUpContaining(tokenOf(body), "Update:")
	stop()
	if want := "Update: Discord has now taken <@&" + buyerRole + "> from <@" + buyerID + ">."; got != want {
		t.Fatalf("reply edited to %q, want %q", got, want)
	}
	if n := e.count(`SELECT count(*) FROM bot_role_grants WHERE state = 'done' AND interaction_token IS NULL`); n != 2 {
		t.Errorf("done grants without a token = %d, want 2 (the add and the removal)", n)
	}
	var finished []vectabase.AuditEvent
	for _, ev := range e.audit.all() {
		if ev.Action == "discord.grant_finish" {
			finished = append(finished, ev)
		}
	}
	if len(finished) != 1 || finished[0].Result != vectabase.ResultSuccess || finished[0].ActorType != vectabase.ActorSystem || finished[0].Details["reported"] != true {
		t.Errorf("grant_finish audit events = %+v, want one reported success by the system", finished)
	}
	checkNoSecrets(t, e, tokenOf(body))
}

// TestGrantFinishedAfterTokenExpiryIsNotReported: past Discord's 15
// minutes the reply cannot be edited any more; the grant still finishes.
func TestGrantFinishedAfterTokenExpiryIsNotReported(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := e.pendingRemoval()
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE bot_role_grants SET token_expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	stop := e.runWorker()
	deadline := time.Now().Add(20 * time.Second)
	for e.count(`SELECT count(*) FROM bot_role_grants WHERE state = 'pending'`) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if n := e.count(`SELECT count(*) FROM bot_role_grants WHERE state = 'pending'`); n != 0 {
		t.Fatalf("pending grants = %d, want 0", n)
	}
	if got := e.discord.followUp(t, tokenOf(body)); strings.Contains(got, "Update:") {
		t.Errorf("reply edited to %q after its token expired", got)
	}
	if n := e.count(`SELECT count(*) FROM bot_role_grants WHERE interaction_token IS NOT NULL`); n != 0 {
		t.Errorf("grants still keeping a token = %d, want 0", n)
	}
}
