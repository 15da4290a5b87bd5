package discord_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/discord"
	"github.com/vectabase/vectabase/store"
)

func TestPingAnswersPong(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res := e.postAt([]byte(`{"id":"1","application_id":"2","type":1,"token":"t","version":1}`), e.now, nil)
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || strings.TrimSpace(string(b)) != `{"type":1}` {
		t.Fatalf("PING = %d %s, want 200 {\"type\":1}", res.StatusCode, b)
	}
}

// TestBadSignatureIs401 sends interactions that are not signed by the
// application's key, in every way Discord's validation probe does and more.
func TestBadSignatureIs401(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	body := []byte(`{"id":"1","application_id":"2","type":1,"token":"t","version":1}`)
	cases := map[string]func() *http.Response{
		"wrong key": func() *http.Response {
			return e.postAt(body, e.now, func(m []byte) []byte { return ed25519.Sign(otherKey, m) })
		},
		"flipped bit": func() *http.Response {
			return e.postAt(body, e.now, func(m []byte) []byte { s := ed25519.Sign(e.priv, m); s[5] ^= 1; return s })
		},
		"short signature": func() *http.Response {
			return e.postAt(body, e.now, func(m []byte) []byte { return ed25519.Sign(e.priv, m)[:10] })
		},
		"signed other body": func() *http.Response {
			return e.postAt(body, e.now, func(m []byte) []byte { return ed25519.Sign(e.priv, append(m, ' ')) })
		},
		"missing headers": func() *http.Response {
			req, _ := http.NewRequest(http.MethodPost, "/api/discord/interactions", strings.NewReader(string(body)))
			res, err := e.srv.App().Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			return res
		},
		"non-hex signature": func() *http.Response {
			req, _ := http.NewRequest(http.MethodPost, "/api/discord/interactions", strings.NewReader(string(body)))
			req.Header.Set("X-Signature-Ed25519", "zz")
			req.Header.Set("X-Signature-Timestamp", "1790000000")
			res, err := e.srv.App().Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			return res
		},
	}
	for name, send := range cases {
		res := send()
		b, _ := io.ReadAll(res.Body)
		var eb struct{ Error, Message, RequestID string }
		_ = json.Unmarshal(b, &eb)
		if res.StatusCode != 401 || eb.Error != "UNAUTHORIZED" {
			t.Errorf("%s: = %d %s, want 401 UNAUTHORIZED", name, res.StatusCode, b)
		}
	}
}

func TestStaleTimestampIs401(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := []byte(`{"id":"1","application_id":"2","type":1,"token":"t","version":1}`)
	for _, d := range []time.Duration{-6 * time.Minute, 6 * time.Minute, -24 * time.Hour} {
		if res := e.postAt(body, e.now.Add(d), nil); res.StatusCode != 401 {
			t.Errorf("timestamp now%+v = %d, want 401", d, res.StatusCode)
		}
	}
	if res := e.postAt(body, e.now.Add(-4*time.Minute), nil); res.StatusCode != 200 {
		t.Errorf("timestamp now-4m = %d, want 200", res.StatusCode)
	}
}

func TestSignedGarbageIs400(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, body := range []string{`not json`, `[]`, `{"type":2}`, `{"type":2,"data":{"name":"redeem"},"guild_id":"x1"}`} {
		res := e.postAt([]byte(body), e.now, nil)
		if res.StatusCode != 400 {
			t.Errorf("%s = %d, want 400", body, res.StatusCode)
		}
	}
}

func TestUnconfiguredBotIs503(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bot, err := discord.New(discord.Config{}, e.repo, e.audit, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount(bot.Routes(discord.Auth{}))
	req := httptest.NewRequest(http.MethodPost, "/api/discord/interactions", strings.NewReader(`{"type":1}`))
	res, err := srv.App().Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("unconfigured bot = %d, want 503", res.StatusCode)
	}
	if _, err := discord.New(discord.Config{PublicKey: "abcd"}, e.repo, e.audit, zerolog.Nop()); err == nil {
		t.Fatal("New accepted a malformed public key")
	}
}

func TestWhitelistAdd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.add(adminID, adminPerms, nil, buyerID, "builder_bob")
	if !strings.Contains(r.content(), "Whitelisted <@"+buyerID+">") || !strings.Contains(r.content(), "1234567") {
		t.Fatalf("reply %q, want a confirmation naming the member and Roblox id", r.content())
	}
	if r.Data.AllowedMentions.Parse == nil || len(r.Data.AllowedMentions.Parse) != 0 {
		t.Errorf("allowed_mentions.parse = %v, want [] (replies never ping)", r.Data.AllowedMentions.Parse)
	}

	rb := e.roblox.requests()
	if len(rb) != 1 || rb[0].Method != "POST" || rb[0].Path != "/v1/usernames/users" || rb[0].ContentType != "application/json" {
		t.Fatalf("roblox requests = %+v, want one POST /v1/usernames/users", rb)
	}
	var lookup map[string]any
	_ = json.Unmarshal(rb[0].Body, &lookup)
	if got, _ := json.Marshal(lookup); string(got) != `{"excludeBannedUsers":true,"usernames":["builder_bob"]}` {
		t.Errorf("roblox body = %s", got)
	}

	dr := e.discord.requests()
	want := recorded{Method: "PUT", Path: "/guilds/" + guildID + "/members/" + buyerID + "/roles/" + buyerRole, Auth: "Bot " + botToken}
	if len(dr) != 1 || dr[0].Method != want.Method || dr[0].Path != want.Path || dr[0].Auth != want.Auth {
		t.Fatalf("discord requests = %+v, want %+v", dr, want)
	}

	if n := e.count(`SELECT count(*) FROM bot_whitelisted_users WHERE discord_server_id = $1 AND discord_user_id = $2 AND roblox_user_id = $3 AND bot_product_id = $4 AND whitelisted_by = $5`,
		e.server.ID, buyerID, robloxID, e.product.ID, adminID); n != 1 {
		t.Errorf("bot_whitelisted_users rows = %d, want 1", n)
	}
	if n := e.count(`SELECT count(*) FROM whitelist_users WHERE system_id = $1 AND discord_id = $2 AND roblox_user_id = $3 AND roblox_username = $4`,
		e.system, buyerID, robloxID, robloxName); n != 1 {
		t.Errorf("whitelist_users rows = %d, want 1", n)
	}
	// The key is stored encrypted, found by the marketplace's blind index,
	// and shown to nobody.
	key := e.licenseKeyOf(buyerID)
	if !strings.HasPrefix(key, "VB-") {
		t.Errorf("license key %q is not in the marketplace format", key)
	}
	bidx, _ := store.NewMarketplace(e.db, e.kr).LicenseKeyIndex(key)
	if n := e.count(`SELECT count(*) FROM whitelist_users WHERE license_key_bidx = $1`, bidx); n != 1 {
		t.Errorf("rows by blind index = %d, want 1", n)
	}
	if strings.Contains(r.content(), key) {
		t.Errorf("reply to the admin shows the member's license key")
	}

	evs := e.audit.all()
	if len(evs) != 1 || evs[0].Action != "discord.whitelist_add" || evs[0].ActorType != vectabase.ActorDiscord || evs[0].ActorID != adminID || evs[0].Result != vectabase.ResultSuccess {
		t.Errorf("audit = %+v, want one discord.whitelist_add by %s", evs, adminID)
	}
	checkNoSecrets(t, e, key)

	// Again: already whitelisted, nothing more sent to Discord.
	r = e.add(adminID, adminPerms, nil, buyerID, robloxName)
	if !strings.Contains(r.content(), "already whitelisted") {
		t.Errorf("second add = %q, want already whitelisted", r.content())
	}
	if n := len(e.discord.requests()); n != 1 {
		t.Errorf("discord requests after a refused add = %d, want 1", n)
	}
}

// checkNoSecrets fails when a license key, the bot token or the webhook
// URL reached an audit row or a log line.
func checkNoSecrets(t *testing.T, e *env, key string) {
	t.Helper()
	b, _ := json.Marshal(e.audit.all())
	for _, s := range []string{key, botToken, "secret-webhook-token"} {
		if s != "" && (strings.Contains(string(b), s) || strings.Contains(e.logs.String(), s)) {
			t.Errorf("a secret reached the audit trail or logs")
		}
	}
}

func TestWhitelistAddPermissions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	refused := func(r reply) bool { return strings.Contains(r.content(), "not allowed") }

	// No rule, no ADMINISTRATOR: refused, and nothing happens anywhere.
	if r := e.add(memberID, plainPerms, []string{staffRole}, buyerID, robloxName); !refused(r) {
		t.Fatalf("plain member: %q, want refusal", r.content())
	}
	if len(e.roblox.requests())+len(e.discord.requests()) != 0 || e.count(`SELECT count(*) FROM whitelist_users`) != 0 {
		t.Fatal("a refused command reached Roblox, Discord or the database")
	}
	if evs := e.audit.all(); len(evs) != 1 || evs[0].Result != vectabase.ResultDenied {
		t.Errorf("audit = %+v, want one denial", evs)
	}
	// A rule for the group (written as typed, with its slash) allows the
	// staff role.
	if err := e.repo.SetCommandPermission(ctx, e.server.ID, "/whitelist", staffRole, true); err != nil {
		t.Fatal(err)
	}
	if r := e.add(memberID, plainPerms, []string{staffRole}, buyerID, robloxName); refused(r) {
		t.Fatalf("staff with allow rule: %q", r.content())
	}
	// A deny rule on one of the caller's roles wins, even over ADMINISTRATOR.
	if err := e.repo.SetCommandPermission(ctx, e.server.ID, "whitelist add", staffRole, false); err != nil {
		t.Fatal(err)
	}
	if r := e.add(adminID, adminPerms, []string{staffRole}, otherID, "someone"); !refused(r) {
		t.Fatalf("deny rule: %q, want refusal", r.content())
	}
}

func TestWhitelistAddRobloxUserNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.add(adminID, adminPerms, nil, buyerID, "nobody_here")
	if !strings.Contains(r.content(), "No Roblox account") {
		t.Fatalf("reply %q, want Roblox not found", r.content())
	}
	if len(e.discord.requests()) != 0 || e.count(`SELECT count(*) FROM whitelist_users`) != 0 || e.count(`SELECT count(*) FROM bot_whitelisted_users`) != 0 {
		t.Fatal("an unknown Roblox user left state behind")
	}
	// A name that cannot be a Roblox username is refused before any call.
	r = e.add(adminID, adminPerms, nil, buyerID, "bad name!")
	if !strings.Contains(r.content(), "not a Roblox username") || len(e.roblox.requests()) != 1 {
		t.Fatalf("reply %q, roblox calls %d", r.content(), len(e.roblox.requests()))
	}
}

func TestWhitelistAddDiscordFailureLeavesNoState(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, status := range []int{http.StatusForbidden, http.StatusInternalServerError, http.StatusTooManyRequests} {
		e.discord.setStatus(status)
		r := e.add(adminID, adminPerms, nil, buyerID, robloxName)
		if !strings.Contains(r.content(), "nothing was changed") {
			t.Errorf("Discord %d: reply %q, want an error", status, r.content())
		}
		if e.count(`SELECT count(*) FROM whitelist_users`)+e.count(`SELECT count(*) FROM bot_whitelisted_users`) != 0 {
			t.Fatalf("Discord %d: rows left behind", status)
		}
	}
	// Each add was recorded, then rolled back when Discord refused the
	// role: the trail shows both.
	evs := e.audit.all()
	if len(evs) != 6 {
		t.Fatalf("audit = %+v, want an add and its rollback per failed attempt", evs)
	}
	for i := 0; i < len(evs); i += 2 {
		if evs[i].Result != vectabase.ResultSuccess || evs[i+1].Result != vectabase.ResultFailure || evs[i+1].Details["reason"] != "role_not_granted" {
			t.Errorf("audit %d,%d = %+v %+v, want success then rollback", i, i+1, evs[i], evs[i+1])
		}
	}
	// Once Discord works, the same add succeeds.
	e.discord.setStatus(http.StatusNoContent)
	if r := e.add(adminID, adminPerms, nil, buyerID, robloxName); !strings.Contains(r.content(), "Whitelisted") {
		t.Fatalf("retry: %q", r.content())
	}
}

// TestWhitelistAddAuditFailureChangesNothing: the audit row is written in
// the command's transaction, before any Discord call, so a trail that
// cannot be written stops the command with nothing changed anywhere.
func TestWhitelistAddAuditFailureChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.audit.fail = true
	r := e.add(adminID, adminPerms, nil, buyerID, robloxName)
	if !strings.Contains(r.content(), "Something went wrong") {
		t.Fatalf("reply %q, want a generic failure", r.content())
	}
	if dr := e.discord.requests(); len(dr) != 0 {
		t.Fatalf("discord requests = %+v, want none", dr)
	}
	if e.count(`SELECT count(*) FROM whitelist_users`) != 0 {
		t.Fatal("rows left behind")
	}
}

func TestWhitelistRemove(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.add(adminID, adminPerms, nil, buyerID, robloxName)
	remove := func(caller, perms string) reply {
		return e.run(command(guildID, caller, perms, nil, "whitelist", sub("remove", userOpt(buyerID))))
	}
	if r := remove(memberID, plainPerms); !strings.Contains(r.content(), "not allowed") {
		t.Fatalf("plain member: %q, want refusal", r.content())
	}
	if e.count(`SELECT count(*) FROM whitelist_users`) != 1 {
		t.Fatal("refused remove changed rows")
	}
	// Access ends at once even when Discord will not take the role back:
	// the role stays owed (a pending grant) and the member is told.
	e.discord.setStatus(http.StatusForbidden)
	if r := remove(adminID, adminPerms); !strings.Contains(r.content(), "did not take their role away yet") {
		t.Fatalf("Discord failure: %q", r.content())
	}
	if e.count(`SELECT count(*) FROM whitelist_users`)+e.count(`SELECT count(*) FROM bot_whitelisted_users`) != 0 {
		t.Fatal("rows left after remove")
	}
	if n := e.count(`SELECT count(*) FROM bot_role_grants WHERE action = 'remove' AND state = 'pending' AND discord_user_id = $1`, buyerID); n != 1 {
		t.Fatalf("pending role removals = %d, want 1", n)
	}
	e.discord.setStatus(http.StatusNoContent)
	e.add(adminID, adminPerms, nil, buyerID, robloxName)
	if r := remove(adminID, adminPerms); !strings.Contains(r.content(), "Removed <@"+buyerID+">") {
		t.Fatalf("remove: %q", r.content())
	}
	dr := e.discord.requests()
	last := dr[len(dr)-1]
	if last.Method != "DELETE" || last.Path != "/guilds/"+guildID+"/members/"+buyerID+"/roles/"+buyerRole || last.Auth != "Bot "+botToken {
		t.Errorf("last discord request = %+v, want DELETE of the product role", last)
	}
	if e.count(`SELECT count(*) FROM whitelist_users`)+e.count(`SELECT count(*) FROM bot_whitelisted_users`) != 0 {
		t.Fatal("rows left after remove")
	}
	if r := remove(adminID, adminPerms); !strings.Contains(r.content(), "not whitelisted") {
		t.Errorf("second remove: %q", r.content())
	}
}

func TestWhitelistCheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	check := func(caller, perms string, roles []string) reply {
		return e.run(command(guildID, caller, perms, roles, "whitelist", sub("check", userOpt(buyerID))))
	}
	if r := check(adminID, adminPerms, nil); !strings.Contains(r.content(), "not whitelisted") {
		t.Fatalf("before add: %q", r.content())
	}
	e.add(adminID, adminPerms, nil, buyerID, robloxName)
	key := e.licenseKeyOf(buyerID)
	r := check(adminID, adminPerms, nil)
	if !strings.Contains(r.content(), "is whitelisted") || !strings.Contains(r.content(), "1234567") || !strings.Contains(r.content(), "Admin Script") {
		t.Fatalf("check: %q", r.content())
	}
	if strings.Contains(r.content(), key) {
		t.Fatal("check shows the member's license key")
	}
	if r := check(memberID, plainPerms, []string{staffRole}); !strings.Contains(r.content(), "not allowed") {
		t.Fatalf("plain member: %q, want refusal", r.content())
	}
	checkNoSecrets(t, e, key)
}

// newKey whitelists a Roblox player through the marketplace (as a sale or
// the dashboard does) and returns the license key the buyer was given.
func (e *env) newKey(roblox int64) string {
	e.t.Helper()
	const key = "VB-AAAABBBB-CCCCDDDD-EEEEFFFF-GGGGHHHH"
	k := strings.Replace(key, "AAAA", strings.Repeat(string(rune('A'+roblox%20)), 4), 1)
	if _, err := store.NewMarketplace(e.db, e.kr).CreateWhitelistUser(context.Background(), e.owner, e.system, store.WhitelistUserFields{RobloxUserID: &roblox}, k); err != nil {
		e.t.Fatal(err)
	}
	return k
}

func TestRedeem(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	key := e.newKey(777)
	redeem := func(caller, perms string, k string) reply {
		return e.run(command(guildID, caller, perms, nil, "redeem", []opt{strOpt("key", k)}))
	}
	// By default only administrators may run a command; the operator opens
	// /redeem to @everyone (role id = guild id).
	if r := redeem(buyerID, plainPerms, key); !strings.Contains(r.content(), "not allowed") {
		t.Fatalf("without a rule: %q, want refusal", r.content())
	}
	if err := e.repo.SetCommandPermission(ctx, e.server.ID, "redeem", guildID, true); err != nil {
		t.Fatal(err)
	}
	// Pasted in lower case with spaces: normalised as the marketplace does.
	r := redeem(buyerID, plainPerms, "  "+strings.ToLower(key)+" ")
	if !strings.Contains(r.content(), "linked to your Discord account") || !strings.Contains(r.content(), "777") {
		t.Fatalf("redeem: %q", r.content())
	}
	if strings.Contains(r.content(), key) {
		t.Error("redeem echoes the license key")
	}
	dr := e.discord.requests()
	if len(dr) != 1 || dr[0].Method != "PUT" || dr[0].Path != "/guilds/"+guildID+"/members/"+buyerID+"/roles/"+buyerRole || dr[0].Auth != "Bot "+botToken {
		t.Fatalf("discord requests = %+v", dr)
	}
	if n := e.count(`SELECT count(*) FROM whitelist_users WHERE discord_id = $1 AND roblox_user_id = 777`, buyerID); n != 1 {
		t.Errorf("linked entries = %d, want 1", n)
	}
	if n := e.count(`SELECT count(*) FROM bot_whitelisted_users WHERE discord_user_id = $1 AND bot_product_id = $2`, buyerID, e.product.ID); n != 1 {
		t.Errorf("bot_whitelisted_users = %d, want 1", n)
	}
	// Redeeming one's own key again is harmless.
	if r := redeem(buyerID, plainPerms, key); !strings.Contains(r.content(), "linked") {
		t.Errorf("second redeem: %q", r.content())
	}
	if n := e.count(`SELECT count(*) FROM bot_whitelisted_users WHERE discord_user_id = $1`, buyerID); n != 1 {
		t.Errorf("bot_whitelisted_users after a repeat = %d, want 1", n)
	}

	// Someone else with the same key is refused and learns nothing.
	r = redeem(otherID, plainPerms, key)
	if !strings.Contains(r.content(), "already linked to another") || strings.Contains(r.content(), buyerID) || strings.Contains(r.content(), key) {
		t.Fatalf("other user: %q", r.content())
	}
	if n := e.count(`SELECT count(*) FROM whitelist_users WHERE discord_id = $1`, otherID); n != 0 {
		t.Fatal("another user took over the key")
	}
	if r := redeem(otherID, plainPerms, "VB-NOTAKEY"); !strings.Contains(r.content(), "not valid") {
		t.Errorf("unknown key: %q", r.content())
	}
	checkNoSecrets(t, e, key)
}

func TestRedeemDiscordFailureLeavesNoState(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := e.newKey(778)
	e.discord.setStatus(http.StatusForbidden)
	r := e.run(command(guildID, buyerID, adminPerms, nil, "redeem", []opt{strOpt("key", key)}))
	if !strings.Contains(r.content(), "nothing was changed") {
		t.Fatalf("reply %q", r.content())
	}
	if n := e.count(`SELECT count(*) FROM whitelist_users WHERE discord_id IS NOT NULL`); n != 0 {
		t.Fatal("a failed redeem linked the key")
	}
	if n := e.count(`SELECT count(*) FROM bot_whitelisted_users`); n != 0 {
		t.Fatal("a failed redeem recorded the member")
	}
}

func TestUnknownGuildCommandAndDM(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := map[string]struct {
		body []byte
		want string
	}{
		"unknown guild":   {command("100000000000000999", adminID, adminPerms, nil, "whitelist", sub("check", userOpt(buyerID))), "not set up"},
		"unknown command": {command(guildID, adminID, adminPerms, nil, "ban", nil), "Unknown command"},
		"unknown sub":     {command(guildID, adminID, adminPerms, nil, "whitelist", sub("purge")), "Unknown command"},
		"no guild":        {[]byte(`{"id":"400000000000009999","type":2,"user":{"id":"` + buyerID + `"},"data":{"name":"redeem","options":[{"type":3,"name":"key","value":"x"}]}}`), "in a server"},
		"component":       {[]byte(`{"type":3,"guild_id":"` + guildID + `","data":{"custom_id":"x"}}`), "not supported"},
	}
	for name, c := range cases {
		if r := e.run(c.body); !strings.Contains(r.content(), c.want) {
			t.Errorf("%s: %q, want %q", name, r.content(), c.want)
		}
	}
}

// TestServerWithoutWhitelistSystem: a guild that only hands out roles
// still records members and their Roblox accounts; /redeem needs a system.
func TestServerWithoutWhitelistSystem(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE discord_servers SET whitelist_system_id = NULL`); err != nil {
		t.Fatal(err)
	}
	if r := e.add(adminID, adminPerms, nil, buyerID, robloxName); !strings.Contains(r.content(), "Whitelisted") {
		t.Fatalf("add: %q", r.content())
	}
	if e.count(`SELECT count(*) FROM bot_whitelisted_users WHERE roblox_user_id = $1`, robloxID) != 1 || e.count(`SELECT count(*) FROM whitelist_users`) != 0 {
		t.Fatal("want a bot_whitelisted_users row and no whitelist entry")
	}
	if r := e.add(adminID, adminPerms, nil, buyerID, robloxName); !strings.Contains(r.content(), "already whitelisted") {
		t.Errorf("second add: %q", r.content())
	}
	r := e.run(command(guildID, adminID, adminPerms, nil, "whitelist", sub("check", userOpt(buyerID))))
	if !strings.Contains(r.content(), "is whitelisted as Roblox user (1234567)") {
		t.Errorf("check: %q", r.content())
	}
	if r := e.run(command(guildID, buyerID, adminPerms, nil, "redeem", []opt{strOpt("key", "VB-X")})); !strings.Contains(r.content(), "no whitelist system") {
		t.Errorf("redeem: %q", r.content())
	}
	if r := e.run(command(guildID, adminID, adminPerms, nil, "whitelist", sub("remove", userOpt(buyerID)))); !strings.Contains(r.content(), "Removed") {
		t.Errorf("remove: %q", r.content())
	}
}

func TestWebhookURLEncrypted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if n := e.count(`SELECT count(*) FROM discord_servers WHERE position(convert_to('secret-webhook-token', 'UTF8') in webhook_url) > 0`); n != 0 {
		t.Fatal("webhook URL stored in plaintext")
	}
	got, err := e.repo.WebhookURL(context.Background(), e.server.ID)
	if err != nil || got != "https://discord.com/api/webhooks/1/secret-webhook-token" {
		t.Fatalf("WebhookURL = %q, %v", got, err)
	}
}
