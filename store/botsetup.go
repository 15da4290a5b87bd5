package store

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// ErrGuildTaken is returned when a guild is linked to a store of another
// owner: only that owner may unlink it.
var ErrGuildTaken = errors.New("store: guild linked to another owner's store")

// Install outcomes.
const (
	InstallCreated   = "created"
	InstallUnchanged = "unchanged"
	InstallMoved     = "moved"
)

// InstallServer is a guild the bot was added to, for a store.
type InstallServer struct {
	GuildID   string
	GuildName *string
	StoreID   string
	UserID    string // the store's owner who installed the bot
	Operator  bool   // the local operator: may move a guild between any stores
}

// InstallDiscordServer links guild in.GuildID to store in.StoreID, which
// in.UserID must own (else ErrNotFound). A guild belongs to one store at a
// time: a guild linked to another store moves only when the same user owns
// that store too (or for the operator), and then loses its product
// bindings and whitelist system, which belonged to the old store; otherwise
// ErrGuildTaken. beforeCommit (which audits) gets the outcome.
func (b *Bot) InstallDiscordServer(ctx context.Context, in InstallServer, beforeCommit func(context.Context, DiscordServer, string) error) (DiscordServer, string, error) {
	var out DiscordServer
	var outcome string
	err := b.db.InTx(ctx, func(tx pgx.Tx) error {
		var owner string
		if err := tx.QueryRow(ctx, `SELECT owner_id FROM stores WHERE id = $1 FOR SHARE`, in.StoreID).Scan(&owner); err != nil {
			return err
		}
		if !in.Operator && owner != in.UserID {
			return ErrNotFound
		}
		cur, err := scanDiscordServer(tx.QueryRow(ctx, `SELECT `+discordServerColumns+` FROM discord_servers s WHERE s.guild_id = $1 FOR UPDATE`, in.GuildID))
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			outcome = InstallCreated
			out, err = scanDiscordServer(tx.QueryRow(ctx, `INSERT INTO discord_servers AS s (guild_id, owner_id, store_id, guild_name)
				VALUES ($1, $2, $3, $4) RETURNING `+discordServerColumns, in.GuildID, owner, in.StoreID, in.GuildName))
			if err != nil {
				return err
			}
		case err != nil:
			return err
		case cur.StoreID != nil && *cur.StoreID == in.StoreID:
			outcome = InstallUnchanged
			out, err = scanDiscordServer(tx.QueryRow(ctx, `UPDATE discord_servers AS s SET guild_name = coalesce($2, s.guild_name)
				WHERE s.id = $1 RETURNING `+discordServerColumns, cur.ID, in.GuildName))
			if err != nil {
				return err
			}
		default:
			if !in.Operator && cur.OwnerID != owner {
				return ErrGuildTaken
			}
			outcome = InstallMoved
			if _, err := tx.Exec(ctx, `DELETE FROM bot_products WHERE discord_server_id = $1`, cur.ID); err != nil {
				return err
			}
			out, err = scanDiscordServer(tx.QueryRow(ctx, `UPDATE discord_servers AS s SET store_id = $2, owner_id = $3,
				whitelist_system_id = NULL, guild_name = coalesce($4, s.guild_name)
				WHERE s.id = $1 RETURNING `+discordServerColumns, cur.ID, in.StoreID, owner, in.GuildName))
			if err != nil {
				return err
			}
		}
		return beforeCommit(ctx, out, outcome)
	})
	if err != nil {
		return DiscordServer{}, "", MapError(err)
	}
	return out, outcome, nil
}

// ListDiscordServers returns the guilds of ownerID ("" for every owner),
// of storeID only when it is set, oldest first.
func (b *Bot) ListDiscordServers(ctx context.Context, ownerID, storeID string) ([]DiscordServer, error) {
	rows, err := b.db.Pool.Query(ctx, `SELECT `+discordServerColumns+` FROM discord_servers s
		WHERE ($1 = '' OR s.owner_id::text = $1) AND ($2 = '' OR s.store_id::text = $2) ORDER BY s.created_at, s.id`, ownerID, storeID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (DiscordServer, error) { return scanDiscordServer(r) })
}

// OwnedDiscordServer returns guild guildID when ownerID owns it ("": any
// owner); otherwise ErrNotFound, so that a guild of someone else looks
// like no guild.
func (b *Bot) OwnedDiscordServer(ctx context.Context, ownerID, guildID string) (DiscordServer, error) {
	s, err := scanDiscordServer(b.db.Pool.QueryRow(ctx, `SELECT `+discordServerColumns+` FROM discord_servers s
		WHERE s.guild_id = $1 AND ($2 = '' OR s.owner_id::text = $2)`, guildID, ownerID))
	return s, MapError(err)
}

// SetWhitelistSystem links server's guild to whitelist system systemID
// (nil: none). The system must belong to the guild's owner (else
// ErrNotFound). beforeCommit audits.
func (b *Bot) SetWhitelistSystem(ctx context.Context, server DiscordServer, systemID *string, beforeCommit func(context.Context) error) (DiscordServer, error) {
	var out DiscordServer
	err := b.db.InTx(ctx, func(tx pgx.Tx) error {
		if systemID != nil {
			if err := tx.QueryRow(ctx, `SELECT id FROM whitelist_systems WHERE id = $1 AND owner_id = $2`, *systemID, server.OwnerID).Scan(new(string)); err != nil {
				return err
			}
		}
		var err error
		out, err = scanDiscordServer(tx.QueryRow(ctx, `UPDATE discord_servers AS s SET whitelist_system_id = $2 WHERE s.id = $1 RETURNING `+discordServerColumns, server.ID, systemID))
		if err != nil {
			return err
		}
		return beforeCommit(ctx)
	})
	return out, MapError(err)
}

// DeleteDiscordServer unlinks server's guild with its bindings and rules.
func (b *Bot) DeleteDiscordServer(ctx context.Context, server DiscordServer, beforeCommit func(context.Context) error) error {
	return MapError(b.db.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM discord_servers WHERE id = $1`, server.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return beforeCommit(ctx)
	}))
}

// AddBotProduct binds product productID to server with the role buyers get
// (nil: none). The product must belong to the guild's store (or, for a
// guild without one, to its owner): else ErrNotFound. A product already
// bound is ErrConflict.
func (b *Bot) AddBotProduct(ctx context.Context, server DiscordServer, productID string, roleID *string, beforeCommit func(context.Context, BotProduct) error) (BotProduct, error) {
	var p BotProduct
	err := b.db.InTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT p.id FROM products p JOIN stores st ON st.id = p.store_id
			WHERE p.id = $1 AND (st.id = $2 OR ($2 IS NULL AND st.owner_id = $3))`, productID, server.StoreID, server.OwnerID).Scan(new(string)); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `INSERT INTO bot_products AS b (discord_server_id, product_id, role_id) VALUES ($1, $2, $3)
			RETURNING b.id, b.product_id, (SELECT name FROM products WHERE id = b.product_id), b.role_id`,
			server.ID, productID, roleID).Scan(&p.ID, &p.ProductID, &p.ProductName, &p.RoleID)
		if err != nil {
			return err
		}
		return beforeCommit(ctx, p)
	})
	return p, MapError(err)
}

// RemoveBotProduct deletes binding id of server (ErrNotFound if none).
func (b *Bot) RemoveBotProduct(ctx context.Context, server DiscordServer, id string, beforeCommit func(context.Context) error) error {
	return MapError(b.db.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM bot_products WHERE id = $1 AND discord_server_id = $2`, id, server.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return beforeCommit(ctx)
	}))
}

// ListCommandPermissions returns every rule of server, by command and role.
func (b *Bot) ListCommandPermissions(ctx context.Context, serverID string) ([]CommandPermission, error) {
	rows, err := b.db.Pool.Query(ctx, `SELECT id, command, role_id, allowed FROM bot_command_permissions
		WHERE discord_server_id = $1 ORDER BY command, role_id`, serverID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (CommandPermission, error) {
		var p CommandPermission
		err := r.Scan(&p.ID, &p.Command, &p.RoleID, &p.Allowed)
		return p, err
	})
}

// PutCommandPermission allows or denies command to roleID in serverID,
// replacing an earlier rule for the pair; created says whether it is new.
func (b *Bot) PutCommandPermission(ctx context.Context, serverID, command, roleID string, allowed bool, beforeCommit func(context.Context, CommandPermission) error) (CommandPermission, bool, error) {
	var p CommandPermission
	var created bool
	err := b.db.InTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO bot_command_permissions AS p (discord_server_id, command, role_id, allowed) VALUES ($1, $2, $3, $4)
			ON CONFLICT (discord_server_id, command, role_id) DO UPDATE SET allowed = excluded.allowed
			RETURNING p.id, p.command, p.role_id, p.allowed, xmax = 0`, serverID, command, roleID, allowed).
			Scan(&p.ID, &p.Command, &p.RoleID, &p.Allowed, &created)
		if err != nil {
			return err
		}
		return beforeCommit(ctx, p)
	})
	return p, created, MapError(err)
}

// RemoveCommandPermission deletes rule id of serverID (ErrNotFound if none).
func (b *Bot) RemoveCommandPermission(ctx context.Context, serverID, id string, beforeCommit func(context.Context) error) error {
	return MapError(b.db.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM bot_command_permissions WHERE id = $1 AND discord_server_id = $2`, id, serverID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return beforeCommit(ctx)
	}))
}
