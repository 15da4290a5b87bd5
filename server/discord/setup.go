package discord

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/store"
)

// Actor is who changes a guild's set-up: a signed-in store owner
// (vectabase.ActorUser), or the local operator through the CLI, who may
// manage every guild.
type Actor struct {
	Type      string
	ID        string
	IP        string
	RequestID string
}

// owner is the owner filter of the store layer: "" for the operator.
func (a Actor) owner() string {
	if a.Type == vectabase.ActorLocalOperator {
		return ""
	}
	return a.ID
}

func (a Actor) event(action, resourceType, resourceID string, details map[string]any) vectabase.AuditEvent {
	return vectabase.AuditEvent{ActorType: a.Type, ActorID: a.ID, Action: action, ResourceType: resourceType,
		ResourceID: resourceID, Result: vectabase.ResultSuccess, IP: a.IP, RequestID: a.RequestID, Details: details}
}

// Server is a guild's registration as the API shows it.
type Server struct {
	ID                string    `json:"id"`
	GuildID           string    `json:"guildId"`
	StoreID           *string   `json:"storeId"`
	OwnerID           string    `json:"ownerId"`
	WhitelistSystemID *string   `json:"whitelistSystemId"`
	GuildName         *string   `json:"guildName"`
	LogChannelID      *string   `json:"logChannelId"`
	HasWebhook        bool      `json:"hasWebhook"`
	CreatedAt         time.Time `json:"createdAt"`
}

func serverOf(s store.DiscordServer) Server {
	return Server{ID: s.ID, GuildID: s.GuildID, StoreID: s.StoreID, OwnerID: s.OwnerID, WhitelistSystemID: s.WhitelistSystemID,
		GuildName: s.GuildName, LogChannelID: s.LogChannelID, HasWebhook: s.HasWebhook, CreatedAt: s.CreatedAt}
}

// Product is a product binding (bot_products) as the API shows it.
type Product struct {
	ID          string  `json:"id"`
	ProductID   string  `json:"productId"`
	ProductName string  `json:"productName"`
	RoleID      *string `json:"roleId"`
}

// Permission is a command rule (bot_command_permissions).
type Permission struct {
	ID      string `json:"id"`
	Command string `json:"command"`
	RoleID  string `json:"roleId"`
	Allowed bool   `json:"allowed"`
}

// List is the contract's list shape.
type List[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"nextCursor"`
}

func listOf[T, S any](in []S, f func(S) T) List[T] {
	out := List[T]{Items: make([]T, 0, len(in))}
	for _, v := range in {
		out.Items = append(out.Items, f(v))
	}
	return out
}

func validation(format string, args ...any) error {
	return vectabase.Errorf(vectabase.EVALIDATION, format, args...)
}

var errNoServer = vectabase.Errorf(vectabase.ENOTFOUND, "no such Discord server")

// findServer returns guildID's registration when actor may manage it.
func (s *Service) findServer(ctx context.Context, a Actor, guildID string) (store.DiscordServer, error) {
	if !isSnowflake(guildID) {
		return store.DiscordServer{}, validation("guildId: must be a Discord id (1 to 20 digits)")
	}
	srv, err := s.repo.OwnedDiscordServer(ctx, a.owner(), guildID)
	if errors.Is(err, store.ErrNotFound) {
		return store.DiscordServer{}, errNoServer
	}
	return srv, err
}

// ListServers returns the guilds actor manages, of storeID only when set.
func (s *Service) ListServers(ctx context.Context, a Actor, storeID string) (List[Server], error) {
	if storeID != "" && uuid.Validate(storeID) != nil {
		return List[Server]{}, validation("storeId: must be a UUID")
	}
	list, err := s.repo.ListDiscordServers(ctx, a.owner(), storeID)
	if err != nil {
		return List[Server]{}, err
	}
	return listOf(list, serverOf), nil
}

// GetServer returns guildID's registration (NOT_FOUND when actor does not
// manage it).
func (s *Service) GetServer(ctx context.Context, a Actor, guildID string) (Server, error) {
	srv, err := s.findServer(ctx, a, guildID)
	if err != nil {
		return Server{}, err
	}
	return serverOf(srv), nil
}

// ServerUpdate is PATCH /api/discord/servers/:guildId: the whitelist system
// players are whitelisted in (null: none).
type ServerUpdate struct {
	WhitelistSystemID marketplace.Field[string] `json:"whitelistSystemId"`
}

// UpdateServer links guildID to a whitelist system of its owner. Audited
// as discord.server_update.
func (s *Service) UpdateServer(ctx context.Context, a Actor, guildID string, in ServerUpdate) (Server, error) {
	srv, err := s.findServer(ctx, a, guildID)
	if err != nil {
		return Server{}, err
	}
	if !in.WhitelistSystemID.Set {
		return serverOf(srv), nil
	}
	sys := in.WhitelistSystemID.Ptr()
	if sys != nil && uuid.Validate(*sys) != nil {
		return Server{}, validation("whitelistSystemId: must be a UUID")
	}
	defer s.guilds.forget(guildID)
	out, err := s.repo.SetWhitelistSystem(ctx, srv, sys, func(ctx context.Context) error {
		return s.audit.Record(ctx, a.event("discord.server_update", "discord_server", srv.ID,
			map[string]any{"guild_id": guildID, "whitelist_system_id": deref(sys)}))
	})
	if errors.Is(err, store.ErrNotFound) {
		return Server{}, vectabase.Errorf(vectabase.ENOTFOUND, "no such whitelist system of this server's owner")
	}
	if err != nil {
		return Server{}, err
	}
	return serverOf(out), nil
}

// RemoveServer unlinks guildID with its bindings and rules (the bot stays
// in the guild until someone removes it there). Audited as
// discord.server_remove.
func (s *Service) RemoveServer(ctx context.Context, a Actor, guildID string) error {
	srv, err := s.findServer(ctx, a, guildID)
	if err != nil {
		return err
	}
	defer s.guilds.forget(guildID)
	err = s.repo.DeleteDiscordServer(ctx, srv, func(ctx context.Context) error {
		return s.audit.Record(ctx, a.event("discord.server_remove", "discord_server", srv.ID, map[string]any{"guild_id": guildID}))
	})
	if errors.Is(err, store.ErrNotFound) {
		return errNoServer
	}
	return err
}

// RegisterServer links guildID to storeID without Discord's OAuth check:
// the CLI's `servers add`, for the local operator only. A guild linked to
// another store moves.
func (s *Service) RegisterServer(ctx context.Context, a Actor, guildID, storeID, name string) (Server, string, error) {
	if a.Type != vectabase.ActorLocalOperator {
		return Server{}, "", vectabase.Errorf(vectabase.EFORBIDDEN, "only the local operator registers a guild without Discord")
	}
	if !isSnowflake(guildID) {
		return Server{}, "", validation("guildId: must be a Discord id (1 to 20 digits)")
	}
	if uuid.Validate(storeID) != nil {
		return Server{}, "", validation("storeId: must be a UUID")
	}
	var gname *string
	if name = strings.TrimSpace(name); name != "" {
		if len(name) > 100 {
			return Server{}, "", validation("name: at most 100 characters")
		}
		gname = &name
	}
	return s.install(ctx, a, store.InstallServer{GuildID: guildID, GuildName: gname, StoreID: storeID, Operator: true})
}

// install records the guild and audits the outcome.
func (s *Service) install(ctx context.Context, a Actor, in store.InstallServer) (Server, string, error) {
	defer s.guilds.forget(in.GuildID)
	out, outcome, err := s.repo.InstallDiscordServer(ctx, in, func(ctx context.Context, srv store.DiscordServer, outcome string) error {
		return s.audit.Record(ctx, a.event("discord.server_install", "discord_server", srv.ID,
			map[string]any{"guild_id": srv.GuildID, "store_id": in.StoreID, "outcome": outcome}))
	})
	switch {
	case errors.Is(err, store.ErrGuildTaken):
		return Server{}, "", vectabase.Errorf(vectabase.ECONFLICT, "this Discord server is linked to a store of another owner, who must unlink it first")
	case errors.Is(err, store.ErrNotFound):
		return Server{}, "", vectabase.Errorf(vectabase.ENOTFOUND, "no such store")
	case err != nil:
		return Server{}, "", err
	}
	return serverOf(out), outcome, nil
}

// ListProducts returns guildID's product bindings.
func (s *Service) ListProducts(ctx context.Context, a Actor, guildID string) (List[Product], error) {
	srv, err := s.findServer(ctx, a, guildID)
	if err != nil {
		return List[Product]{}, err
	}
	list, err := s.repo.ListBotProducts(ctx, srv.ID)
	if err != nil {
		return List[Product]{}, err
	}
	return listOf(list, productOf), nil
}

func productOf(p store.BotProduct) Product {
	return Product{ID: p.ID, ProductID: p.ProductID, ProductName: p.ProductName, RoleID: p.RoleID}
}

// ProductInput binds a product of the guild's store and the role its
// buyers get (none: only recorded).
type ProductInput struct {
	ProductID string  `json:"productId"`
	RoleID    *string `json:"roleId"`
}

// AddProduct binds a product to guildID. Audited as discord.product_add.
func (s *Service) AddProduct(ctx context.Context, a Actor, guildID string, in ProductInput) (Product, error) {
	if uuid.Validate(in.ProductID) != nil {
		return Product{}, validation("productId: must be a UUID")
	}
	if in.RoleID != nil && !isSnowflake(*in.RoleID) {
		return Product{}, validation("roleId: must be a Discord role id (1 to 20 digits)")
	}
	srv, err := s.findServer(ctx, a, guildID)
	if err != nil {
		return Product{}, err
	}
	p, err := s.repo.AddBotProduct(ctx, srv, in.ProductID, in.RoleID, func(ctx context.Context, p store.BotProduct) error {
		return s.audit.Record(ctx, a.event("discord.product_add", "bot_product", p.ID,
			map[string]any{"guild_id": guildID, "product_id": in.ProductID, "role_id": deref(in.RoleID)}))
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Product{}, vectabase.Errorf(vectabase.ENOTFOUND, "no such product in this server's store")
	case errors.Is(err, store.ErrConflict):
		return Product{}, vectabase.Errorf(vectabase.ECONFLICT, "that product is already bound to this server")
	case err != nil:
		return Product{}, err
	}
	return productOf(p), nil
}

// RemoveProduct unbinds binding id from guildID. Audited as
// discord.product_remove.
func (s *Service) RemoveProduct(ctx context.Context, a Actor, guildID, id string) error {
	if uuid.Validate(id) != nil {
		return validation("id: must be a UUID")
	}
	srv, err := s.findServer(ctx, a, guildID)
	if err != nil {
		return err
	}
	err = s.repo.RemoveBotProduct(ctx, srv, id, func(ctx context.Context) error {
		return s.audit.Record(ctx, a.event("discord.product_remove", "bot_product", id, map[string]any{"guild_id": guildID}))
	})
	if errors.Is(err, store.ErrNotFound) {
		return vectabase.Errorf(vectabase.ENOTFOUND, "no such product binding")
	}
	return err
}

// ListPermissions returns guildID's command rules.
func (s *Service) ListPermissions(ctx context.Context, a Actor, guildID string) (List[Permission], error) {
	srv, err := s.findServer(ctx, a, guildID)
	if err != nil {
		return List[Permission]{}, err
	}
	list, err := s.repo.ListCommandPermissions(ctx, srv.ID)
	if err != nil {
		return List[Permission]{}, err
	}
	return listOf(list, permissionOf), nil
}

func permissionOf(p store.CommandPermission) Permission {
	return Permission{ID: p.ID, Command: p.Command, RoleID: p.RoleID, Allowed: p.Allowed}
}

// PermissionInput is a rule: command (a full name or the group
// "whitelist", with or without the slash), the role it is for (the guild
// id for @everyone) and whether it allows (default) or denies.
type PermissionInput struct {
	Command string `json:"command"`
	RoleID  string `json:"roleId"`
	Allowed *bool  `json:"allowed"`
}

// KnownRuleCommands are the commands a rule may name.
var KnownRuleCommands = []string{"whitelist", CmdWhitelistAdd, CmdWhitelistRemove, CmdWhitelistCheck, CmdRedeem}

// NormalizeRuleCommand returns command as rules store it (no slash, lower
// case, single spaces), or "" when it names no command of the bot.
func NormalizeRuleCommand(command string) string {
	c := strings.ToLower(strings.Join(strings.Fields(strings.TrimPrefix(strings.TrimSpace(command), "/")), " "))
	for _, k := range KnownRuleCommands {
		if c == k {
			return c
		}
	}
	return ""
}

// PutPermission sets a rule of guildID, replacing the rule of the same
// command and role; created reports a new rule. Audited as
// discord.permission_set.
func (s *Service) PutPermission(ctx context.Context, a Actor, guildID string, in PermissionInput) (Permission, bool, error) {
	cmd := NormalizeRuleCommand(in.Command)
	if cmd == "" {
		return Permission{}, false, validation("command: must be one of %s", strings.Join(KnownRuleCommands, ", "))
	}
	if !isSnowflake(in.RoleID) {
		return Permission{}, false, validation("roleId: must be a Discord role id (the guild id for @everyone)")
	}
	allowed := in.Allowed == nil || *in.Allowed
	srv, err := s.findServer(ctx, a, guildID)
	if err != nil {
		return Permission{}, false, err
	}
	defer s.guilds.forget(guildID)
	p, created, err := s.repo.PutCommandPermission(ctx, srv.ID, cmd, in.RoleID, allowed, func(ctx context.Context, p store.CommandPermission) error {
		return s.audit.Record(ctx, a.event("discord.permission_set", "bot_command_permission", p.ID,
			map[string]any{"guild_id": guildID, "command": cmd, "role_id": in.RoleID, "allowed": allowed}))
	})
	if err != nil {
		return Permission{}, false, err
	}
	return permissionOf(p), created, nil
}

// RemovePermission deletes rule id of guildID. Audited as
// discord.permission_remove.
func (s *Service) RemovePermission(ctx context.Context, a Actor, guildID, id string) error {
	if uuid.Validate(id) != nil {
		return validation("id: must be a UUID")
	}
	srv, err := s.findServer(ctx, a, guildID)
	if err != nil {
		return err
	}
	defer s.guilds.forget(guildID)
	err = s.repo.RemoveCommandPermission(ctx, srv.ID, id, func(ctx context.Context) error {
		return s.audit.Record(ctx, a.event("discord.permission_remove", "bot_command_permission", id, map[string]any{"guild_id": guildID}))
	})
	if errors.Is(err, store.ErrNotFound) {
		return vectabase.Errorf(vectabase.ENOTFOUND, "no such permission rule")
	}
	return err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
