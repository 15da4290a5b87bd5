package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring"
)

// Errors of RetryGrant.
var (
	// ErrGrantNotFailed: only a failed grant can be retried.
	ErrGrantNotFailed = errors.New("store: role grant is not failed")
	// ErrGrantNotOwed: the change the grant belonged to was taken back (an
	// add whose member is no longer recorded with that role's product, or
	// a removal whose member is recorded again), so the role is not owed.
	ErrGrantNotOwed = errors.New("store: role grant no longer owed")
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
// Discord, committed with the change it belongs to. It never holds the
// interaction token (see GrantInteraction).
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
	InteractionID *string
	LastStatus    *int // Discord's last HTTP status; nil: none
	// CanReport: the interaction's reply can still be edited (a token is
	// kept and has not expired).
	CanReport bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

const roleGrantColumns = `id, discord_server_id, guild_id, discord_user_id, role_id, action, state, attempts, command,
	interaction_id, last_status, coalesce(interaction_token IS NOT NULL AND token_expires_at > now(), false), created_at, updated_at`

func scanRoleGrant(row pgx.Row) (RoleGrant, error) {
	var g RoleGrant
	err := row.Scan(&g.ID, &g.ServerID, &g.GuildID, &g.DiscordUserID, &g.RoleID, &g.Action, &g.State, &g.Attempts, &g.Command,
		&g.InteractionID, &g.LastStatus, &g.CanReport, &g.CreatedAt, &g.UpdatedAt)
	return g, err
}

// GrantInteraction is the interaction a role change is owed to. While its
// token is valid (ExpiresAt; Discord keeps it for 15 minutes) the
// interaction's reply can be edited to tell the member how the change
// ended. The token is a secret: stored encrypted, cleared once the grant is
// finished or it expires, and redacted by String.
type GrantInteraction struct {
	ID            string
	ApplicationID string
	Token         string
	ExpiresAt     time.Time
}

// String describes g without its token.
func (g GrantInteraction) String() string {
	return fmt.Sprintf("store.GrantInteraction{ID:%q ApplicationID:%q Token:[redacted] ExpiresAt:%s}", g.ID, g.ApplicationID, g.ExpiresAt.Format(time.RFC3339))
}

// GoString is String, so %#v redacts too.
func (g GrantInteraction) GoString() string { return g.String() }

func grantTokenLoc(id string) keyring.Location {
	return keyring.Location{Table: "bot_role_grants", Column: "interaction_token", RowID: id}
}

// insertGrant records a pending role change owed to in; its token is kept
// (encrypted) only when it can still be used.
func (b *Bot) insertGrant(ctx context.Context, tx pgx.Tx, server DiscordServer, userID, roleID, action, command string, in GrantInteraction) (RoleGrant, error) {
	id := uuid.NewString()
	var iid, app *string
	var token []byte
	var expires *time.Time
	if in.ID != "" {
		iid = &in.ID
	}
	if in.Token != "" && in.ApplicationID != "" && time.Now().Before(in.ExpiresAt) {
		ct, err := b.kr.Encrypt(ctx, grantTokenLoc(id), []byte(in.Token))
		if err != nil {
			return RoleGrant{}, err
		}
		token, app, expires = ct, &in.ApplicationID, &in.ExpiresAt
	}
	return scanRoleGrant(tx.QueryRow(ctx, `INSERT INTO bot_role_grants (id, discord_server_id, guild_id, discord_user_id, role_id, action, command,
			interaction_id, application_id, interaction_token, token_expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING `+roleGrantColumns,
		id, server.ID, server.GuildID, userID, roleID, action, command, iid, app, token, expires))
}

// Undo names the rows a command wrote that a rollback takes back.
type Undo struct {
	DeleteEntryID  *string // a whitelist_users row the command created
	UnlinkEntryID  *string // a whitelist_users row the command linked to a Discord id
	DeleteRecordID *string // a bot_whitelisted_users row the command created
}

// FinishGrant records the outcome of grant id: state (GrantDone or
// GrantFailed; GrantPending to leave it for a later retry), the attempts
// made so far and Discord's last HTTP status (0: none). A finished grant
// gives up its interaction token: FinishGrant returns the interaction
// (token decrypted) when it could still be told, else nil; of concurrent
// finishers only one gets it.
func (b *Bot) FinishGrant(ctx context.Context, id, state string, attempts, lastStatus int) (*GrantInteraction, error) {
	var st *int
	if lastStatus != 0 {
		st = &lastStatus
	}
	var iid, app *string
	var token []byte
	var expires *time.Time
	err := b.db.Pool.QueryRow(ctx, `UPDATE bot_role_grants g SET state = $2, attempts = $3, last_status = $4, updated_at = now(),
			interaction_token = CASE WHEN $2 = 'pending' THEN g.interaction_token END
		FROM (SELECT id, interaction_id, application_id, interaction_token, token_expires_at FROM bot_role_grants WHERE id = $1 FOR UPDATE) old
		WHERE g.id = old.id
		RETURNING old.interaction_id, old.application_id, CASE WHEN $2 <> 'pending' AND old.token_expires_at > now() THEN old.interaction_token END, old.token_expires_at`,
		id, state, attempts, st).Scan(&iid, &app, &token, &expires)
	if err != nil {
		return nil, MapError(err)
	}
	if token == nil || app == nil || expires == nil {
		return nil, nil
	}
	pt, err := b.kr.Decrypt(ctx, grantTokenLoc(id), token)
	if err != nil {
		return nil, err
	}
	in := &GrantInteraction{ApplicationID: *app, Token: string(pt), ExpiresAt: *expires}
	if iid != nil {
		in.ID = *iid
	}
	return in, nil
}

// ClearExpiredGrantTokens forgets the interaction tokens that expired.
func (b *Bot) ClearExpiredGrantTokens(ctx context.Context) (int64, error) {
	tag, err := b.db.Pool.Exec(ctx, `UPDATE bot_role_grants SET interaction_token = NULL
		WHERE interaction_token IS NOT NULL AND token_expires_at <= now()`)
	return tag.RowsAffected(), err
}

// ListGrants returns the role grants of server serverID in state (""
// for every state), newest first, paged.
func (b *Bot) ListGrants(ctx context.Context, serverID, state string, p Page) ([]RoleGrant, *Cursor, error) {
	t, id := pageArgs(p)
	rows, err := b.db.Pool.Query(ctx, `SELECT `+roleGrantColumns+` FROM bot_role_grants g
		WHERE g.discord_server_id = $1 AND ($5 = '' OR g.state = $5)`+pageClause("g", 2), serverID, t, id, p.Limit+1, state)
	if err != nil {
		return nil, nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RoleGrant, error) { return scanRoleGrant(r) })
	if err != nil {
		return nil, nil, err
	}
	items, next := trimPage(out, p.Limit, func(g RoleGrant) Cursor { return Cursor{CreatedAt: g.CreatedAt, ID: uuid.MustParse(g.ID)} })
	return items, next, nil
}

// RetryGrant makes failed grant id of server serverID pending again, with
// its attempts reset, and calls beforeCommit (which audits) inside the same
// transaction; the caller then makes the Discord call. A grant of another
// guild (or none) is ErrNotFound, one not failed ErrGrantNotFailed, one
// whose change was taken back ErrGrantNotOwed.
func (b *Bot) RetryGrant(ctx context.Context, serverID, id string, beforeCommit func(context.Context, RoleGrant) error) (RoleGrant, error) {
	var g RoleGrant
	err := b.db.InTx(ctx, func(tx pgx.Tx) error {
		var err error
		if g, err = scanRoleGrant(tx.QueryRow(ctx, `SELECT `+roleGrantColumns+` FROM bot_role_grants
			WHERE id = $1 AND discord_server_id = $2 FOR UPDATE`, id, serverID)); err != nil {
			return err
		}
		if g.State != GrantFailed {
			return ErrGrantNotFailed
		}
		// The member's records decide whether the role is owed: an add
		// rolled back (or a member since removed) owes nothing, nor does a
		// removal whose member was recorded with that role again.
		var recorded bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM bot_whitelisted_users w JOIN bot_products p ON p.id = w.bot_product_id
			WHERE w.discord_server_id = $1 AND w.discord_user_id = $2 AND p.role_id = $3)`, serverID, g.DiscordUserID, g.RoleID).Scan(&recorded); err != nil {
			return err
		}
		if recorded != (g.Action == GrantAdd) {
			return ErrGrantNotOwed
		}
		if g, err = scanRoleGrant(tx.QueryRow(ctx, `UPDATE bot_role_grants SET state = 'pending', attempts = 0, last_status = NULL, updated_at = now()
			WHERE id = $1 RETURNING `+roleGrantColumns, id)); err != nil {
			return err
		}
		return beforeCommit(ctx, g)
	})
	return g, MapError(err)
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
			if _, err := tx.Exec(ctx, `UPDATE bot_role_grants SET state = 'failed', interaction_token = NULL, updated_at = now() WHERE id = ANY($1::uuid[])`, grantIDs); err != nil {
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

// FindGrant returns grant id of server serverID, or ErrNotFound.
func (b *Bot) FindGrant(ctx context.Context, serverID, id string) (RoleGrant, error) {
	g, err := scanRoleGrant(b.db.Pool.QueryRow(ctx, `SELECT `+roleGrantColumns+` FROM bot_role_grants WHERE id = $1 AND discord_server_id = $2`, id, serverID))
	return g, MapError(err)
}
