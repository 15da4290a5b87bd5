package discord_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// api sends a request to the seller's API with their bearer token (or none
// when token is "") and decodes the JSON answer.
func (e *env) api(method, target, token string, body any) (int, http.Header, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req := httptest.NewRequest(method, target, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := e.srv.App().Test(req, -1)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return res.StatusCode, res.Header, out
}

// install runs the bot's install as the seller through Discord's OAuth
// flow (the double plays Discord) and returns the callback's status and
// body. perms is the seller's permission set in the guild, as
// /users/@me/guilds reports it.
func (e *env) install(owner bool, perms string) (int, map[string]any) {
	e.t.Helper()
	status, hdr, body := e.api("GET", "/api/discord/install?storeId="+e.storeID, e.sellerToken, nil)
	if status != http.StatusFound {
		e.t.Fatalf("GET /api/discord/install = %d %v, want 302", status, body)
	}
	loc, err := url.Parse(hdr.Get("Location"))
	if err != nil || body["url"] != hdr.Get("Location") {
		e.t.Fatalf("Location %q, body %v", hdr.Get("Location"), body)
	}
	q := loc.Query()
	if loc.Path != "/oauth2/authorize" || q.Get("client_id") != "500000000000000001" || q.Get("scope") != "bot applications.commands identify guilds" ||
		q.Get("permissions") != "268435456" || q.Get("response_type") != "code" || q.Get("redirect_uri") != "https://shop.example/api/discord/install/callback" || q.Get("state") == "" {
		e.t.Fatalf("authorize URL %s lacks the install's parameters", loc)
	}
	// The seller approves in Discord, which redirects back with a code.
	e.discord.mu.Lock()
	e.discord.code, e.discord.token = "c0de-"+q.Get("state")[:6], "user-oauth-token-51c2"
	e.discord.oauth = &oauthGuild{ID: guildID, Name: "Builders"}
	e.discord.guilds = []map[string]any{
		{"id": "100000000000000777", "name": "Other", "owner": true, "permissions": "2147483647"},
		{"id": guildID, "name": "Builders", "owner": owner, "permissions": perms},
	}
	code := e.discord.code
	e.discord.mu.Unlock()
	cb := "/api/discord/install/callback?" + url.Values{"code": {code}, "state": {q.Get("state")}, "guild_id": {guildID}, "permissions": {"268435456"}}.Encode()
	status, _, body = e.api("GET", cb, "", nil)
	// The same state cannot be used twice.
	if again, _, _ := e.api("GET", cb, "", nil); again != http.StatusUnauthorized {
		e.t.Errorf("replayed install callback = %d, want 401", again)
	}
	return status, body
}

// TestSellerInstallsBotAndMembersUseIt is the bot from install to daily
// use, against local doubles of Discord and Roblox: the seller adds the
// bot to their guild through Discord's OAuth flow, links the whitelist
// system, binds a product and its role, and opens /redeem to everyone
// and /whitelist check to staff; a buyer redeems their key and gets the
// role; a member without a rule is refused; staff check the buyer.
func TestSellerInstallsBotAndMembersUseIt(t *testing.T) {
	t.Parallel()
	e := newSellerEnv(t)
	tok := e.sellerToken

	// A user who may not manage the guild cannot install it.
	if status, body := e.install(false, plainPerms); status != http.StatusForbidden || body["error"] != "FORBIDDEN" {
		t.Fatalf("install without MANAGE_GUILD = %d %v, want 403", status, body)
	}
	status, body := e.install(false, "32") // MANAGE_GUILD
	if status != http.StatusCreated {
		t.Fatalf("install = %d %v, want 201", status, body)
	}
	srv, _ := body["server"].(map[string]any)
	if body["outcome"] != "created" || srv["guildId"] != guildID || srv["storeId"] != e.storeID || srv["guildName"] != "Builders" || srv["ownerId"] != e.owner {
		t.Fatalf("install result %v", body)
	}

	if status, _, body := e.api("PATCH", "/api/discord/servers/"+guildID, tok, map[string]any{"whitelistSystemId": e.system}); status != 200 || body["whitelistSystemId"] != e.system {
		t.Fatalf("PATCH server = %d %v", status, body)
	}
	status, _, body = e.api("POST", "/api/discord/servers/"+guildID+"/products", tok, map[string]any{"productId": e.prodID, "roleId": buyerRole})
	if status != http.StatusCreated || body["productName"] != "Admin Script" || body["roleId"] != buyerRole {
		t.Fatalf("POST product = %d %v", status, body)
	}
	for _, rule := range []map[string]any{
		{"command": "/redeem", "roleId": guildID},                       // @everyone may redeem
		{"command": "whitelist check", "roleId": staffRole},             // staff may check
		{"command": "whitelist", "roleId": buyerRole, "allowed": false}, // buyers may not manage the whitelist
	} {
		if status, _, body := e.api("POST", "/api/discord/servers/"+guildID+"/permissions", tok, rule); status != http.StatusCreated {
			t.Fatalf("POST permission %v = %d %v", rule, status, body)
		}
	}
	if status, _, body := e.api("GET", "/api/discord/servers/"+guildID+"/permissions", tok, nil); status != 200 || len(body["items"].([]any)) != 3 {
		t.Fatalf("GET permissions = %d %v", status, body)
	}

	// A buyer redeems the key a sale gave them.
	key := e.newKey(777)
	start := time.Now()
	firstBody := command(guildID, buyerID, plainPerms, nil, "redeem", []opt{strOpt("key", key)})
	res := e.postAt(firstBody, e.now, nil)
	took := time.Since(start)
	raw, _ := io.ReadAll(res.Body)
	var first reply
	_ = json.Unmarshal(raw, &first)
	if res.StatusCode != 200 || first.Type != 5 || first.Data == nil || first.Data.Flags != 64 {
		t.Fatalf("/redeem first answer = %d %s, want a deferred ephemeral reply (type 5, flags 64)", res.StatusCode, raw)
	}
	t.Logf("/redeem deferred reply after %v", took)
	// Its follow-up finishes in the background; wait for it, so that the
	// command is counted before the counts are read below.
	var firstIn struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal(firstBody, &firstIn)
	e.discord.followUp(t, firstIn.Token)
	r := e.run(command(guildID, buyerID, plainPerms, nil, "redeem", []opt{strOpt("key", key)}))
	if !strings.Contains(r.content(), "linked to your Discord account") || !strings.Contains(r.content(), "<@&"+buyerRole+">") {
		t.Fatalf("/redeem follow-up %q", r.content())
	}
	roles := 0
	for _, q := range e.discord.requests() {
		if q.Method == "PUT" && q.Path == "/guilds/"+guildID+"/members/"+buyerID+"/roles/"+buyerRole && q.Auth == "Bot "+botToken {
			roles++
		}
	}
	if roles < 1 {
		t.Fatalf("the buyer was never given the role: %+v", e.discord.requests())
	}
	if n := e.count(`SELECT count(*) FROM whitelist_users WHERE discord_id = $1`, buyerID); n != 1 {
		t.Fatalf("linked entries = %d, want 1", n)
	}

	// A member with no rule (and no ADMINISTRATOR) is refused, at once.
	r = e.run(command(guildID, memberID, plainPerms, []string{buyerRole}, "whitelist", sub("check", userOpt(buyerID))))
	if r.deferred || !strings.Contains(r.content(), "not allowed") {
		t.Fatalf("member /whitelist check = %+v %q, want an immediate refusal", r, r.content())
	}
	// Staff check the buyer: database only, answered directly.
	r = e.run(command(guildID, memberID, plainPerms, []string{staffRole}, "whitelist", sub("check", userOpt(buyerID))))
	if r.deferred || !strings.Contains(r.content(), "is whitelisted") || !strings.Contains(r.content(), "777") || strings.Contains(r.content(), key) {
		t.Fatalf("staff /whitelist check = %q", r.content())
	}

	// Counted per command and outcome.
	for _, c := range []struct {
		command, outcome string
		want             float64
	}{{"redeem", "ok", 2}, {"whitelist check", "denied", 1}, {"whitelist check", "ok", 1}} {
		if got := e.commandsCounted(c.command, c.outcome); got != c.want {
			t.Errorf("vectabase_discord_commands_total{command=%q,outcome=%q} = %v, want %v", c.command, c.outcome, got, c.want)
		}
	}

	// Every change of the set-up is audited, as the seller.
	want := map[string]int{"discord.server_install": 1, "discord.server_update": 1, "discord.product_add": 1, "discord.permission_set": 3}
	got := map[string]int{}
	for _, ev := range e.audit.all() {
		if ev.ActorType == vectabase.ActorUser && ev.ActorID == e.owner && ev.Result == vectabase.ResultSuccess {
			got[ev.Action]++
		}
	}
	for a, n := range want {
		if got[a] != n {
			t.Errorf("audit %s = %d, want %d (all: %v)", a, got[a], n, got)
		}
	}
}

// TestGuildBelongsToOneStore: a guild linked to a store cannot be taken by
// another owner's install; the same owner moves it between their stores.
func TestGuildBelongsToOneStore(t *testing.T) {
	t.Parallel()
	e := newSellerEnv(t)
	if status, body := e.install(true, "0"); status != http.StatusCreated {
		t.Fatalf("install = %d %v", status, body)
	}
	ctx := context.Background()
	// Another seller's store claims the same guild directly.
	other, err := e.db.CreateUser(ctx, store.NewUser{Email: "other@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	var otherStore, secondStore string
	if err := e.db.Pool.QueryRow(ctx, `INSERT INTO stores (owner_id, name, slug) VALUES ($1, 'X', 'x') RETURNING id`, other.ID).Scan(&otherStore); err != nil {
		t.Fatal(err)
	}
	_, _, err = e.repo.InstallDiscordServer(ctx, store.InstallServer{GuildID: guildID, StoreID: otherStore, UserID: other.ID},
		func(context.Context, store.DiscordServer, string) error { return nil })
	if err != store.ErrGuildTaken {
		t.Fatalf("install by another owner err = %v, want ErrGuildTaken", err)
	}
	// The seller's second store takes it over.
	if err := e.db.Pool.QueryRow(ctx, `INSERT INTO stores (owner_id, name, slug) VALUES ($1, 'Second', 'second') RETURNING id`, e.owner).Scan(&secondStore); err != nil {
		t.Fatal(err)
	}
	e.storeID = secondStore
	status, body := e.install(true, "0")
	if status != http.StatusOK || body["outcome"] != "moved" {
		t.Fatalf("install into the second store = %d %v, want 200 moved", status, body)
	}
	// Nobody else sees or changes it.
	if status, _, _ := e.api("GET", "/api/discord/servers/"+guildID, "", nil); status != http.StatusUnauthorized {
		t.Errorf("anonymous GET = %d, want 401", status)
	}
}
