package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Role grant actions and states (bot_role_grants).
const (
	GrantAdd    = "add"
	GrantRemove = "remove"

	GrantPending = "pending"
	GrantDone    = "done"
	GrantFailed  = "failed"
)

// RoleGrant is a row of bot_role_grants: a role change the bot owes
// Discord, committed with the change it belongs to.
type RoleGrant struct {
	ID            string
	ServerID      string
	GuildID       string
	DiscordUserID string
	RoleID        string
	Action        string // GrantAdd or GrantRemove
	State         string
	Attempts      int
	Command       string
}

const roleGrantColumns = `id, discord_server_id, guild_id, discord_user_id, role_id, action, state, attempts, command`

func scanRoleGrant(row pgx.Row) (RoleGrant, error) {
	var g RoleGrant
	err := row.Scan(&g.ID, &g.ServerID, &g.GuildID, &g.DiscordUserID, &g.RoleID, &g.Action, &g.State, &g.Attempts, &g.Command)
	return g, err
}

func insertGrant(ctx context.Context, tx pgx.Tx, server DiscordServer, userID, roleID, action, command, interactionID string) (RoleGrant, error) {
	var iid *string
	if interactionID != "" {
		iid = &interactionID
	}
	return scanRoleGrant(tx.QueryRow(ctx, `INSERT INTO bot_role_grants (discord_server_id, guild_id, discord_user_id, role_id, action, command, interaction_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+roleGrantColumns, server.ID, server.GuildID, userID, roleID, action, command, iid))
}

// Undo names the rows a command wrote that a rollback takes back.
type Undo struct {
	DeleteEntryID  *string // a whitelist_users row the command created
	UnlinkEntryID  *string // a whitelist_users row the command linked to a Discord id
	DeleteRecordID *string // a bot_whitelisted_users row the command created
}

// FinishGrant records the outcome of grant id: state (GrantDone or
// GrantFailed; GrantPending to leave it for a later retry), the attempts
// made so far and Discord's last HTTP status (0: none).
func (b *Bot) FinishGrant(ctx context.Context, id, state string, attempts, lastStatus int) error {
	var st *int
	if lastStatus != 0 {
		st = &lastStatus
	}
	_, err := b.db.Pool.Exec(ctx, `UPDATE bot_role_grants SET state = $2, attempts = $3, last_status = $4, updated_at = now() WHERE id = $1`,
		id, state, attempts, st)
	return err
}

// RollbackGrants takes back what a command wrote (undo) and marks its
// grants failed, calling beforeCommit (which audits) inside the same
// transaction. Rows changed meanwhile by someone else are left alone.
func (b *Bot) RollbackGrants(ctx context.Context, undo Undo, grantIDs []string, discordUserID string, beforeCommit func(context.Context) error) error {
	return MapError(b.db.InTx(ctx, func(tx pgx.Tx) error {
		if undo.DeleteRecordID != nil {
			if _, err := tx.Exec(ctx, `DELETE FROM bot_whitelisted_users WHERE id = $1`, *undo.DeleteRecordID); err != nil {
				return err
			}
		}
		if undo.DeleteEntryID != nil {
			if _, err := tx.Exec(ctx, `DELETE FROM whitelist_users WHERE id = $1 AND discord_id = $2`, *undo.DeleteEntryID, discordUserID); err != nil {
				return err
			}
		}
		if undo.UnlinkEntryID != nil {
			if _, err := tx.Exec(ctx, `UPDATE whitelist_users SET discord_id = NULL WHERE id = $1 AND discord_id = $2`, *undo.UnlinkEntryID, discordUserID); err != nil {
				return err
			}
		}
		if len(grantIDs) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE bot_role_grants SET state = 'failed', updated_at = now() WHERE id = ANY($1::uuid[])`, grantIDs); err != nil {
				return err
			}
		}
		return beforeCommit(ctx)
	}))
}

// ClaimStaleGrants returns up to limit grants still pending after olderThan
// (their command's process died, or Discord stayed down), marking them
// touched so that another instance skips them for olderThan.
func (b *Bot) ClaimStaleGrants(ctx context.Context, olderThan time.Duration, limit int) ([]RoleGrant, error) {
	rows, err := b.db.Pool.Query(ctx, `UPDATE bot_role_grants SET updated_at = now() WHERE id IN (
			SELECT id FROM bot_role_grants WHERE state = 'pending' AND updated_at < now() - $1::interval
			ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
		RETURNING `+roleGrantColumns, olderThan, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (RoleGrant, error) { return scanRoleGrant(r) })
}

// CommandContext is what every command needs before it runs, read in one
// round trip: whether this interaction id is new, the guild's registration
// (nil: not set up) and the permission rules that match the caller.
type CommandContext struct {
	Fresh  bool
	Server *DiscordServer
	Rules  []CommandPermission
}

// BeginCommand claims interactionID when claim is set (a second claim of
// the same id is not Fresh: Discord delivered it again; unclaimed reads are
// always Fresh) and reads guildID's registration and its
// bot_command_permissions rows for any of commands and roleIDs.
func (b *Bot) BeginCommand(ctx context.Context, interactionID string, claim bool, guildID string, commands, roleIDs []string) (CommandContext, error) {
	var out CommandContext
	var fresh int
	var s DiscordServer
	var sid *string
	var cmds, roles []string
	var allowed []bool
	err := b.db.Pool.QueryRow(ctx, `WITH claim AS (
			INSERT INTO discord_interactions (id) SELECT $1 WHERE $5 ON CONFLICT (id) DO NOTHING RETURNING 1)
		SELECT CASE WHEN $5 THEN (SELECT count(*) FROM claim) ELSE 1 END, s.id, coalesce(s.guild_id, ''), coalesce(s.owner_id::text, ''), s.store_id, s.whitelist_system_id, s.guild_name, s.log_channel_id,
			s.webhook_url IS NOT NULL, coalesce(s.created_at, 'epoch'),
			coalesce(r.cmds, '{}'), coalesce(r.roles, '{}'), coalesce(r.allowed, '{}')
		FROM (SELECT 1) one
		LEFT JOIN discord_servers s ON s.guild_id = $2
		LEFT JOIN LATERAL (SELECT array_agg(p.command) cmds, array_agg(p.role_id) roles, array_agg(p.allowed) allowed
			FROM bot_command_permissions p WHERE p.discord_server_id = s.id AND p.command = ANY($3) AND p.role_id = ANY($4)) r ON true`,
		interactionID, guildID, commands, roleIDs, claim).Scan(&fresh, &sid, &s.GuildID, &s.OwnerID, &s.StoreID, &s.WhitelistSystemID, &s.GuildName,
		&s.LogChannelID, &s.HasWebhook, &s.CreatedAt, &cmds, &roles, &allowed)
	if err != nil {
		return out, MapError(err)
	}
	out.Fresh = fresh == 1
	if sid != nil {
		s.ID = *sid
		out.Server = &s
	}
	for i := range cmds {
		out.Rules = append(out.Rules, CommandPermission{Command: cmds[i], RoleID: roles[i], Allowed: allowed[i]})
	}
	return out, nil
}

// PurgeInteractions deletes the interaction ids received before before.
func (b *Bot) PurgeInteractions(ctx context.Context, before time.Time) (int64, error) {
	tag, err := b.db.Pool.Exec(ctx, `DELETE FROM discord_interactions WHERE received_at < $1`, before)
	return tag.RowsAffected(), err
}

// GuildConfig reads guildID's registration (nil: not set up) and every one
// of its command rules, in one round trip.
func (b *Bot) GuildConfig(ctx context.Context, guildID string) (*DiscordServer, []CommandPermission, error) {
	var s DiscordServer
	var sid *string
	var cmds, roles []string
	var allowed []bool
	err := b.db.Pool.QueryRow(ctx, `SELECT s.id, coalesce(s.guild_id, ''), coalesce(s.owner_id::text, ''), s.store_id, s.whitelist_system_id, s.guild_name, s.log_channel_id,
			s.webhook_url IS NOT NULL, coalesce(s.created_at, 'epoch'),
			coalesce(r.cmds, '{}'), coalesce(r.roles, '{}'), coalesce(r.allowed, '{}')
		FROM (SELECT 1) one
		LEFT JOIN discord_servers s ON s.guild_id = $1
		LEFT JOIN LATERAL (SELECT array_agg(p.command) cmds, array_agg(p.role_id) roles, array_agg(p.allowed) allowed
			FROM bot_command_permissions p WHERE p.discord_server_id = s.id) r ON true`, guildID).
		Scan(&sid, &s.GuildID, &s.OwnerID, &s.StoreID, &s.WhitelistSystemID, &s.GuildName, &s.LogChannelID, &s.HasWebhook, &s.CreatedAt, &cmds, &roles, &allowed)
	if err != nil {
		return nil, nil, MapError(err)
	}
	var rules []CommandPermission
	for i := range cmds {
		rules = append(rules, CommandPermission{Command: cmds[i], RoleID: roles[i], Allowed: allowed[i]})
	}
	if sid == nil {
		return nil, nil, nil
	}
	s.ID = *sid
	return &s, rules, nil
}
