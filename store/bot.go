package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/vectabase/vectabase/keyring"
)

// ErrAlreadyRedeemed is returned when a license key is already linked to a
// different Discord account.
var ErrAlreadyRedeemed = errors.New("store: license key linked to another account")

// ErrExpired is returned when a license key's whitelist entry has expired or
// its whitelist system is inactive.
var ErrExpired = errors.New("store: license expired or system inactive")

// Bot is the repository of the Discord whitelist bot: discord_servers,
// bot_products, bot_whitelisted_users and bot_command_permissions, and the
// whitelist_users entries the bot makes in a guild's whitelist system. The
// webhook URL is encrypted here; license keys go through the marketplace
// repository's blind index so both areas find the same keys.
type Bot struct {
	db *DB
	kr *keyring.Keyring
	mk *Marketplace
}

// NewBot returns the bot repository on db, encrypting with kr.
func NewBot(db *DB, kr *keyring.Keyring) *Bot {
	return &Bot{db: db, kr: kr, mk: NewMarketplace(db, kr)}
}

// DiscordServer is a row of discord_servers without its webhook URL (a
// secret: read it with WebhookURL).
type DiscordServer struct {
	ID                string
	GuildID           string
	OwnerID           string
	StoreID           *string // nil: registered before guilds belonged to stores
	WhitelistSystemID *string
	GuildName         *string
	LogChannelID      *string
	HasWebhook        bool
	CreatedAt         time.Time
}

// NewDiscordServer is a guild to register with the bot.
type NewDiscordServer struct {
	GuildID           string
	OwnerID           string
	StoreID           *string
	WhitelistSystemID *string
	GuildName         *string
	LogChannelID      *string
	WebhookURL        string // empty: none
}

// BotProduct is a row of bot_products with its product's name.
type BotProduct struct {
	ID          string
	ProductID   string
	ProductName string
	RoleID      *string
}

// CommandPermission is a row of bot_command_permissions.
type CommandPermission struct {
	ID      string
	Command string
	RoleID  string
	Allowed bool
}

// BotWhitelisted is a row of bot_whitelisted_users with its product's name.
type BotWhitelisted struct {
	ID            string
	DiscordUserID string
	ProductName   *string
	RobloxUserID  *int64
	WhitelistedBy *string
	CreatedAt     time.Time
}

func webhookLoc(id string) keyring.Location {
	return keyring.Location{Table: "discord_servers", Column: "webhook_url", RowID: id}
}

const discordServerColumns = `s.id, s.guild_id, s.owner_id, s.store_id, s.whitelist_system_id, s.guild_name, s.log_channel_id, s.webhook_url IS NOT NULL, s.created_at`

func scanDiscordServer(row pgx.Row) (DiscordServer, error) {
	var s DiscordServer
	err := row.Scan(&s.ID, &s.GuildID, &s.OwnerID, &s.StoreID, &s.WhitelistSystemID, &s.GuildName, &s.LogChannelID, &s.HasWebhook, &s.CreatedAt)
	return s, err
}

// CreateDiscordServer registers a guild; the webhook URL is stored
// encrypted. A guild already registered is ErrConflict.
func (b *Bot) CreateDiscordServer(ctx context.Context, in NewDiscordServer) (DiscordServer, error) {
	id := uuid.NewString()
	var webhook []byte
	if in.WebhookURL != "" {
		ct, err := b.kr.Encrypt(ctx, webhookLoc(id), []byte(in.WebhookURL))
		if err != nil {
			return DiscordServer{}, err
		}
		webhook = ct
	}
	s, err := scanDiscordServer(b.db.Pool.QueryRow(ctx, `INSERT INTO discord_servers AS s (id, guild_id, owner_id, store_id, whitelist_system_id, guild_name, log_channel_id, webhook_url)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+discordServerColumns,
		id, in.GuildID, in.OwnerID, in.StoreID, in.WhitelistSystemID, in.GuildName, in.LogChannelID, webhook))
	return s, MapError(err)
}

// FindDiscordServer returns the registered guild guildID, or ErrNotFound.
func (b *Bot) FindDiscordServer(ctx context.Context, guildID string) (DiscordServer, error) {
	s, err := scanDiscordServer(b.db.Pool.QueryRow(ctx, `SELECT `+discordServerColumns+` FROM discord_servers s WHERE s.guild_id = $1`, guildID))
	return s, MapError(err)
}

// WebhookURL decrypts the webhook URL of server id; "" when it has none.
func (b *Bot) WebhookURL(ctx context.Context, id string) (string, error) {
	var ct []byte
	if err := b.db.Pool.QueryRow(ctx, `SELECT webhook_url FROM discord_servers WHERE id = $1`, id).Scan(&ct); err != nil {
		return "", MapError(err)
	}
	if ct == nil {
		return "", nil
	}
	pt, err := b.kr.Decrypt(ctx, webhookLoc(id), ct)
	if err != nil {
		return "", err
	}
	return string(pt), nil
}

// CreateBotProduct links product productID to server serverID with the
// Discord role that buyers get (nil: none). A product already linked is
// ErrConflict.
func (b *Bot) CreateBotProduct(ctx context.Context, serverID, productID string, roleID *string) (BotProduct, error) {
	var p BotProduct
	err := b.db.Pool.QueryRow(ctx, `INSERT INTO bot_products AS b (discord_server_id, product_id, role_id) VALUES ($1, $2, $3)
		RETURNING b.id, b.product_id, (SELECT name FROM products WHERE id = b.product_id), b.role_id`,
		serverID, productID, roleID).Scan(&p.ID, &p.ProductID, &p.ProductName, &p.RoleID)
	return p, MapError(err)
}

// ListBotProducts returns the products linked to server serverID, by name.
func (b *Bot) ListBotProducts(ctx context.Context, serverID string) ([]BotProduct, error) {
	rows, err := b.db.Pool.Query(ctx, `SELECT b.id, b.product_id, p.name, b.role_id FROM bot_products b
		JOIN products p ON p.id = b.product_id WHERE b.discord_server_id = $1 ORDER BY p.name, b.id`, serverID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (BotProduct, error) {
		var p BotProduct
		err := r.Scan(&p.ID, &p.ProductID, &p.ProductName, &p.RoleID)
		return p, err
	})
}

// SetCommandPermission allows or denies command to role roleID in server
// serverID, replacing an earlier rule for the same pair.
func (b *Bot) SetCommandPermission(ctx context.Context, serverID, command, roleID string, allowed bool) error {
	_, err := b.db.Pool.Exec(ctx, `INSERT INTO bot_command_permissions (discord_server_id, command, role_id, allowed) VALUES ($1, $2, $3, $4)
		ON CONFLICT (discord_server_id, command, role_id) DO UPDATE SET allowed = excluded.allowed`, serverID, command, roleID, allowed)
	return MapError(err)
}

// CommandPermissions returns the rules of server serverID for any of
// commands and any of roleIDs.
func (b *Bot) CommandPermissions(ctx context.Context, serverID string, commands, roleIDs []string) ([]CommandPermission, error) {
	rows, err := b.db.Pool.Query(ctx, `SELECT command, role_id, allowed FROM bot_command_permissions
		WHERE discord_server_id = $1 AND command = ANY($2) AND role_id = ANY($3)`, serverID, commands, roleIDs)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (CommandPermission, error) {
		var p CommandPermission
		err := r.Scan(&p.Command, &p.RoleID, &p.Allowed)
		return p, err
	})
}

// BotWhitelistAdd is one /whitelist add: a Discord member whitelisted in a
// guild's whitelist system under a Roblox account.
type BotWhitelistAdd struct {
	Server         DiscordServer
	Product        *BotProduct // nil: no product (no role)
	DiscordUserID  string
	RobloxUserID   int64
	RobloxUsername string
	WhitelistedBy  string           // the Discord id of the member who ran the command
	LicenseKey     string           // normalized; stored encrypted with its blind index (unused without a system)
	Interaction    GrantInteraction // the interaction that asked, kept on the role grant
}

// Change is what a bot command wrote in one transaction: enough to take it
// back (Undo) when Discord never confirms the role change it needs, and
// the role changes owed to Discord (bot_role_grants rows, pending).
type Change struct {
	Entry    *WhitelistUser // the whitelist entry made or linked (nil: none)
	Undo     Undo
	Grants   []RoleGrant
	Repeated bool // nothing new was recorded (a repeated /redeem)
}

// AddBotWhitelist records in.DiscordUserID in bot_whitelisted_users and,
// when the guild has a whitelist system, creates their entry there, with a
// pending role grant for the product's role; then it calls beforeCommit
// (which audits) inside the same transaction: when it fails nothing is
// kept. No outside call runs inside: the caller grants the role after the
// commit and takes the change back with RollbackGrants if Discord refuses.
// A full system is ErrFull, a member already recorded in the guild (or a
// Roblox account already in the system) ErrConflict, a guild deleted
// meanwhile ErrNotFound.
func (b *Bot) AddBotWhitelist(ctx context.Context, in BotWhitelistAdd, beforeCommit func(context.Context) error) (Change, error) {
	id := uuid.NewString()
	var ct, bidx []byte
	if in.Server.WhitelistSystemID != nil {
		var err error
		if ct, err = b.kr.Encrypt(ctx, licenseLoc(id), []byte(in.LicenseKey)); err != nil {
			return Change{}, err
		}
		if bidx, err = b.mk.LicenseKeyIndex(in.LicenseKey); err != nil {
			return Change{}, err
		}
	}
	var productID *string
	if in.Product != nil {
		productID = &in.Product.ID
	}
	var ch Change
	err := b.db.InTx(ctx, func(tx pgx.Tx) error {
		ch = Change{}
		// The guild row is locked so that two adds of one member cannot both
		// pass the check below (NULL products never collide in the unique key).
		if err := tx.QueryRow(ctx, `SELECT id FROM discord_servers WHERE id = $1 FOR UPDATE`, in.Server.ID).Scan(new(string)); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM bot_whitelisted_users WHERE discord_server_id = $1 AND discord_user_id = $2`, in.Server.ID, in.DiscordUserID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrConflict
		}
		if sys := in.Server.WhitelistSystemID; sys != nil {
			if err := lockSystemForInsert(ctx, tx, *sys); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM whitelist_users WHERE system_id = $1 AND discord_id = $2`, *sys, in.DiscordUserID).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return ErrConflict
			}
			w, err := scanWLUser(tx.QueryRow(ctx, `INSERT INTO whitelist_users AS u (id, system_id, roblox_user_id, roblox_username, discord_id, license_key, license_key_bidx)
				VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+wlUserColumns,
				id, *sys, in.RobloxUserID, in.RobloxUsername, in.DiscordUserID, ct, bidx))
			if err != nil {
				return err
			}
			ch.Entry = &w
			ch.Undo.DeleteEntryID = &w.ID
		}
		var recID string
		if err := tx.QueryRow(ctx, `INSERT INTO bot_whitelisted_users (discord_server_id, bot_product_id, discord_user_id, roblox_user_id, whitelisted_by)
			VALUES ($1, $2, $3, $4, $5) RETURNING id`, in.Server.ID, productID, in.DiscordUserID, in.RobloxUserID, in.WhitelistedBy).Scan(&recID); err != nil {
			return err
		}
		ch.Undo.DeleteRecordID = &recID
		if in.Product != nil && in.Product.RoleID != nil {
			g, err := b.insertGrant(ctx, tx, in.Server, in.DiscordUserID, *in.Product.RoleID, GrantAdd, "whitelist add", in.Interaction)
			if err != nil {
				return err
			}
			ch.Grants = append(ch.Grants, g)
		}
		return beforeCommit(ctx)
	})
	if err != nil {
		return Change{}, MapError(err)
	}
	return ch, nil
}

// lockSystemForInsert locks whitelist system id so that concurrent adds
// cannot together pass max_users, and answers ErrFull when it is full.
func lockSystemForInsert(ctx context.Context, tx pgx.Tx, id string) error {
	var maxUsers *int
	if err := tx.QueryRow(ctx, `SELECT max_users FROM whitelist_systems WHERE id = $1 FOR UPDATE`, id).Scan(&maxUsers); err != nil {
		return err
	}
	if maxUsers == nil {
		return nil
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM whitelist_users WHERE system_id = $1`, id).Scan(&n); err != nil {
		return err
	}
	if n >= *maxUsers {
		return ErrFull
	}
	return nil
}

// RemoveBotWhitelist deletes discordUserID's bot_whitelisted_users rows in
// server and their entries in its whitelist system, records a pending
// removal of each role their products gave, and calls beforeCommit (which
// audits) inside the same transaction. The Discord calls run after the
// commit (the returned grants). A member with neither is ErrNotFound.
func (b *Bot) RemoveBotWhitelist(ctx context.Context, server DiscordServer, discordUserID string, in GrantInteraction, beforeCommit func(ctx context.Context, roleIDs []string) error) (Change, error) {
	var ch Change
	err := b.db.InTx(ctx, func(tx pgx.Tx) error {
		ch = Change{}
		rows, err := tx.Query(ctx, `DELETE FROM bot_whitelisted_users w WHERE w.discord_server_id = $1 AND w.discord_user_id = $2
			RETURNING (SELECT role_id FROM bot_products p WHERE p.id = w.bot_product_id)`, server.ID, discordUserID)
		if err != nil {
			return err
		}
		roles, err := pgx.CollectRows(rows, pgx.RowTo[*string])
		if err != nil {
			return err
		}
		var entries int64
		if server.WhitelistSystemID != nil {
			tag, err := tx.Exec(ctx, `DELETE FROM whitelist_users WHERE system_id = $1 AND discord_id = $2`, *server.WhitelistSystemID, discordUserID)
			if err != nil {
				return err
			}
			entries = tag.RowsAffected()
		}
		if len(roles) == 0 && entries == 0 {
			return ErrNotFound
		}
		var roleIDs []string
		seen := map[string]bool{}
		for _, r := range roles {
			if r != nil && !seen[*r] {
				seen[*r] = true
				roleIDs = append(roleIDs, *r)
				g, err := b.insertGrant(ctx, tx, server, discordUserID, *r, GrantRemove, "whitelist remove", in)
				if err != nil {
					return err
				}
				ch.Grants = append(ch.Grants, g)
			}
		}
		return beforeCommit(ctx, roleIDs)
	})
	if err != nil {
		return Change{}, MapError(err)
	}
	return ch, nil
}

// StatusQuery names one member whose whitelist status is read: their
// bot_whitelisted_users rows in guild ServerID and their entry in whitelist
// system SystemID (nil: the guild has none).
type StatusQuery struct {
	ServerID      string
	SystemID      *string
	DiscordUserID string
}

// MemberStatus is what /whitelist check shows of one member, and nothing
// more (never a license key).
type MemberStatus struct {
	Records            int      // their bot_whitelisted_users rows in the guild
	RecordRobloxUserID *int64   // the oldest row's Roblox account
	Products           []string // the rows' product names, oldest first
	Entry              *MemberEntry
}

// MemberEntry is the member's oldest entry in the guild's whitelist system.
type MemberEntry struct {
	RobloxUserID   int64
	RobloxUsername *string
	ExpiresAt      *time.Time
}

// BotWhitelistStatus is BotWhitelistStatuses of one member.
func (b *Bot) BotWhitelistStatus(ctx context.Context, q StatusQuery) (MemberStatus, error) {
	out, err := b.BotWhitelistStatuses(ctx, []StatusQuery{q})
	if err != nil {
		return MemberStatus{}, err
	}
	return out[0], nil
}

// MaxStatusBatch is the most members BotWhitelistStatuses reads at once.
const MaxStatusBatch = 32

// statusSQL holds the statement reading n members, for n a power of two:
// a few statement texts per connection, each kept with one generic plan.
var statusSQL sync.Map // int -> string

// memberStatusSQL reads n members in one statement. The members come as a
// VALUES list of plain parameters rather than arrays: PostgreSQL then
// plans it once per connection (a generic plan, as its estimates match a
// custom plan's), where an unnest of parameter arrays was planned again on
// every call at several times the cost of running it. Kind 0 rows are
// bot_whitelisted_users rows, the kind 1 row the member's oldest entry in
// the guild's whitelist system.
func memberStatusSQL(n int) string {
	if v, ok := statusSQL.Load(n); ok {
		return v.(string)
	}
	var values strings.Builder
	for i := range n {
		if i > 0 {
			values.WriteString(", ")
		}
		fmt.Fprintf(&values, "($%d::uuid, $%d::text, $%d::uuid, %d)", 3*i+1, 3*i+2, 3*i+3, i)
	}
	// Five columns, ordered by two the reader never decodes.
	q := `WITH k(sid, uid, sys, i) AS (VALUES ` + values.String() + `)
	SELECT r.i, r.kind, r.roblox, r.name, r.expires FROM (
		SELECT k.i, 0 AS kind, w.created_at, w.id, w.roblox_user_id AS roblox, p.name, NULL::timestamptz AS expires
			FROM k JOIN bot_whitelisted_users w ON w.discord_server_id = k.sid AND w.discord_user_id = k.uid
			LEFT JOIN bot_products b ON b.id = w.bot_product_id LEFT JOIN products p ON p.id = b.product_id
		UNION ALL
		SELECT k.i, 1, u.created_at, u.id, u.roblox_user_id, u.roblox_username, u.expires_at
			FROM k CROSS JOIN LATERAL (SELECT u.created_at, u.id, u.roblox_user_id, u.roblox_username, u.expires_at FROM whitelist_users u
				WHERE u.system_id = k.sys AND u.discord_id = k.uid ORDER BY u.created_at LIMIT 1) u) r
	ORDER BY r.i, r.kind, r.created_at, r.id`
	statusSQL.Store(n, q)
	return q
}

// BotWhitelistStatuses reads the status of every member of qs (at most
// MaxStatusBatch), in qs's order, in one statement. /whitelist check is on
// Discord's clock, and server/discord batches the look-ups of concurrent
// commands through it.
func (b *Bot) BotWhitelistStatuses(ctx context.Context, qs []StatusQuery) ([]MemberStatus, error) {
	if len(qs) > MaxStatusBatch {
		return nil, fmt.Errorf("store: %d members in one status read, at most %d", len(qs), MaxStatusBatch)
	}
	out := make([]MemberStatus, len(qs))
	if len(qs) == 0 {
		return out, nil
	}
	n := 1
	for n < len(qs) {
		n *= 2
	}
	// Padding members match nothing (NULL never equals).
	args := make([]any, 0, 3*n)
	for _, q := range qs {
		args = append(args, q.ServerID, q.DiscordUserID, q.SystemID)
	}
	for range n - len(qs) {
		args = append(args, nil, nil, nil)
	}
	rows, err := b.db.Pool.Query(ctx, memberStatusSQL(n), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	// pgtype values scan without pointer-to-pointer plans or an
	// allocation per NULL: this runs for every /whitelist check. They
	// live in one struct, scanned through one list of pointers: the scan
	// moves them to the heap, so that is two allocations per statement
	// rather than five and one per row.
	var sc struct {
		i, kind int32
		roblox  pgtype.Int8
		name    pgtype.Text
		expires pgtype.Timestamptz
	}
	dest := []any{&sc.i, &sc.kind, &sc.roblox, &sc.name, &sc.expires}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		i, kind, roblox, name, expires := sc.i, sc.kind, sc.roblox, sc.name, sc.expires
		if i < 0 || int(i) >= len(qs) {
			continue
		}
		st := &out[i]
		if kind == 0 {
			if st.Records == 0 && roblox.Valid {
				id := roblox.Int64
				st.RecordRobloxUserID = &id
			}
			st.Records++
			if name.Valid {
				st.Products = append(st.Products, name.String)
			}
			continue
		}
		e := &MemberEntry{RobloxUserID: roblox.Int64}
		if name.Valid {
			username := name.String
			e.RobloxUsername = &username
		}
		if expires.Valid {
			t := expires.Time
			e.ExpiresAt = &t
		}
		st.Entry = e
	}
	return out, rows.Err()
}

// Redeem links the whitelist entry of licenseKey (normalized) in server's
// whitelist system to discordUserID, records them in bot_whitelisted_users
// for product (nil: none) with a pending grant of the product's role, and
// calls beforeCommit (which audits) inside the same transaction. The key is
// looked up by its blind index only. An unknown key (or a server with no
// system) is ErrNotFound, a key linked to someone else ErrAlreadyRedeemed,
// an expired entry or inactive system ErrExpired. Redeeming one's own key
// again succeeds (Change.Repeated; the role is granted again).
func (b *Bot) Redeem(ctx context.Context, server DiscordServer, licenseKey, discordUserID string, product *BotProduct, in GrantInteraction, beforeCommit func(context.Context) error) (Change, error) {
	if server.WhitelistSystemID == nil {
		return Change{}, ErrNotFound
	}
	bidx, err := b.mk.LicenseKeyIndex(licenseKey)
	if err != nil {
		return Change{}, err
	}
	var productID *string
	if product != nil {
		productID = &product.ID
	}
	var ch Change
	err = b.db.InTx(ctx, func(tx pgx.Tx) error {
		ch = Change{}
		var u WhitelistUser
		var active, expired bool
		err := tx.QueryRow(ctx, `SELECT `+wlUserColumns+`, w.is_active, coalesce(u.expires_at <= now(), false)
			FROM whitelist_users u JOIN whitelist_systems w ON w.id = u.system_id
			WHERE u.system_id = $1 AND u.license_key_bidx = $2 LIMIT 1 FOR UPDATE OF u`, *server.WhitelistSystemID, bidx).
			Scan(&u.ID, &u.SystemID, &u.RobloxUserID, &u.RobloxUsername, &u.DiscordID, &u.HasHWID, &u.ExpiresAt, &u.CreatedAt, &u.Status, &u.SaleID, &active, &expired)
		if err != nil {
			return err
		}
		if u.DiscordID != nil && *u.DiscordID != discordUserID {
			return ErrAlreadyRedeemed
		}
		if !active || expired || u.Status != "active" {
			// A license revoked by a refund or dispute redeems nothing.
			return ErrExpired
		}
		ch.Entry = &u
		ch.Repeated = true
		if u.DiscordID == nil {
			if _, err := tx.Exec(ctx, `UPDATE whitelist_users SET discord_id = $2 WHERE id = $1`, u.ID, discordUserID); err != nil {
				return err
			}
			u.DiscordID = &discordUserID
			ch.Undo.UnlinkEntryID = &u.ID
			ch.Repeated = false
		}
		// NULLs are distinct in the unique key, so "already recorded" is
		// checked by hand rather than with ON CONFLICT.
		rows, err := tx.Query(ctx, `INSERT INTO bot_whitelisted_users (discord_server_id, bot_product_id, discord_user_id, roblox_user_id, whitelisted_by)
			SELECT $1, $2, $3, $4, $3 WHERE NOT EXISTS (SELECT 1 FROM bot_whitelisted_users
				WHERE discord_server_id = $1 AND discord_user_id = $3 AND bot_product_id IS NOT DISTINCT FROM $2)
			RETURNING id`,
			server.ID, productID, discordUserID, u.RobloxUserID)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if len(ids) == 1 {
			ch.Undo.DeleteRecordID = &ids[0]
			ch.Repeated = false
		}
		if product != nil && product.RoleID != nil {
			g, err := b.insertGrant(ctx, tx, server, discordUserID, *product.RoleID, GrantAdd, "redeem", in)
			if err != nil {
				return err
			}
			ch.Grants = append(ch.Grants, g)
		}
		return beforeCommit(ctx)
	})
	if err != nil {
		return Change{}, MapError(err)
	}
	return ch, nil
}
