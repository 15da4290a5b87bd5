package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring"
)

// ErrFull is returned when a whitelist system already holds max_users users.
var ErrFull = errors.New("store: whitelist system is full")

// WhitelistSystem is a row of whitelist_systems.
type WhitelistSystem struct {
	ID          string
	OwnerID     string
	StoreID     *string
	Name        string
	Description *string
	MaxUsers    *int
	IsActive    bool
	CreatedAt   time.Time
}

// WhitelistSystemFields are the columns an owner may set; nil is unchanged,
// the Clear flags set a column to NULL.
type WhitelistSystemFields struct {
	Name          *string
	Description   *string
	StoreID       *string
	ClearStoreID  bool
	MaxUsers      *int
	ClearMaxUsers bool
	IsActive      *bool
}

// WhitelistUser is a row of whitelist_users without its secrets: the license
// key is shown once, when it is made, and the hardware id never; HasHWID says
// whether one is bound.
type WhitelistUser struct {
	ID             string
	SystemID       string
	RobloxUserID   int64
	RobloxUsername *string
	DiscordID      *string
	HasHWID        bool
	ExpiresAt      *time.Time
	CreatedAt      time.Time
	// Status is active, revoked (a refund or dispute of its sale) or
	// expired; SaleID is the sale that issued it, nil for one made by hand.
	Status string
	SaleID *string
}

// WhitelistUserFields are the columns an owner may set; nil is unchanged.
// ClearExpiresAt makes the entry never expire; ResetHWID unbinds the
// hardware id so the player can run on a new machine.
type WhitelistUserFields struct {
	RobloxUserID   *int64
	RobloxUsername *string
	DiscordID      *string
	ExpiresAt      *time.Time
	ClearExpiresAt bool
	ResetHWID      bool
	// Status, when set, is active or revoked: the seller revokes a license
	// (revoked_reason seller) or restores it.
	Status *string
}

// CheckResult is the answer to a whitelist check. Reason says why a
// license does not whitelist (one of the CheckReason* values), "" when it
// does.
type CheckResult struct {
	Whitelisted bool
	ExpiresAt   *time.Time
	Reason      string
}

const systemColumns = `w.id, w.owner_id, w.store_id, w.name, w.description, w.max_users, w.is_active, w.created_at`

func scanSystem(row pgx.Row) (WhitelistSystem, error) {
	var w WhitelistSystem
	err := row.Scan(&w.ID, &w.OwnerID, &w.StoreID, &w.Name, &w.Description, &w.MaxUsers, &w.IsActive, &w.CreatedAt)
	return w, err
}

func systemCursor(w WhitelistSystem) Cursor {
	return Cursor{CreatedAt: w.CreatedAt, ID: uuid.MustParse(w.ID)}
}

// CreateWhitelistSystem creates a whitelist system owned by ownerID. The
// caller checks that StoreID, if set, is ownerID's store.
func (m *Marketplace) CreateWhitelistSystem(ctx context.Context, ownerID string, f WhitelistSystemFields) (WhitelistSystem, error) {
	active := true
	if f.IsActive != nil {
		active = *f.IsActive
	}
	row := m.db.Pool.QueryRow(ctx, `INSERT INTO whitelist_systems AS w (owner_id, store_id, name, description, max_users, is_active)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+systemColumns, ownerID, f.StoreID, deref(f.Name), f.Description, f.MaxUsers, active)
	w, err := scanSystem(row)
	return w, MapError(err)
}

// GetWhitelistSystem returns ownerID's system id; anyone else's is ErrNotFound.
func (m *Marketplace) GetWhitelistSystem(ctx context.Context, ownerID, id string) (WhitelistSystem, error) {
	w, err := scanSystem(m.db.Pool.QueryRow(ctx, `SELECT `+systemColumns+` FROM whitelist_systems w WHERE w.id = $1 AND w.owner_id = $2`, id, ownerID))
	return w, MapError(err)
}

// ListWhitelistSystems returns a page of ownerID's systems, newest first.
func (m *Marketplace) ListWhitelistSystems(ctx context.Context, ownerID string, p Page) ([]WhitelistSystem, *Cursor, error) {
	t, id := pageArgs(p)
	rows, err := m.db.Pool.Query(ctx, `SELECT `+systemColumns+` FROM whitelist_systems w WHERE w.owner_id = $1`+pageClause("w", 2), ownerID, t, id, p.Limit+1)
	if err != nil {
		return nil, nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (WhitelistSystem, error) { return scanSystem(r) })
	if err != nil {
		return nil, nil, err
	}
	items, next := trimPage(out, p.Limit, systemCursor)
	return items, next, nil
}

// UpdateWhitelistSystem changes the set fields of ownerID's system id.
func (m *Marketplace) UpdateWhitelistSystem(ctx context.Context, ownerID, id string, f WhitelistSystemFields) (WhitelistSystem, error) {
	row := m.db.Pool.QueryRow(ctx, `UPDATE whitelist_systems AS w SET
			name = coalesce($3, w.name), description = coalesce($4, w.description),
			store_id = CASE WHEN $5 THEN NULL ELSE coalesce($6, w.store_id) END,
			max_users = CASE WHEN $7 THEN NULL ELSE coalesce($8, w.max_users) END,
			is_active = coalesce($9, w.is_active)
		WHERE w.id = $1 AND w.owner_id = $2 RETURNING `+systemColumns,
		id, ownerID, f.Name, f.Description, f.ClearStoreID, f.StoreID, f.ClearMaxUsers, f.MaxUsers, f.IsActive)
	w, err := scanSystem(row)
	return w, MapError(err)
}

// DeleteWhitelistSystem deletes ownerID's system id and its users.
func (m *Marketplace) DeleteWhitelistSystem(ctx context.Context, ownerID, id string) error {
	tag, err := m.db.Pool.Exec(ctx, `DELETE FROM whitelist_systems WHERE id = $1 AND owner_id = $2`, id, ownerID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

const wlUserColumns = `u.id, u.system_id, u.roblox_user_id, u.roblox_username, u.discord_id, u.hwid IS NOT NULL, u.expires_at, u.created_at,
	CASE WHEN u.status = 'active' AND u.expires_at <= now() THEN 'expired' ELSE u.status END, u.sale_id`

func scanWLUser(row pgx.Row) (WhitelistUser, error) {
	var u WhitelistUser
	err := row.Scan(&u.ID, &u.SystemID, &u.RobloxUserID, &u.RobloxUsername, &u.DiscordID, &u.HasHWID, &u.ExpiresAt, &u.CreatedAt, &u.Status, &u.SaleID)
	return u, err
}

func wlUserCursor(u WhitelistUser) Cursor {
	return Cursor{CreatedAt: u.CreatedAt, ID: uuid.MustParse(u.ID)}
}

func licenseLoc(id string) keyring.Location {
	return keyring.Location{Table: "whitelist_users", Column: "license_key", RowID: id}
}

// LicenseKeyIndex is the blind index a license key is looked up by.
func (m *Marketplace) LicenseKeyIndex(key string) ([]byte, error) {
	return m.kr.BlindIndex("whitelist_users", "license_key", []byte(key))
}

// CreateWhitelistUser whitelists a player in ownerID's system systemID with
// licenseKey, stored encrypted beside its blind index. A system that is not
// ownerID's is ErrNotFound, a full one ErrFull, a player already in the
// system ErrConflict.
func (m *Marketplace) CreateWhitelistUser(ctx context.Context, ownerID, systemID string, f WhitelistUserFields, licenseKey string) (WhitelistUser, error) {
	id := uuid.NewString()
	ct, err := m.kr.Encrypt(ctx, licenseLoc(id), []byte(licenseKey))
	if err != nil {
		return WhitelistUser{}, err
	}
	bidx, err := m.LicenseKeyIndex(licenseKey)
	if err != nil {
		return WhitelistUser{}, err
	}
	var u WhitelistUser
	err = m.db.InTx(ctx, func(tx pgx.Tx) error {
		// The system row is locked so that concurrent adds cannot together
		// pass max_users.
		var maxUsers *int
		if err := tx.QueryRow(ctx, `SELECT max_users FROM whitelist_systems WHERE id = $1 AND owner_id = $2 FOR UPDATE`, systemID, ownerID).Scan(&maxUsers); err != nil {
			return err
		}
		if maxUsers != nil {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM whitelist_users WHERE system_id = $1`, systemID).Scan(&n); err != nil {
				return err
			}
			if n >= *maxUsers {
				return ErrFull
			}
		}
		var err error
		u, err = scanWLUser(tx.QueryRow(ctx, `INSERT INTO whitelist_users AS u (id, system_id, roblox_user_id, roblox_username, discord_id, license_key, license_key_bidx, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+wlUserColumns,
			id, systemID, f.RobloxUserID, f.RobloxUsername, f.DiscordID, ct, bidx, f.ExpiresAt))
		return err
	})
	return u, MapError(err)
}

// GetWhitelistUser returns user userID of ownerID's system systemID.
func (m *Marketplace) GetWhitelistUser(ctx context.Context, ownerID, systemID, userID string) (WhitelistUser, error) {
	u, err := scanWLUser(m.db.Pool.QueryRow(ctx, `SELECT `+wlUserColumns+` FROM whitelist_users u JOIN whitelist_systems w ON w.id = u.system_id
		WHERE u.id = $1 AND u.system_id = $2 AND w.owner_id = $3`, userID, systemID, ownerID))
	return u, MapError(err)
}

// ListWhitelistUsers returns a page of the users of ownerID's system
// systemID; a system that is not ownerID's is ErrNotFound.
func (m *Marketplace) ListWhitelistUsers(ctx context.Context, ownerID, systemID string, p Page) ([]WhitelistUser, *Cursor, error) {
	if _, err := m.GetWhitelistSystem(ctx, ownerID, systemID); err != nil {
		return nil, nil, err
	}
	t, id := pageArgs(p)
	rows, err := m.db.Pool.Query(ctx, `SELECT `+wlUserColumns+` FROM whitelist_users u WHERE u.system_id = $1`+pageClause("u", 2), systemID, t, id, p.Limit+1)
	if err != nil {
		return nil, nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (WhitelistUser, error) { return scanWLUser(r) })
	if err != nil {
		return nil, nil, err
	}
	items, next := trimPage(out, p.Limit, wlUserCursor)
	return items, next, nil
}

// UpdateWhitelistUser changes the set fields of user userID of ownerID's
// system systemID.
func (m *Marketplace) UpdateWhitelistUser(ctx context.Context, ownerID, systemID, userID string, f WhitelistUserFields) (WhitelistUser, error) {
	u, err := scanWLUser(m.db.Pool.QueryRow(ctx, `UPDATE whitelist_users AS u SET
			roblox_user_id = coalesce($4, u.roblox_user_id), roblox_username = coalesce($5, u.roblox_username),
			discord_id = coalesce($6, u.discord_id),
			expires_at = CASE WHEN $7 THEN NULL ELSE coalesce($8, u.expires_at) END,
			hwid = CASE WHEN $9 THEN NULL ELSE u.hwid END,
			hwid_bidx = CASE WHEN $9 THEN NULL ELSE u.hwid_bidx END,
			status = coalesce($10, u.status),
			revoked_at = CASE WHEN $10 = 'revoked' AND u.status <> 'revoked' THEN now() WHEN $10 IS NOT NULL AND $10 <> 'revoked' THEN NULL ELSE u.revoked_at END,
			revoked_reason = CASE WHEN $10 = 'revoked' AND u.status <> 'revoked' THEN 'seller' WHEN $10 IS NOT NULL AND $10 <> 'revoked' THEN NULL ELSE u.revoked_reason END
		FROM whitelist_systems w
		WHERE u.id = $1 AND u.system_id = $2 AND w.id = u.system_id AND w.owner_id = $3
		RETURNING `+wlUserColumns,
		userID, systemID, ownerID, f.RobloxUserID, f.RobloxUsername, f.DiscordID, f.ClearExpiresAt, f.ExpiresAt, f.ResetHWID, f.Status))
	return u, MapError(err)
}

// DeleteWhitelistUser removes user userID from ownerID's system systemID.
func (m *Marketplace) DeleteWhitelistUser(ctx context.Context, ownerID, systemID, userID string) error {
	tag, err := m.db.Pool.Exec(ctx, `DELETE FROM whitelist_users u USING whitelist_systems w
		WHERE u.id = $1 AND u.system_id = $2 AND w.id = u.system_id AND w.owner_id = $3`, userID, systemID, ownerID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// CheckQuery is one license check: by SystemID (a whitelist system) or
// ProductID (a developer product) and RobloxUserID, or by the blind indexes
// of a license key (LicenseIndex over whitelist_users, EntryIndex over
// whitelist_entries: Marketplace.KeyCheck fills both). HWIDIndex and
// EntryHWIDIndex, when set (Marketplace.SetHWID), are the blind indexes of
// the hardware id the game server reports: a license bound to another one
// does not whitelist. An index left nil leaves its table out.
type CheckQuery struct {
	SystemID       string
	ProductID      string
	RobloxUserID   int64
	LicenseIndex   []byte
	EntryIndex     []byte
	HWIDIndex      []byte
	EntryHWIDIndex []byte
}

// UseAPIKeyAndCheck is UseAPIKey and a license check in one statement:
// concurrent checks with one key share it (keyUseBatcher), each answered
// on its own. Every key sees its developer's whitelist systems' licenses;
// of developer products' licenses, a key tied to a developer product sees
// that product's only, a key with none those of all its developer's
// products. The caller must act on the
// KeyUse (401, 429, scope) before showing the check's answer. An unknown or
// revoked key is ErrNotFound.
func (m *Marketplace) UseAPIKeyAndCheck(ctx context.Context, keyHash []byte, q CheckQuery) (KeyUse, CheckResult, error) {
	return m.uses.use(ctx, keyHash, &q)
}
