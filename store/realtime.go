package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The records the realtime feed sends with a change: every column of the row
// under its camelCase name except the sensitive ones (download URLs, Stripe
// ids, license keys and their blind indexes, hardware ids). Each type lists
// its columns explicitly, so a column added to a table later never reaches
// the feed by accident.

// ChangedStore is a stores row without its Stripe account id.
type ChangedStore struct {
	ID              string    `json:"id"`
	OwnerID         string    `json:"ownerId"`
	Name            string    `json:"name"`
	Slug            string    `json:"slug"`
	Description     *string   `json:"description"`
	LogoURL         *string   `json:"logoUrl"`
	StripeOnboarded bool      `json:"stripeOnboarded"`
	CommissionBps   int       `json:"commissionBps"`
	CreatedAt       time.Time `json:"createdAt"`
	UpdatedAt       time.Time `json:"updatedAt"`
}

// ChangedProduct is a products row without its download URL.
type ChangedProduct struct {
	ID            string          `json:"id"`
	StoreID       string          `json:"storeId"`
	Name          string          `json:"name"`
	Description   *string         `json:"description"`
	PriceCents    int             `json:"priceCents"`
	Currency      string          `json:"currency"`
	RobloxAssetID *int64          `json:"robloxAssetId"`
	IsActive      bool            `json:"isActive"`
	Metadata      json.RawMessage `json:"metadata"`
	CreatedAt     time.Time       `json:"createdAt"`
	UpdatedAt     time.Time       `json:"updatedAt"`
}

// ChangedSale is a sales row without its Stripe payment intent id.
type ChangedSale struct {
	ID               string    `json:"id"`
	ProductID        string    `json:"productId"`
	StoreID          string    `json:"storeId"`
	BuyerID          *string   `json:"buyerId"`
	BuyerEmail       *string   `json:"buyerEmail"`
	RobloxUserID     *int64    `json:"robloxUserId"`
	AmountCents      int       `json:"amountCents"`
	PlatformFeeCents int       `json:"platformFeeCents"`
	Currency         string    `json:"currency"`
	Status           string    `json:"status"`
	CreatedAt        time.Time `json:"createdAt"`
}

// ChangedWhitelistSystem is a whitelist_systems row (none of its columns is
// sensitive).
type ChangedWhitelistSystem struct {
	ID          string    `json:"id"`
	OwnerID     string    `json:"ownerId"`
	StoreID     *string   `json:"storeId"`
	Name        string    `json:"name"`
	Description *string   `json:"description"`
	MaxUsers    *int      `json:"maxUsers"`
	IsActive    bool      `json:"isActive"`
	CreatedAt   time.Time `json:"createdAt"`
}

// ChangedWhitelistUser is a whitelist_users row without its license key,
// the key's blind index and the hardware id.
type ChangedWhitelistUser struct {
	ID             string     `json:"id"`
	SystemID       string     `json:"systemId"`
	RobloxUserID   int64      `json:"robloxUserId"`
	RobloxUsername *string    `json:"robloxUsername"`
	DiscordID      *string    `json:"discordId"`
	ExpiresAt      *time.Time `json:"expiresAt"`
	CreatedAt      time.Time  `json:"createdAt"`
}

// ChangedRecord loads the row of table with the given id as the realtime
// feed shows it: one of the Changed* types above. It returns ErrNotFound
// when the row is gone (deleted since the change was announced) and an
// error for a table the feed does not carry.
func (db *DB) ChangedRecord(ctx context.Context, table, id string) (any, error) {
	var (
		rec  any
		sql  string
		dest []any
	)
	switch table {
	case "stores":
		var r ChangedStore
		sql = `SELECT id, owner_id, name, slug, description, logo_url, stripe_onboarded, commission_bps, created_at, updated_at
			FROM stores WHERE id = $1`
		dest = []any{&r.ID, &r.OwnerID, &r.Name, &r.Slug, &r.Description, &r.LogoURL, &r.StripeOnboarded, &r.CommissionBps, &r.CreatedAt, &r.UpdatedAt}
		rec = &r
	case "products":
		var r ChangedProduct
		sql = `SELECT id, store_id, name, description, price_cents, currency, roblox_asset_id, is_active, metadata, created_at, updated_at
			FROM products WHERE id = $1`
		dest = []any{&r.ID, &r.StoreID, &r.Name, &r.Description, &r.PriceCents, &r.Currency, &r.RobloxAssetID, &r.IsActive, &r.Metadata, &r.CreatedAt, &r.UpdatedAt}
		rec = &r
	case "sales":
		var r ChangedSale
		sql = `SELECT id, product_id, store_id, buyer_id, buyer_email, roblox_user_id, amount_cents, platform_fee_cents, currency, status, created_at
			FROM sales WHERE id = $1`
		dest = []any{&r.ID, &r.ProductID, &r.StoreID, &r.BuyerID, &r.BuyerEmail, &r.RobloxUserID, &r.AmountCents, &r.PlatformFeeCents, &r.Currency, &r.Status, &r.CreatedAt}
		rec = &r
	case "whitelist_systems":
		var r ChangedWhitelistSystem
		sql = `SELECT id, owner_id, store_id, name, description, max_users, is_active, created_at
			FROM whitelist_systems WHERE id = $1`
		dest = []any{&r.ID, &r.OwnerID, &r.StoreID, &r.Name, &r.Description, &r.MaxUsers, &r.IsActive, &r.CreatedAt}
		rec = &r
	case "whitelist_users":
		var r ChangedWhitelistUser
		sql = `SELECT id, system_id, roblox_user_id, roblox_username, discord_id, expires_at, created_at
			FROM whitelist_users WHERE id = $1`
		dest = []any{&r.ID, &r.SystemID, &r.RobloxUserID, &r.RobloxUsername, &r.DiscordID, &r.ExpiresAt, &r.CreatedAt}
		rec = &r
	default:
		return nil, fmt.Errorf("store: no realtime record for table %q", table)
	}
	err := db.Pool.QueryRow(ctx, sql, id).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: load %s %s: %w", table, id, err)
	}
	return rec, nil
}
