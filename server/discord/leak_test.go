package discord_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/vectabase/vectabase/server/canarytest"
)

// TestNoSecretLeaks plants canaries where the bot holds secrets (its token,
// a guild's webhook URL, license keys made by /whitelist add and typed into
// /redeem), runs every command on good, refused and failing paths, sends
// malformed and unsigned requests carrying a canary, and looks for the
// canaries in logs, replies, metrics, audit events and tables.
func TestNoSecretLeaks(t *testing.T) {
	t.Parallel()
	h := canarytest.New(t)
	token := h.Secret()
	webhook := "https://discord.com/api/webhooks/1/" + h.Secret()
	e := newEnvWith(t, envOptions{log: h.Logger(), reg: h.Registry, token: token, webhook: webhook})
	app := e.srv.App()
	var followups []string
	post := func(body []byte) {
		res := h.Do(app, signedRequest(e, body))
		var r struct{ Type int }
		_ = json.Unmarshal(res.Body, &r)
		if r.Type == 5 {
			// Deferred: the answer arrives as an edit of the original.
			var in struct{ Token string }
			_ = json.Unmarshal(body, &in)
			followups = append(followups, e.discord.followUp(t, in.Token))
		}
	}

	post(command(guildID, adminID, adminPerms, nil, "whitelist", sub("add", userOpt(buyerID), strOpt("roblox", robloxName))))
	h.Add(e.licenseKeyOf(buyerID))
	post(command(guildID, adminID, adminPerms, nil, "whitelist", sub("check", userOpt(buyerID))))
	post(command(guildID, memberID, plainPerms, nil, "whitelist", sub("check", userOpt(buyerID))))

	sold := h.Add(e.newKey(901))
	post(command(guildID, otherID, adminPerms, nil, "redeem", []opt{strOpt("key", sold)}))
	post(command(guildID, buyerID, adminPerms, nil, "redeem", []opt{strOpt("key", sold)}))       // linked to another
	post(command(guildID, buyerID, adminPerms, nil, "redeem", []opt{strOpt("key", h.Secret())})) // unknown key
	post(command(guildID, buyerID, plainPerms, nil, "redeem", []opt{strOpt("key", h.Secret())})) // refused

	e.discord.setStatus(http.StatusInternalServerError)
	post(command(guildID, adminID, adminPerms, nil, "whitelist", sub("remove", userOpt(buyerID))))
	e.discord.setStatus(http.StatusNoContent)
	post(command(guildID, adminID, adminPerms, nil, "whitelist", sub("remove", userOpt(buyerID))))

	canary := h.Secret()
	post([]byte(`{"type":2,"guild_id":"` + canary + `","data":{"name":"redeem"}}`))
	h.DriveMalformed(app, "POST", "/api/discord/interactions", canary)

	events, _ := json.Marshal(e.audit.all())
	h.Check(map[string]string{"audit events": string(events), "follow-ups": strings.Join(followups, "\n")})
	h.CheckTables(e.db, "discord_servers", "whitelist_users", "bot_whitelisted_users", "bot_command_permissions")
}
