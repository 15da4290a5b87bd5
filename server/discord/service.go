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
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/store"
)

// DefaultAPIBase is Discord's REST API, versioned: unversioned requests get
// a retired API version.
const DefaultAPIBase = "https://discord.com/api/v10"

// Config is the bot's configuration. PublicKey, BotToken and ClientSecret
// may instead come from the secrets vault (discord_public_key,
// discord_bot_token, discord_client_secret), re-read every
// CredentialTTL so that a rotated credential needs no restart; the
// environment wins.
type Config struct {
	PublicKey     string `env:"DISCORD_PUBLIC_KEY"`
	BotToken      string `env:"DISCORD_BOT_TOKEN"`
	ApplicationID string `env:"DISCORD_CLIENT_ID"`
	ClientSecret  string `env:"DISCORD_CLIENT_SECRET"`
	// InstallRedirectURI is where Discord sends the seller back after
	// adding the bot: this server's /api/discord/install/callback, as
	// registered in the Discord application's OAuth2 redirects.
	InstallRedirectURI string `env:"DISCORD_INSTALL_REDIRECT_URI"`
	APIBase            string `env:"DISCORD_API_BASE" envDefault:"https://discord.com/api/v10"`
	RobloxAPIBase      string `env:"ROBLOX_API_BASE" envDefault:"https://users.roblox.com"`
}

// String describes c without the bot token or client secret.
func (c Config) String() string {
	set := func(v string) string {
		if v == "" {
			return ""
		}
		return "[redacted]"
	}
	return fmt.Sprintf("discord.Config{PublicKey:%q BotToken:%q ApplicationID:%q ClientSecret:%q InstallRedirectURI:%q APIBase:%q RobloxAPIBase:%q}",
		c.PublicKey, set(c.BotToken), c.ApplicationID, set(c.ClientSecret), c.InstallRedirectURI, c.APIBase, c.RobloxAPIBase)
}

// GoString is String, so %#v redacts too.
func (c Config) GoString() string { return c.String() }

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

// Credentials reads a credential from the secrets vault when the
// environment's value is empty ("" when neither has one); vault.Service
// implements it, auditing each read as the system caller.
type Credentials interface {
	Credential(ctx context.Context, envValue, name string) (string, error)
}

// Vault secret names of the bot's credentials.
const (
	PublicKeyName    = "discord_public_key"
	BotTokenName     = "discord_bot_token"
	ClientSecretName = "discord_client_secret"
)

// CredentialTTL bounds how long credentials read from the vault are
// reused: a rotated bot token or public key is in use within a minute.
const CredentialTTL = time.Minute

// Service is the bot.
type Service struct {
	cfg     Config
	repo    *store.Bot
	db      *store.DB
	kr      *keyring.Keyring
	roblox  *RobloxClient
	audit   Auditor
	creds   Credentials
	log     zerolog.Logger
	now     func() time.Time
	metrics *metrics
	reg     prometheus.Registerer

	credMu sync.Mutex // one vault refresh at a time
	cur    atomic.Pointer[botCreds]

	runMu  sync.Mutex     // orders wg.Add against Close
	wg     sync.WaitGroup // deferred commands still running
	closed bool
	seen   *seenSet
	table  map[string]handler
	guilds *guildCache
	status *statusBatcher
	budget Budget
}

// botCreds are the credentials in use and until when.
type botCreds struct {
	pub    ed25519.PublicKey // nil: bot not configured
	token  string
	secret string
	rest   *RESTClient
	until  time.Time
}

// Budget bounds the outside calls of one deferred command. Discord keeps
// an interaction's token for 15 minutes; these stay well inside it.
type Budget struct {
	Roblox   time.Duration // the username look-up, retries included
	Role     time.Duration // each role change, retries included
	FollowUp time.Duration // editing the deferred reply
}

// DefaultBudget is what New uses.
var DefaultBudget = Budget{Roblox: 10 * time.Second, Role: 10 * time.Second, FollowUp: 10 * time.Second}

// Option changes a Service built by New.
type Option func(*Service)

// WithClock makes the service read time from now (tests).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithCredentials reads the credentials the configuration leaves empty
// from c, again every CredentialTTL.
func WithCredentials(c Credentials) Option { return func(s *Service) { s.creds = c } }

// WithRegisterer counts commands on reg
// (vectabase_discord_commands_total{command,outcome}).
func WithRegisterer(reg prometheus.Registerer) Option { return func(s *Service) { s.reg = reg } }

// WithBudget replaces DefaultBudget.
func WithBudget(b Budget) Option { return func(s *Service) { s.budget = b } }

// WithStore gives the service the database and keyring the install flow
// needs (store ownership, signed and single-use OAuth states).
func WithStore(db *store.DB, kr *keyring.Keyring) Option {
	return func(s *Service) { s.db, s.kr = db, kr }
}

// HTTPTimeout bounds each attempt of a call to Discord or Roblox; retries
// run inside the command's Budget.
const HTTPTimeout = 5 * time.Second

// New returns the bot. An empty PublicKey (and none in the vault) leaves
// the bot unconfigured (interactions answer 503); a malformed one in the
// environment is an error.
func New(cfg Config, repo *store.Bot, audit Auditor, log zerolog.Logger, opts ...Option) (*Service, error) {
	s := &Service{cfg: cfg, repo: repo, audit: audit, log: log, now: time.Now, budget: DefaultBudget, seen: newSeenSet(maxSeen, 2*MaxClockSkew)}
	if cfg.PublicKey != "" {
		if _, err := ParsePublicKey(cfg.PublicKey); err != nil {
			return nil, err
		}
	}
	s.roblox = NewRobloxClient(cfg.RobloxAPIBase, &http.Client{Timeout: HTTPTimeout})
	for _, o := range opts {
		o(s)
	}
	s.table = s.handlers()
	s.guilds = newGuildCache()
	s.status = newStatusBatcher(repo.BotWhitelistStatuses)
	m, err := newMetrics(s.reg)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	if s.creds == nil {
		// Environment only: the credentials never change.
		s.cur.Store(s.build(cfg.PublicKey, cfg.BotToken, cfg.ClientSecret, time.Time{}))
	}
	return s, nil
}

// build makes the credentials in use from their values; a malformed
// public key leaves the bot unconfigured (and is logged).
func (s *Service) build(pubHex, token, secret string, until time.Time) *botCreds {
	c := &botCreds{token: token, secret: secret, until: until,
		rest: NewRESTClient(s.cfg.APIBaseOrDefault(), token, &http.Client{Timeout: HTTPTimeout})}
	if pubHex != "" {
		pub, err := ParsePublicKey(pubHex)
		if err != nil {
			s.log.Error().Str("secret", PublicKeyName).Msg("discord: the public key is not 64 hex characters; interactions answer 503")
		} else {
			c.pub = pub
		}
	}
	return c
}

// credentials returns the credentials in use, re-reading from the vault
// those the environment leaves empty once CredentialTTL has passed. While
// the vault cannot be read the previous ones stay in use.
func (s *Service) credentials(ctx context.Context) *botCreds {
	c := s.cur.Load()
	if c != nil && (s.creds == nil || s.now().Before(c.until)) {
		return c
	}
	s.credMu.Lock()
	defer s.credMu.Unlock()
	if c = s.cur.Load(); c != nil && s.now().Before(c.until) {
		return c
	}
	vals := [3]string{s.cfg.PublicKey, s.cfg.BotToken, s.cfg.ClientSecret}
	for i, name := range []string{PublicKeyName, BotTokenName, ClientSecretName} {
		v, err := s.creds.Credential(ctx, vals[i], name)
		if err != nil {
			s.log.Error().Str("secret", name).Str("error", vectabase.ErrorMessage(err)).Msg("discord: read credential from the vault")
			if c != nil {
				// Keep what works; try again soon.
				next := *c
				next.until = s.now().Add(10 * time.Second)
				s.cur.Store(&next)
				return &next
			}
			return &botCreds{rest: NewRESTClient(s.cfg.APIBaseOrDefault(), "", &http.Client{Timeout: HTTPTimeout})}
		}
		vals[i] = v
	}
	if c != nil && c.token == vals[1] && c.secret == vals[2] && c.pub != nil && hex.EncodeToString(c.pub) == strings.ToLower(vals[0]) {
		next := *c
		next.until = s.now().Add(CredentialTTL)
		s.cur.Store(&next)
		return &next
	}
	next := s.build(vals[0], vals[1], vals[2], s.now().Add(CredentialTTL))
	s.cur.Store(next)
	return next
}

// MaxInteractionBytes bounds an interaction body; Discord's are a few KiB.
const MaxInteractionBytes = 256 << 10

// Request is one interaction as it arrived over HTTP.
type Request struct {
	Signature string
	Timestamp string
	Body      []byte
	IP        string
	RequestID string
}

// Interact verifies and answers one interaction. A bad or missing
// signature, or a timestamp more than MaxClockSkew away, is EUNAUTHORIZED;
// a signed body that is not an interaction EBADREQUEST; an unconfigured bot
// EUNAVAILABLE. Every command, even a refused or failed one, gets an
// ephemeral reply rather than an error: at once for commands that touch
// only the database, and as a deferred reply (type 5) completed by an edit
// of the original response for those that call Roblox or Discord.
func (s *Service) Interact(ctx context.Context, r Request) (Response, error) {
	cr := s.credentials(ctx)
	if cr.pub == nil {
		return Response{}, vectabase.Errorf(vectabase.EUNAVAILABLE, "the Discord bot is not configured (DISCORD_PUBLIC_KEY)")
	}
	if err := verify(cr.pub, r.Signature, r.Timestamp, r.Body, s.now()); err != nil {
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
		return s.command(ctx, in, r, cr), nil
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
	rest    *RESTClient
	// product is the binding the command is for, once read (productRead).
	product     *store.BotProduct
	productRead bool
}

func (c *call) event(action, result string, details map[string]any) vectabase.AuditEvent {
	if details == nil {
		details = map[string]any{}
	}
	details["guild_id"] = c.guildID
	details["command"] = c.name
	if c.in.ID != "" {
		details["interaction_id"] = c.in.ID
	}
	return vectabase.AuditEvent{
		ActorType: vectabase.ActorDiscord, ActorID: c.caller,
		Action: action, ResourceType: "discord_server", ResourceID: c.server.ID,
		Result: result, IP: c.req.IP, RequestID: c.req.RequestID, Details: details,
	}
}

// replyError is a failure whose message is safe to show the caller.
// outcome labels it in the metrics ("refused" when empty).
type replyError struct {
	msg     string
	outcome string
}

func (e *replyError) Error() string { return e.msg }

// handler runs one command; deferred ones call Roblox or Discord and are
// answered with a deferred reply first.
type handler struct {
	run      func(context.Context, *call) (Response, error)
	deferred bool // may call Roblox or Discord
	writes   bool // changes state: claims its interaction id in the database
	// defers, when set, decides from the database alone whether this call
	// of a deferred command calls Discord; when not, it answers at once.
	// A replyError it returns is the answer.
	defers func(context.Context, *call) (bool, error)
	names  []string // ruleNames of the command, computed once
}

func (s *Service) handlers() map[string]handler {
	t := map[string]handler{
		CmdWhitelistAdd:    {run: s.whitelistAdd, deferred: true, writes: true},
		CmdWhitelistRemove: {run: s.whitelistRemove, deferred: true, writes: true},
		CmdWhitelistCheck:  {run: s.whitelistCheck},
		CmdRedeem:          {run: s.redeem, deferred: true, writes: true, defers: s.redeemDefers},
	}
	for name, h := range t {
		h.names = ruleNames(name)
		t[name] = h
	}
	return t
}

func (s *Service) command(ctx context.Context, in Interaction, r Request, cr *botCreds) Response {
	name, opts := in.Command()
	if in.GuildID == "" || in.Member == nil {
		s.metrics.count("other", outcomeRefused)
		return ephemeral("Use this command in a server.")
	}
	h, ok := s.table[name]
	if !ok {
		s.metrics.count("other", outcomeUnknown)
		return ephemeral("Unknown command.")
	}
	c := &call{in: in, req: r, name: name, opts: opts, caller: in.Member.User.ID, guildID: in.GuildID, rest: cr.rest}
	// Replays: this instance remembers the ids it saw; a command that
	// changes state also claims its id in the database (one row), so a
	// delivery to another instance is refused too. A read-only command
	// seen by two instances is only read twice.
	fresh := s.seen.add(in.ID, s.now())
	var cc store.CommandContext
	var err error
	if fresh {
		if h.writes {
			roles := append([]string{in.GuildID}, in.Member.Roles...)
			cc, err = s.repo.BeginCommand(ctx, in.ID, true, in.GuildID, h.names, roles)
		} else {
			cc, err = s.readConfig(ctx, in.GuildID, h.names, in.Member.Roles)
		}
		if err != nil {
			// Nothing ran: a retry of this delivery may run it.
			s.seen.forget(in.ID)
			s.metrics.count(name, outcomeError)
			return s.internal(r, "begin discord command", err)
		}
		fresh = cc.Fresh
	}
	if !fresh {
		// Discord delivered this interaction before: its first delivery
		// runs (or ran) the command; this one changes nothing.
		s.metrics.count(name, outcomeReplay)
		if h.deferred && s.replayDefers(ctx, c, h, cc.Server) {
			return deferredReply()
		}
		return ephemeral("This command was already handled.")
	}
	if cc.Server == nil {
		s.metrics.count(name, outcomeNotSetUp)
		return ephemeral("This server is not set up with Vectabase.")
	}
	c.server = *cc.Server
	if !decide(cc.Rules, in.Member.Permissions) {
		s.metrics.count(name, outcomeDenied)
		if err := s.audit.Record(ctx, c.event("discord.command", vectabase.ResultDenied, nil)); err != nil {
			s.log.Error().Str("requestId", r.RequestID).Str("error", err.Error()).Msg("audit discord command refusal")
		}
		return ephemeral("You are not allowed to use /%s here.", name)
	}
	deferred := h.deferred
	if deferred && h.defers != nil {
		d, err := h.defers(ctx, c)
		if err != nil {
			return s.reply(c, Response{}, err)
		}
		deferred = d
	}
	if !deferred {
		return s.finish(ctx, c, h)
	}
	// Discord wants an answer within 3 seconds; Roblox and Discord's own
	// REST API may take longer. Answer "thinking…" now and edit it later.
	s.runMu.Lock()
	if s.closed {
		s.runMu.Unlock()
		s.metrics.count(name, outcomeUnavailable)
		return ephemeral("The bot is restarting; nothing was changed. Try again in a moment.")
	}
	s.wg.Add(1)
	s.runMu.Unlock()
	go func() {
		defer s.wg.Done()
		total := s.budget.Roblox + 3*s.budget.Role + s.budget.FollowUp
		ctx, cancel := context.WithTimeout(context.Background(), total)
		defer cancel()
		resp := s.finish(ctx, c, h)
		s.followUp(c, resp)
	}()
	return deferredReply()
}

// replayDefers reports whether the first delivery of a command answered
// with a deferred reply, so that a second delivery answers alike: the
// follow-up edits whichever response Discord kept. srv is the guild's
// registration when already read.
func (s *Service) replayDefers(ctx context.Context, c *call, h handler, srv *store.DiscordServer) bool {
	if h.defers == nil {
		return true
	}
	if srv == nil {
		cc, err := s.readConfig(ctx, c.guildID, h.names, c.in.Member.Roles)
		if err != nil || cc.Server == nil {
			return false
		}
		srv = cc.Server
	}
	c.server = *srv
	d, err := h.defers(ctx, c)
	return err == nil && d
}

// finish runs a permitted command and turns its failures into replies.
func (s *Service) finish(ctx context.Context, c *call, h handler) Response {
	resp, err := h.run(ctx, c)
	return s.reply(c, resp, err)
}

// reply turns a command's outcome into its answer, counting it.
func (s *Service) reply(c *call, resp Response, err error) Response {
	var re *replyError
	if errors.As(err, &re) {
		outcome := re.outcome
		if outcome == "" {
			outcome = outcomeRefused
		}
		s.metrics.count(c.name, outcome)
		return ephemeral("%s", re.msg)
	}
	if err != nil {
		s.metrics.count(c.name, outcomeError)
		return s.internal(c.req, c.name, err)
	}
	s.metrics.count(c.name, outcomeOK)
	return resp
}

// followUp edits the deferred reply into resp. Failures are logged: the
// member then sees Discord's "the application did not respond".
func (s *Service) followUp(c *call, resp Response) {
	if resp.Data == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.budget.FollowUp)
	defer cancel()
	appID := c.in.ApplicationID
	if appID == "" {
		appID = s.cfg.ApplicationID
	}
	if err := c.rest.EditOriginal(ctx, appID, c.in.Token, resp.Data.Content); err != nil {
		s.log.Error().Str("requestId", c.req.RequestID).Str("error", err.Error()).Msg("discord: edit the deferred reply")
	}
}

// Close stops taking deferred commands and waits, until ctx ends, for
// those running to send their follow-ups.
func (s *Service) Close(ctx context.Context) error {
	s.runMu.Lock()
	s.closed = true
	s.runMu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// internal logs a failure (no secret reaches it: errors here carry ids and
// statuses only) and gives the caller a generic reply.
func (s *Service) internal(r Request, what string, err error) Response {
	s.log.Error().Str("requestId", r.RequestID).Str("op", what).Str("error", err.Error()).Msg("discord interaction failed")
	return ephemeral("Something went wrong; nothing was changed. Try again later (request %s).", r.RequestID)
}

// ruleNames are the bot_command_permissions.command values that match
// command: its full name and its group, with or without the slash users
// type.
func ruleNames(command string) []string {
	names := []string{command, "/" + command}
	if group, _, ok := strings.Cut(command, " "); ok {
		names = append(names, group, "/"+group)
	}
	return names
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
// guild's only product; nil when the guild sells none. It reads once per
// call.
func (s *Service) product(ctx context.Context, c *call) (*store.BotProduct, error) {
	if c.productRead {
		return c.product, nil
	}
	p, err := s.readProduct(ctx, c)
	if err == nil {
		c.product, c.productRead = p, true
	}
	return p, err
}

func (s *Service) readProduct(ctx context.Context, c *call) (*store.BotProduct, error) {
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
		return nil, &replyError{msg: "This server sells several products; choose one with product: (" + strings.Join(names, ", ") + ")."}
	}
	for i, p := range products {
		if strings.EqualFold(p.ProductName, name) {
			return &products[i], nil
		}
	}
	return nil, &replyError{msg: "No product of that name is sold in this server."}
}

func mention(id string) string { return "<@" + id + ">" }

func (s *Service) whitelistAdd(ctx context.Context, c *call) (Response, error) {
	target := userOption(c.opts, "user")
	username := stringOption(c.opts, "roblox")
	if target == "" {
		return Response{}, &replyError{msg: "Choose the member to whitelist with user:."}
	}
	if !validRobloxUsername(username) {
		return Response{}, &replyError{msg: "That is not a Roblox username (3 to 20 letters, digits or underscores)."}
	}
	p, err := s.product(ctx, c)
	if err != nil {
		return Response{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, s.budget.Roblox)
	ru, err := s.roblox.LookupUsername(rctx, username)
	cancel()
	if errors.Is(err, ErrRobloxNotFound) {
		return Response{}, &replyError{msg: "No Roblox account is called " + username + "."}
	}
	if err != nil {
		s.log.Warn().Str("requestId", c.req.RequestID).Str("error", err.Error()).Msg("roblox lookup")
		return Response{}, &replyError{msg: "Roblox is not answering right now (it may be down or busy); nothing was changed. Try again in a few minutes.", outcome: outcomeUnavailable}
	}
	ev := c.event("discord.whitelist_add", vectabase.ResultSuccess, map[string]any{"target_discord_id": target, "roblox_user_id": ru.ID})
	ch, err := s.repo.AddBotWhitelist(ctx, store.BotWhitelistAdd{
		Server: c.server, Product: p, DiscordUserID: target,
		RobloxUserID: ru.ID, RobloxUsername: ru.Name, WhitelistedBy: c.caller,
		LicenseKey:  marketplace.NormalizeLicenseKey(marketplace.NewLicenseKey()),
		Interaction: s.interaction(c),
	}, func(ctx context.Context) error { return s.audit.Record(ctx, ev) })
	switch {
	case errors.Is(err, store.ErrConflict):
		return Response{}, &replyError{msg: mention(target) + " or that Roblox account is already whitelisted here."}
	case errors.Is(err, store.ErrFull):
		return Response{}, &replyError{msg: "This server's whitelist is full."}
	case errors.Is(err, store.ErrNotFound):
		return Response{}, &replyError{msg: "This server's configuration changed meanwhile; nothing was changed. Try again."}
	case err != nil:
		return Response{}, err
	}
	if err := s.grantOrRollBack(ctx, c, target, ch, "discord.whitelist_add"); err != nil {
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
		return Response{}, &replyError{msg: "Choose the member to remove with user:."}
	}
	ch, err := s.repo.RemoveBotWhitelist(ctx, c.server, target, s.interaction(c), func(ctx context.Context, roles []string) error {
		ev := c.event("discord.whitelist_remove", vectabase.ResultSuccess, map[string]any{"target_discord_id": target, "roles_removed": len(roles)})
		return s.audit.Record(ctx, ev)
	})
	if errors.Is(err, store.ErrNotFound) {
		return Response{}, &replyError{msg: mention(target) + " is not whitelisted here."}
	}
	if err != nil {
		return Response{}, err
	}
	// The whitelist entry is gone whatever Discord does: access ends at
	// once. A role Discord would not take back stays owed (pending) and the
	// grant worker retries it.
	var owed int
	for _, g := range ch.Grants {
		if !s.applyGrant(ctx, c.rest, g).ok {
			owed++
		}
	}
	if owed > 0 {
		return Response{}, &replyError{outcome: outcomeUnavailable,
			msg: "Removed " + mention(target) + " from the whitelist, but Discord did not take their role away yet; it will be retried."}
	}
	return ephemeral("Removed %s from the whitelist.", mention(target)), nil
}

func (s *Service) whitelistCheck(ctx context.Context, c *call) (Response, error) {
	target := userOption(c.opts, "user")
	if target == "" {
		return Response{}, &replyError{msg: "Choose the member to check with user:."}
	}
	st, err := s.status.get(ctx, store.StatusQuery{ServerID: c.server.ID, SystemID: c.server.WhitelistSystemID, DiscordUserID: target})
	if err != nil {
		return Response{}, err
	}
	// A check changes nothing and shows no secret (never a license key),
	// so it writes no audit row: it is counted in
	// vectabase_discord_commands_total, and a refused one is audited. An
	// audit row per check was most of its cost (a hash-chained insert on
	// every read), which made the read-only command a write.
	return message(checkReply(target, st)), nil
}

// checkReply is /whitelist check's answer about target. It names the
// account and products, never the license key: the caller is usually not
// the key's owner. It is appended into one buffer: this is the bot's most
// frequent command.
func checkReply(target string, st store.MemberStatus) string {
	var buf [256]byte
	b := append(append(append(buf[:0], "<@"...), target...), '>')
	if st.Records == 0 && st.Entry == nil {
		return string(append(b, " is not whitelisted here."...))
	}
	b = append(b, " is whitelisted"...)
	if e := st.Entry; e != nil {
		b = append(b, " as Roblox user "...)
		if e.RobloxUsername != nil {
			b = append(append(b, *e.RobloxUsername...), ' ')
		}
		b = append(strconv.AppendInt(append(b, '('), e.RobloxUserID, 10), ')')
		if e.ExpiresAt != nil {
			b = e.ExpiresAt.UTC().AppendFormat(append(b, ", until "...), time.RFC3339)
		}
	} else if st.RecordRobloxUserID != nil {
		b = append(strconv.AppendInt(append(b, " as Roblox user ("...), *st.RecordRobloxUserID, 10), ')')
	}
	for i, p := range st.Products {
		if i == 0 {
			b = append(b, "; products: "...)
		} else {
			b = append(b, ", "...)
		}
		b = append(b, p...)
	}
	return string(append(b, '.'))
}

// maxLicenseKeyLen bounds what /redeem accepts before hashing it.
const maxLicenseKeyLen = 100

// redeemDefers: a /redeem whose product gives a role calls Discord and is
// deferred; one with no role (or no product) touches only the database and
// answers at once, as do refusals of its input.
func (s *Service) redeemDefers(ctx context.Context, c *call) (bool, error) {
	if _, err := redeemKey(c); err != nil {
		return false, err
	}
	p, err := s.product(ctx, c)
	if err != nil {
		return false, err
	}
	return p != nil && p.RoleID != nil, nil
}

// redeemKey is /redeem's normalized key, or the refusal of its input.
func redeemKey(c *call) (string, error) {
	key := marketplace.NormalizeLicenseKey(stringOption(c.opts, "key"))
	if key == "" || len(key) > maxLicenseKeyLen {
		return "", &replyError{msg: "Give your license key with key:."}
	}
	if c.server.WhitelistSystemID == nil {
		return "", &replyError{msg: "This server has no whitelist system linked."}
	}
	return key, nil
}

func (s *Service) redeem(ctx context.Context, c *call) (Response, error) {
	key, err := redeemKey(c)
	if err != nil {
		return Response{}, err
	}
	p, err := s.product(ctx, c)
	if err != nil {
		return Response{}, err
	}
	ch, err := s.repo.Redeem(ctx, c.server, key, c.caller, p, s.interaction(c), func(ctx context.Context) error {
		return s.audit.Record(ctx, c.event("discord.redeem", vectabase.ResultSuccess, nil))
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.recordRefusal(ctx, c, "unknown_key")
		return Response{}, &replyError{msg: "That license key is not valid in this server."}
	case errors.Is(err, store.ErrAlreadyRedeemed):
		s.recordRefusal(ctx, c, "linked_to_another_account")
		return Response{}, &replyError{msg: "That license key is already linked to another Discord account."}
	case errors.Is(err, store.ErrExpired):
		return Response{}, &replyError{msg: "That license has expired."}
	case err != nil:
		return Response{}, err
	}
	if err := s.grantOrRollBack(ctx, c, c.caller, ch, "discord.redeem"); err != nil {
		return Response{}, err
	}
	msg := fmt.Sprintf("Your license (Roblox user %d) is linked to your Discord account", ch.Entry.RobloxUserID)
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
