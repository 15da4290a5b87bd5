// Package discord is the Discord whitelist bot: it answers slash commands
// that Discord POSTs to /api/discord/interactions (no gateway connection),
// verifying each request's Ed25519 signature, checking the caller against
// the guild's bot_command_permissions, and whitelisting players in the
// guild's whitelist system with their Roblox account and product role.
//
// Permission rule: a command is checked against the rows of
// bot_command_permissions of the guild whose command is the full command
// ("whitelist add") or its group ("whitelist"), with or without a leading
// slash, and whose role is one of the
// caller's roles or the guild's @everyone role (whose id is the guild id).
// Any matching row with allowed=false denies; otherwise any with
// allowed=true allows; with no matching row only members with Discord's
// ADMINISTRATOR permission may run it. discord_servers.owner_id is the
// Vectabase user who owns the configuration, not a Discord account, so it
// grants nothing here; the Discord guild owner passes as an administrator,
// because Discord reports every permission bit for the owner. Operators who
// want every member to /redeem add a row (redeem, <guild id>, true).
package discord

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/store"
)

// DefaultAPIBase is Discord's REST API, versioned: unversioned requests get
// a retired API version.
const DefaultAPIBase = "https://discord.com/api/v10"

// Config is the bot's configuration. PublicKey and BotToken may instead come
// from the secrets vault (discord_public_key, discord_bot_token); cmd/ fills
// them in before New.
type Config struct {
	PublicKey     string `env:"DISCORD_PUBLIC_KEY"`
	BotToken      string `env:"DISCORD_BOT_TOKEN"`
	ApplicationID string `env:"DISCORD_CLIENT_ID"`
	APIBase       string `env:"DISCORD_API_BASE" envDefault:"https://discord.com/api/v10"`
	RobloxAPIBase string `env:"ROBLOX_API_BASE" envDefault:"https://users.roblox.com"`
}

// String describes c without the bot token.
func (c Config) String() string {
	token := ""
	if c.BotToken != "" {
		token = "[redacted]"
	}
	return fmt.Sprintf("discord.Config{PublicKey:%q BotToken:%q ApplicationID:%q APIBase:%q RobloxAPIBase:%q}",
		c.PublicKey, token, c.ApplicationID, c.APIBase, c.RobloxAPIBase)
}

// APIBaseOrDefault is the REST base to call. Discord's unversioned
// https://discord.com/api (the OAuth default, shared through
// DISCORD_API_BASE) is given the current version.
func (c Config) APIBaseOrDefault() string {
	b := strings.TrimRight(c.APIBase, "/")
	if b == "" || b == "https://discord.com/api" {
		return DefaultAPIBase
	}
	return b
}

// Auditor records audit events; the audit trail implements it.
type Auditor interface {
	Record(ctx context.Context, ev vectabase.AuditEvent) error
}

// Service is the bot.
type Service struct {
	pub     ed25519.PublicKey // nil: bot not configured
	repo    *store.Bot
	discord *RESTClient
	roblox  *RobloxClient
	audit   Auditor
	log     zerolog.Logger
	now     func() time.Time
}

// Option changes a Service built by New.
type Option func(*Service)

// WithClock makes the service read time from now (tests).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// HTTPTimeout bounds each call to Discord or Roblox: Discord wants an
// interaction answered within three seconds.
const HTTPTimeout = 2500 * time.Millisecond

// New returns the bot. An empty PublicKey leaves the bot unconfigured
// (interactions answer 503); a malformed one is an error.
func New(cfg Config, repo *store.Bot, audit Auditor, log zerolog.Logger, opts ...Option) (*Service, error) {
	s := &Service{repo: repo, audit: audit, log: log, now: time.Now}
	if cfg.PublicKey != "" {
		pub, err := ParsePublicKey(cfg.PublicKey)
		if err != nil {
			return nil, err
		}
		s.pub = pub
	}
	hc := &http.Client{Timeout: HTTPTimeout}
	s.discord = NewRESTClient(cfg.APIBaseOrDefault(), cfg.BotToken, hc)
	s.roblox = NewRobloxClient(cfg.RobloxAPIBase, hc)
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// MaxInteractionBytes bounds an interaction body; Discord's are a few KiB.
const MaxInteractionBytes = 256 << 10

// Routes is the bot's route table. Discord authenticates itself by
// signature, checked by the handler over the raw body.
func (s *Service) Routes() []server.Route {
	return []server.Route{
		{Method: fiber.MethodPost, Path: "/api/discord/interactions", BodyLimit: MaxInteractionBytes, Timeout: 10 * time.Second, Handler: s.handleInteraction},
	}
}

// Request is one interaction as it arrived over HTTP.
type Request struct {
	Signature string
	Timestamp string
	Body      []byte
	IP        string
	RequestID string
}

func (s *Service) handleInteraction(c *fiber.Ctx) error {
	resp, err := s.Interact(c.UserContext(), Request{
		Signature: c.Get("X-Signature-Ed25519"),
		Timestamp: c.Get("X-Signature-Timestamp"),
		Body:      c.Body(),
		IP:        server.ClientIP(c),
		RequestID: server.RequestID(c),
	})
	if err != nil {
		return err
	}
	return c.JSON(resp)
}

// Interact verifies and answers one interaction. A bad or missing
// signature, or a timestamp more than MaxClockSkew away, is EUNAUTHORIZED;
// a signed body that is not an interaction EBADREQUEST; an unconfigured bot
// EUNAVAILABLE. Every command, even a refused or failed one, gets an
// ephemeral reply rather than an error.
func (s *Service) Interact(ctx context.Context, r Request) (Response, error) {
	if s.pub == nil {
		return Response{}, vectabase.Errorf(vectabase.EUNAVAILABLE, "the Discord bot is not configured (DISCORD_PUBLIC_KEY)")
	}
	if err := verify(s.pub, r.Signature, r.Timestamp, r.Body, s.now()); err != nil {
		return Response{}, vectabase.Errorf(vectabase.EUNAUTHORIZED, "%s", err.Error())
	}
	in, err := ParseInteraction(r.Body)
	if err != nil {
		return Response{}, vectabase.Errorf(vectabase.EBADREQUEST, "%s", err.Error())
	}
	switch in.Type {
	case InteractionPing:
		return Response{Type: ResponsePong}, nil
	case InteractionApplicationCommand:
		return s.command(ctx, in, r), nil
	default:
		return ephemeral("This kind of interaction is not supported."), nil
	}
}

// call is one command being answered.
type call struct {
	in      Interaction
	req     Request
	name    string
	opts    []InteractionOption
	caller  string
	server  store.DiscordServer
	guildID string
}

func (c *call) event(action, result string, details map[string]any) vectabase.AuditEvent {
	if details == nil {
		details = map[string]any{}
	}
	details["guild_id"] = c.guildID
	details["command"] = c.name
	return vectabase.AuditEvent{
		ActorType: vectabase.ActorDiscord, ActorID: c.caller,
		Action: action, ResourceType: "discord_server", ResourceID: c.server.ID,
		Result: result, IP: c.req.IP, RequestID: c.req.RequestID, Details: details,
	}
}

// replyError is a failure whose message is safe to show the caller.
type replyError struct{ msg string }

func (e *replyError) Error() string { return e.msg }

func (s *Service) command(ctx context.Context, in Interaction, r Request) Response {
	name, opts := in.Command()
	if in.GuildID == "" || in.Member == nil {
		return ephemeral("Use this command in a server.")
	}
	c := &call{in: in, req: r, name: name, opts: opts, caller: in.Member.User.ID, guildID: in.GuildID}
	var handler func(context.Context, *call) (Response, error)
	switch name {
	case CmdWhitelistAdd:
		handler = s.whitelistAdd
	case CmdWhitelistRemove:
		handler = s.whitelistRemove
	case CmdWhitelistCheck:
		handler = s.whitelistCheck
	case CmdRedeem:
		handler = s.redeem
	default:
		return ephemeral("Unknown command.")
	}
	srv, err := s.repo.FindDiscordServer(ctx, in.GuildID)
	if errors.Is(err, store.ErrNotFound) {
		return ephemeral("This server is not set up with Vectabase.")
	}
	if err != nil {
		return s.internal(r, "find discord server", err)
	}
	c.server = srv
	ok, err := s.permitted(ctx, c)
	if err != nil {
		return s.internal(r, "read command permissions", err)
	}
	if !ok {
		if err := s.audit.Record(ctx, c.event("discord.command", vectabase.ResultDenied, nil)); err != nil {
			s.log.Error().Str("requestId", r.RequestID).Str("error", err.Error()).Msg("audit discord command refusal")
		}
		return ephemeral("You are not allowed to use /%s here.", name)
	}
	resp, err := handler(ctx, c)
	var re *replyError
	if errors.As(err, &re) {
		return ephemeral("%s", re.msg)
	}
	if err != nil {
		return s.internal(r, name, err)
	}
	return resp
}

// internal logs a failure (no secret reaches it: errors here carry ids and
// statuses only) and gives the caller a generic reply.
func (s *Service) internal(r Request, what string, err error) Response {
	s.log.Error().Str("requestId", r.RequestID).Str("op", what).Str("error", err.Error()).Msg("discord interaction failed")
	return ephemeral("Something went wrong; nothing was changed. Try again later (request %s).", r.RequestID)
}

// permitted applies the package's permission rule to the caller.
func (s *Service) permitted(ctx context.Context, c *call) (bool, error) {
	// Rules may be written with or without the leading slash users type.
	names := []string{c.name, "/" + c.name}
	if group, _, ok := strings.Cut(c.name, " "); ok {
		names = append(names, group, "/"+group)
	}
	roles := append([]string{c.guildID}, c.in.Member.Roles...)
	rules, err := s.repo.CommandPermissions(ctx, c.server.ID, names, roles)
	if err != nil {
		return false, err
	}
	return decide(rules, c.in.Member.Permissions), nil
}

// decide is the permission rule over the rules that match the caller: any
// deny wins, then any allow, then ADMINISTRATOR.
func decide(rules []store.CommandPermission, permissions string) bool {
	allowed := false
	for _, r := range rules {
		if !r.Allowed {
			return false
		}
		allowed = true
	}
	return allowed || isAdministrator(permissions)
}

// product picks the bot product a command is for: the one named, or the
// guild's only product; nil when the guild sells none.
func (s *Service) product(ctx context.Context, c *call) (*store.BotProduct, error) {
	products, err := s.repo.ListBotProducts(ctx, c.server.ID)
	if err != nil {
		return nil, err
	}
	name := stringOption(c.opts, "product")
	if name == "" {
		switch len(products) {
		case 0:
			return nil, nil
		case 1:
			return &products[0], nil
		}
		names := make([]string, len(products))
		for i, p := range products {
			names[i] = p.ProductName
		}
		return nil, &replyError{"This server sells several products; choose one with product: (" + strings.Join(names, ", ") + ")."}
	}
	for i, p := range products {
		if strings.EqualFold(p.ProductName, name) {
			return &products[i], nil
		}
	}
	return nil, &replyError{"No product of that name is sold in this server."}
}

// grant gives the product's role (if any) and records ev; when the audit
// row cannot be written the role is taken back, so the caller's
// transaction can roll back with nothing changed anywhere.
func (s *Service) grant(ctx context.Context, c *call, userID string, p *store.BotProduct, ev vectabase.AuditEvent) error {
	var role string
	if p != nil && p.RoleID != nil {
		role = *p.RoleID
		if err := s.discord.AddRole(ctx, c.guildID, userID, role); err != nil {
			return discordFailure(err)
		}
	}
	if err := s.audit.Record(ctx, ev); err != nil {
		if role != "" {
			s.undo(c, func(ctx context.Context) error { return s.discord.RemoveRole(ctx, c.guildID, userID, role) })
		}
		return err
	}
	return nil
}

// undo runs a compensating Discord call on its own deadline, so that a
// cancelled request still puts the role back.
func (s *Service) undo(c *call, fn func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), HTTPTimeout)
	defer cancel()
	if err := fn(ctx); err != nil {
		s.log.Error().Str("requestId", c.req.RequestID).Str("error", err.Error()).Msg("discord: undo role change")
	}
}

func discordFailure(err error) error {
	var re *RESTError
	if errors.As(err, &re) && (re.Status == http.StatusForbidden || re.Status == http.StatusNotFound) {
		return &replyError{"Discord refused the role change (check the bot's role is above the product role and the member is in this server); nothing was changed."}
	}
	return &replyError{"Discord did not accept the role change; nothing was changed. Try again later."}
}

func mention(id string) string { return "<@" + id + ">" }

func (s *Service) whitelistAdd(ctx context.Context, c *call) (Response, error) {
	target := userOption(c.opts, "user")
	username := stringOption(c.opts, "roblox")
	if target == "" {
		return Response{}, &replyError{"Choose the member to whitelist with user:."}
	}
	if !validRobloxUsername(username) {
		return Response{}, &replyError{"That is not a Roblox username (3 to 20 letters, digits or underscores)."}
	}
	p, err := s.product(ctx, c)
	if err != nil {
		return Response{}, err
	}
	ru, err := s.roblox.LookupUsername(ctx, username)
	if errors.Is(err, ErrRobloxNotFound) {
		return Response{}, &replyError{"No Roblox account is called " + username + "."}
	}
	if err != nil {
		s.log.Warn().Str("requestId", c.req.RequestID).Str("error", err.Error()).Msg("roblox lookup")
		return Response{}, &replyError{"Roblox did not answer; nothing was changed. Try again later."}
	}
	ev := c.event("discord.whitelist_add", vectabase.ResultSuccess, map[string]any{"target_discord_id": target, "roblox_user_id": ru.ID})
	_, err = s.repo.AddBotWhitelist(ctx, store.BotWhitelistAdd{
		Server: c.server, Product: p, DiscordUserID: target,
		RobloxUserID: ru.ID, RobloxUsername: ru.Name, WhitelistedBy: c.caller,
		LicenseKey: marketplace.NormalizeLicenseKey(marketplace.NewLicenseKey()),
	}, func(ctx context.Context) error { return s.grant(ctx, c, target, p, ev) })
	switch {
	case errors.Is(err, store.ErrConflict):
		return Response{}, &replyError{mention(target) + " or that Roblox account is already whitelisted here."}
	case errors.Is(err, store.ErrFull):
		return Response{}, &replyError{"This server's whitelist is full."}
	case errors.Is(err, store.ErrNotFound):
		return Response{}, &replyError{"This server's configuration changed meanwhile; nothing was changed. Try again."}
	case err != nil:
		return Response{}, err
	}
	msg := fmt.Sprintf("Whitelisted %s as Roblox user %s (%d)", mention(target), ru.Name, ru.ID)
	if p != nil && p.RoleID != nil {
		msg += " and gave them <@&" + *p.RoleID + ">"
	}
	return ephemeral("%s.", msg), nil
}

func (s *Service) whitelistRemove(ctx context.Context, c *call) (Response, error) {
	target := userOption(c.opts, "user")
	if target == "" {
		return Response{}, &replyError{"Choose the member to remove with user:."}
	}
	_, err := s.repo.RemoveBotWhitelist(ctx, c.server, target, func(ctx context.Context, roles []string) error {
		var done []string
		for _, role := range roles {
			if err := s.discord.RemoveRole(ctx, c.guildID, target, role); err != nil {
				s.restore(c, target, done)
				return discordFailure(err)
			}
			done = append(done, role)
		}
		ev := c.event("discord.whitelist_remove", vectabase.ResultSuccess, map[string]any{"target_discord_id": target, "roles_removed": len(roles)})
		if err := s.audit.Record(ctx, ev); err != nil {
			s.restore(c, target, done)
			return err
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return Response{}, &replyError{mention(target) + " is not whitelisted here."}
	}
	if err != nil {
		return Response{}, err
	}
	return ephemeral("Removed %s from the whitelist.", mention(target)), nil
}

// restore gives back roles taken away before a removal failed.
func (s *Service) restore(c *call, userID string, roles []string) {
	for _, role := range roles {
		s.undo(c, func(ctx context.Context) error { return s.discord.AddRole(ctx, c.guildID, userID, role) })
	}
}

func (s *Service) whitelistCheck(ctx context.Context, c *call) (Response, error) {
	target := userOption(c.opts, "user")
	if target == "" {
		return Response{}, &replyError{"Choose the member to check with user:."}
	}
	rows, entry, err := s.repo.BotWhitelistStatus(ctx, c.server, target)
	if err != nil {
		return Response{}, err
	}
	if err := s.audit.Record(ctx, c.event("discord.whitelist_check", vectabase.ResultSuccess, map[string]any{"target_discord_id": target})); err != nil {
		return Response{}, err
	}
	if len(rows) == 0 && entry == nil {
		return ephemeral("%s is not whitelisted here.", mention(target)), nil
	}
	// The reply names the account and products, never the license key:
	// the caller is usually not the key's owner.
	var b strings.Builder
	b.WriteString(mention(target) + " is whitelisted")
	if entry != nil {
		name := ""
		if entry.RobloxUsername != nil {
			name = *entry.RobloxUsername + " "
		}
		b.WriteString(" as Roblox user " + name + "(" + strconv.FormatInt(entry.RobloxUserID, 10) + ")")
		if entry.ExpiresAt != nil {
			b.WriteString(", until " + entry.ExpiresAt.UTC().Format(time.RFC3339))
		}
	} else if len(rows) > 0 && rows[0].RobloxUserID != nil {
		b.WriteString(" as Roblox user (" + strconv.FormatInt(*rows[0].RobloxUserID, 10) + ")")
	}
	var products []string
	for _, r := range rows {
		if r.ProductName != nil {
			products = append(products, *r.ProductName)
		}
	}
	if len(products) > 0 {
		b.WriteString("; products: " + strings.Join(products, ", "))
	}
	return ephemeral("%s.", b.String()), nil
}

// maxLicenseKeyLen bounds what /redeem accepts before hashing it.
const maxLicenseKeyLen = 100

func (s *Service) redeem(ctx context.Context, c *call) (Response, error) {
	key := marketplace.NormalizeLicenseKey(stringOption(c.opts, "key"))
	if key == "" || len(key) > maxLicenseKeyLen {
		return Response{}, &replyError{"Give your license key with key:."}
	}
	if c.server.WhitelistSystemID == nil {
		return Response{}, &replyError{"This server has no whitelist system linked."}
	}
	p, err := s.product(ctx, c)
	if err != nil {
		return Response{}, err
	}
	var u store.WhitelistUser
	u, err = s.repo.Redeem(ctx, c.server, key, c.caller, p, func(ctx context.Context) error {
		return s.grant(ctx, c, c.caller, p, c.event("discord.redeem", vectabase.ResultSuccess, nil))
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.recordRefusal(ctx, c, "unknown_key")
		return Response{}, &replyError{"That license key is not valid in this server."}
	case errors.Is(err, store.ErrAlreadyRedeemed):
		s.recordRefusal(ctx, c, "linked_to_another_account")
		return Response{}, &replyError{"That license key is already linked to another Discord account."}
	case errors.Is(err, store.ErrExpired):
		return Response{}, &replyError{"That license has expired."}
	case err != nil:
		return Response{}, err
	}
	msg := fmt.Sprintf("Your license (Roblox user %d) is linked to your Discord account", u.RobloxUserID)
	if p != nil && p.RoleID != nil {
		msg += " and you have <@&" + *p.RoleID + ">"
	}
	return ephemeral("%s.", msg), nil
}

// recordRefusal audits a failed redemption: repeated ones are how key
// guessing shows. Best effort: the reply already refuses.
func (s *Service) recordRefusal(ctx context.Context, c *call, reason string) {
	ev := c.event("discord.redeem", vectabase.ResultFailure, map[string]any{"reason": reason})
	if err := s.audit.Record(ctx, ev); err != nil {
		s.log.Error().Str("requestId", c.req.RequestID).Str("error", err.Error()).Msg("audit discord redeem refusal")
	}
}
