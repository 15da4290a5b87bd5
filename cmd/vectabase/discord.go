package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/discord"
	"github.com/vectabase/vectabase/store"
)

// discordCredentials fills the bot's public key, token and application id
// from the secrets vault where the environment leaves them empty (for
// register-commands). The application id is the OAuth client id, which
// auth may already have read.
func discordCredentials(ctx context.Context, d *deps) error {
	c := &d.cfg.Discord
	if c.ApplicationID == "" {
		c.ApplicationID = d.cfg.Auth.DiscordClientID
	}
	for _, f := range []struct {
		field *string
		name  string
	}{
		{&c.PublicKey, "discord_public_key"},
		{&c.BotToken, "discord_bot_token"},
		{&c.ApplicationID, "discord_client_id"},
	} {
		v, err := d.vault.Credential(ctx, *f.field, f.name)
		if err != nil {
			return fmt.Errorf("read the server credential %s from the secrets vault: %s", f.name, vectabase.ErrorMessage(err))
		}
		*f.field = v
	}
	return nil
}

// mountDiscord builds the whitelist bot and mounts its routes. The public
// key, bot token and client secret the environment leaves empty are read
// from the vault at request time and re-read every minute, so a rotated
// credential needs no restart; the grant worker retries role changes left
// pending, and closing waits for deferred commands' follow-ups.
func mountDiscord(ctx context.Context, d *deps, srv *server.Server) error {
	c := d.cfg.Discord
	if c.ApplicationID == "" {
		c.ApplicationID = d.cfg.Auth.DiscordClientID
	}
	if c.ClientSecret == "" {
		c.ClientSecret = d.cfg.Auth.DiscordClientSecret
	}
	opts := []discord.Option{discord.WithRegisterer(d.reg), discord.WithStore(d.db, d.kr)}
	if d.vault != nil {
		opts = append(opts, discord.WithCredentials(d.vault))
	}
	bot, err := discord.New(c, store.NewBot(d.db, d.kr), d.audit, d.log, opts...)
	if err != nil {
		return err
	}
	srv.Mount(bot.Routes(discord.Auth{RequireUser: d.auth.RequireUser(), UserID: auth.UserID}))
	go bot.RunGrants(ctx, 30*time.Second)
	d.closers = append(d.closers, func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := bot.Close(cctx); err != nil {
			d.log.Error().Str("error", err.Error()).Msg("discord: follow-ups still running at shutdown")
		}
	})
	return nil
}

func newDiscordCmd() *cobra.Command {
	var asJSON bool
	register := &cobra.Command{
		Use:   "register-commands",
		Short: "Register the whitelist bot's slash commands with Discord",
		Long: "Replaces the application's global slash commands with the bot's (/whitelist, /redeem).\n" +
			"Needs DISCORD_CLIENT_ID (the application id) and DISCORD_BOT_TOKEN, from the\n" +
			"environment or the secrets vault (discord_client_id, discord_bot_token).",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := registerConfig(cmd.Context())
			if err != nil {
				return err
			}
			if cfg.ApplicationID == "" || cfg.BotToken == "" {
				return fmt.Errorf("register-commands needs DISCORD_CLIENT_ID and DISCORD_BOT_TOKEN (environment or secrets vault)")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			cmds := discord.Commands()
			rc := discord.NewRESTClient(cfg.APIBaseOrDefault(), cfg.BotToken, &http.Client{Timeout: 30 * time.Second})
			if err := rc.RegisterCommands(ctx, cfg.ApplicationID, cmds); err != nil {
				return err
			}
			names := make([]string, len(cmds))
			for i, c := range cmds {
				names[i] = c.Name
			}
			if asJSON {
				return printJSON(map[string]any{"applicationId": cfg.ApplicationID, "commands": names})
			}
			fmt.Fprintf(os.Stdout, "registered %d commands (%v) for application %s\n", len(cmds), names, cfg.ApplicationID)
			return nil
		},
	}
	register.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return groupCmd("discord", "Discord whitelist bot", register, newDiscordServersCmd(), newDiscordProductsCmd(), newDiscordPermissionsCmd(), newDiscordGrantsCmd())
}

// registerConfig reads the bot's configuration; only when the environment
// lacks the application id or token does it open the database to read them
// from the secrets vault.
func registerConfig(ctx context.Context) (discord.Config, error) {
	cfg, err := loadConfig(false)
	if err != nil {
		return discord.Config{}, err
	}
	c := cfg.Discord
	if c.ApplicationID == "" {
		c.ApplicationID = cfg.Auth.DiscordClientID
	}
	if c.ApplicationID != "" && c.BotToken != "" {
		return c, nil
	}
	d, err := openCLI(ctx)
	if err != nil {
		return discord.Config{}, err
	}
	defer d.close()
	d.cfg.Discord = c
	if err := discordCredentials(ctx, d); err != nil {
		return discord.Config{}, err
	}
	return d.cfg.Discord, nil
}
