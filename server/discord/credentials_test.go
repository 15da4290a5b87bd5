package discord_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/discord"
	"github.com/vectabase/vectabase/vault"
)

// TestCredentialsFollowTheVault: with no public key or bot token in the
// environment, the bot reads them from the secrets vault, and a rotated
// key or token is in use once CredentialTTL has passed, without a restart.
func TestCredentialsFollowTheVault(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	pol, err := policies.AccessPolicy()
	if err != nil {
		t.Fatal(err)
	}
	v := vault.New(e.db, e.kr, e.audit, pol, vault.Config{}, nil)
	put := func(name, value string) {
		if _, err := v.Put(ctx, vault.LocalOperator, name, []byte(value), nil); err != nil {
			t.Fatalf("Put %s: %v", name, err)
		}
	}
	pub1, priv1, _ := ed25519.GenerateKey(nil)
	pub2, priv2, _ := ed25519.GenerateKey(nil)
	put(discord.PublicKeyName, hex.EncodeToString(pub1))
	put(discord.BotTokenName, "vault-token-one")

	bot, err := discord.New(discord.Config{APIBase: e.discord.URL, RobloxAPIBase: e.roblox.URL}, e.repo, e.audit, zerolog.Nop(),
		discord.WithCredentials(v), discord.WithClock(func() time.Time { return e.now }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bot.Close(ctx) })
	srv := server.New(server.Config{}, zerolog.Nop(), prometheus.NewRegistry())
	srv.Mount(bot.Routes(discord.Auth{}))
	e.srv = srv
	ping := []byte(`{"id":"1","application_id":"2","type":1,"token":"t","version":1}`)
	signer := func(k ed25519.PrivateKey) func([]byte) []byte {
		return func(m []byte) []byte { return ed25519.Sign(k, m) }
	}
	status := func(k ed25519.PrivateKey) int { return e.postAt(ping, e.now, signer(k)).StatusCode }

	if s := status(priv1); s != http.StatusOK {
		t.Fatalf("PING signed with the vault's key = %d, want 200", s)
	}
	e.priv = priv1
	r := e.run(command(guildID, adminID, adminPerms, nil, "whitelist", sub("add", userOpt(buyerID), strOpt("roblox", robloxName))))
	if dr := e.discord.requests(); len(dr) != 1 || dr[0].Auth != "Bot vault-token-one" {
		t.Fatalf("role request %+v (reply %q), want the vault's token", dr, r.content())
	}

	put(discord.PublicKeyName, hex.EncodeToString(pub2))
	put(discord.BotTokenName, "vault-token-two")
	// Within the minute the old credentials are still in use …
	if s := status(priv1); s != http.StatusOK {
		t.Fatalf("old key before the TTL = %d, want 200", s)
	}
	// … after it, the new ones, with no restart.
	e.now = e.now.Add(discord.CredentialTTL + time.Second)
	if s := status(priv1); s != http.StatusUnauthorized {
		t.Fatalf("old key after rotation = %d, want 401", s)
	}
	if s := status(priv2); s != http.StatusOK {
		t.Fatalf("new key after rotation = %d, want 200", s)
	}
	e.priv = priv2
	e.run(command(guildID, adminID, adminPerms, nil, "whitelist", sub("remove", userOpt(buyerID))))
	dr := e.discord.requests()
	if last := dr[len(dr)-1]; last.Method != "DELETE" || last.Auth != "Bot vault-token-two" {
		t.Fatalf("role request after rotation %+v, want the new token", last)
	}
}
