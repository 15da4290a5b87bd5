package discord_test

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// rawReply sends body once and decodes the immediate answer, without
// waiting for a follow-up.
func (e *env) rawReply(body []byte) reply {
	e.t.Helper()
	res := e.postAt(body, e.now, nil)
	raw, _ := io.ReadAll(res.Body)
	var r reply
	if res.StatusCode != 200 || json.Unmarshal(raw, &r) != nil || r.Data == nil || r.Data.Flags != 64 {
		e.t.Fatalf("answer = %d %s, want 200 and an ephemeral reply", res.StatusCode, raw)
	}
	return r
}

// TestRedeemWithoutRoleAnswersDirectly: a /redeem whose product binding
// gives no role touches only the database, so it answers at once (type 4)
// with the result, calls Discord for nothing, and a second delivery of it
// is answered as handled (no deferred reply nobody would edit).
func TestRedeemWithoutRoleAnswersDirectly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.db.Pool.Exec(t.Context(), `UPDATE bot_products SET role_id = NULL WHERE id = $1`, e.product.ID); err != nil {
		t.Fatal(err)
	}
	key := e.newKey(781)
	body := command(guildID, buyerID, adminPerms, nil, "redeem", []opt{strOpt("key", key)})
	r := e.rawReply(body)
	if r.Type != 4 || !strings.Contains(r.Data.Content, "linked to your Discord account") || strings.Contains(r.Data.Content, "<@&") {
		t.Fatalf("redeem without a role = type %d %q, want type 4 with the result", r.Type, r.Data.Content)
	}
	if n := len(e.discord.requests()); n != 0 {
		t.Errorf("Discord requests = %d, want 0", n)
	}
	if n := e.count(`SELECT count(*) FROM whitelist_users WHERE discord_id = $1`, buyerID); n != 1 {
		t.Errorf("linked entries = %d, want 1", n)
	}
	if n := e.count(`SELECT count(*) FROM bot_role_grants`); n != 0 {
		t.Errorf("role grants = %d, want 0", n)
	}
	if r := e.rawReply(body); r.Type != 4 || !strings.Contains(r.Data.Content, "already handled") {
		t.Errorf("second delivery = type %d %q, want type 4 already handled", r.Type, r.Data.Content)
	}
	// Refusals of its input answer at once too.
	if r := e.rawReply(command(guildID, buyerID, adminPerms, nil, "redeem", []opt{strOpt("key", "VB-NOTAKEY")})); r.Type != 4 || !strings.Contains(r.Data.Content, "not valid") {
		t.Errorf("unknown key = type %d %q, want type 4 not valid", r.Type, r.Data.Content)
	}
}

// TestRedeemWithRoleStaysDeferred: with a role to grant, /redeem calls
// Discord, so it answers with a deferred reply and finishes by editing it;
// a second delivery is acknowledged alike and runs nothing.
func TestRedeemWithRoleStaysDeferred(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := e.newKey(782)
	body := command(guildID, buyerID, adminPerms, nil, "redeem", []opt{strOpt("key", key)})
	if r := e.rawReply(body); r.Type != 5 {
		t.Fatalf("redeem with a role = type %d, want 5 (deferred)", r.Type)
	}
	var in struct{ Token string }
	_ = json.Unmarshal(body, &in)
	if c := e.discord.followUp(t, in.Token); !strings.Contains(c, "<@&"+buyerRole+">") {
		t.Fatalf("follow-up %q, want the role", c)
	}
	if r := e.rawReply(body); r.Type != 5 {
		t.Errorf("second delivery = type %d, want 5", r.Type)
	}
	if n := len(e.discord.requests()); n != 1 {
		t.Errorf("role requests = %d, want 1", n)
	}
}
