package store

import (
	"context"
	"encoding/json"
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
	// WhitelistSystemID and DeveloperProductID: what a purchase licenses.
	WhitelistSystemID  *string   `json:"whitelistSystemId"`
	DeveloperProductID *string   `json:"developerProductId"`
	CreatedAt          time.Time `json:"createdAt"`
	UpdatedAt          time.Time `json:"updatedAt"`
	CreditUnits        *int      `json:"creditUnits"`
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
	Status         string     `json:"status"`
	SaleID         *string    `json:"saleId"`
	BuyerID        *string    `json:"buyerId"`
	RevokedAt      *time.Time `json:"revokedAt"`
	RevokedReason  *string    `json:"revokedReason"`
	KeyRevealedAt  *time.Time `json:"keyRevealedAt"`
	CreatedAt      time.Time  `json:"createdAt"`
}

// ChangedWhitelistEntry is a whitelist_entries row (a developer product's
// license) without its license key, the key's blind index and the hardware
// id and its blind index.
type ChangedWhitelistEntry struct {
	ID                 string     `json:"id"`
	DeveloperProductID string     `json:"developerProductId"`
	RobloxUserID       int64      `json:"robloxUserId"`
	DiscordID          *string    `json:"discordId"`
	ExpiresAt          *time.Time `json:"expiresAt"`
	Status             string     `json:"status"`
	SaleID             *string    `json:"saleId"`
	BuyerID            *string    `json:"buyerId"`
	RevokedAt          *time.Time `json:"revokedAt"`
	RevokedReason      *string    `json:"revokedReason"`
	KeyRevealedAt      *time.Time `json:"keyRevealedAt"`
	CreatedAt          time.Time  `json:"createdAt"`
}

// ChangedRecords loads the rows of table with the given ids as the
// realtime feed shows them (one of the Changed* types above), keyed by id.
// Rows that are gone (deleted since their change was announced) are simply
// absent. A table the feed does not carry is an error.
func (db *DB) ChangedRecords(ctx context.Context, table string, ids []string) (map[string]any, error) {
	var (
		sql  string
		scan func(pgx.Rows) (string, any, error)
	)
	switch table {
	case "stores":
		sql = `SELECT id, owner_id, name, slug, description, logo_url, stripe_onboarded, commission_bps, created_at, updated_at
			FROM stores WHERE id = ANY($1::uuid[])`
		scan = func(rows pgx.Rows) (string, any, error) {
			var r ChangedStore
			err := rows.Scan(&r.ID, &r.OwnerID, &r.Name, &r.Slug, &r.Description, &r.LogoURL, &r.StripeOnboarded, &r.CommissionBps, &r.CreatedAt, &r.UpdatedAt)
			return r.ID, &r, err
		}
	case "products":
		sql = `SELECT id, store_id, name, description, price_cents, currency, roblox_asset_id, is_active, metadata,
				whitelist_system_id, developer_product_id, created_at, updated_at
			FROM products WHERE id = ANY($1::uuid[])`
		scan = func(rows pgx.Rows) (string, any, error) {
			var r ChangedProduct
			err := rows.Scan(&r.ID, &r.StoreID, &r.Name, &r.Description, &r.PriceCents, &r.Currency, &r.RobloxAssetID, &r.IsActive, &r.Metadata,
				&r.WhitelistSystemID, &r.DeveloperProductID, &r.CreatedAt, &r.UpdatedAt)
			return r.ID, &r, err
		}
	case "sales":
		sql = `SELECT id, product_id, store_id, buyer_id, buyer_email, roblox_user_id, amount_cents, platform_fee_cents, currency, status, created_at
			FROM sales WHERE id = ANY($1::uuid[])`
		scan = func(rows pgx.Rows) (string, any, error) {
			var r ChangedSale
			err := rows.Scan(&r.ID, &r.ProductID, &r.StoreID, &r.BuyerID, &r.BuyerEmail, &r.RobloxUserID, &r.AmountCents, &r.PlatformFeeCents, &r.Currency, &r.Status, &r.CreatedAt)
			return r.ID, &r, err
		}
	case "whitelist_systems":
		sql = `SELECT id, owner_id, store_id, name, description, max_users, is_active, created_at
			FROM whitelist_systems WHERE id = ANY($1::uuid[])`
		scan = func(rows pgx.Rows) (string, any, error) {
			var r ChangedWhitelistSystem
			err := rows.Scan(&r.ID, &r.OwnerID, &r.StoreID, &r.Name, &r.Description, &r.MaxUsers, &r.IsActive, &r.CreatedAt)
			return r.ID, &r, err
		}
	case "whitelist_users":
		sql = `SELECT id, system_id, roblox_user_id, roblox_username, discord_id, expires_at, status, sale_id, buyer_id, revoked_at, revoked_reason, key_revealed_at, created_at
			FROM whitelist_users WHERE id = ANY($1::uuid[])`
		scan = func(rows pgx.Rows) (string, any, error) {
			var r ChangedWhitelistUser
			err := rows.Scan(&r.ID, &r.SystemID, &r.RobloxUserID, &r.RobloxUsername, &r.DiscordID, &r.ExpiresAt,
				&r.Status, &r.SaleID, &r.BuyerID, &r.RevokedAt, &r.RevokedReason, &r.KeyRevealedAt, &r.CreatedAt)
			return r.ID, &r, err
		}
	case "whitelist_entries":
		sql = `SELECT id, developer_product_id, roblox_user_id, discord_id, expires_at, status, sale_id, buyer_id, revoked_at, revoked_reason, key_revealed_at, created_at
			FROM whitelist_entries WHERE id = ANY($1::uuid[])`
		scan = func(rows pgx.Rows) (string, any, error) {
			var r ChangedWhitelistEntry
			err := rows.Scan(&r.ID, &r.DeveloperProductID, &r.RobloxUserID, &r.DiscordID, &r.ExpiresAt,
				&r.Status, &r.SaleID, &r.BuyerID, &r.RevokedAt, &r.RevokedReason, &r.KeyRevealedAt, &r.CreatedAt)
			return r.ID, &r, err
		}
	default:
		return nil, fmt.Errorf("store: no realtime record for table %q", table)
	}
	rows, err := db.Pool.Query(ctx, sql, ids)
	if err != nil {
		return nil, fmt.Errorf("store: load changed %s: %w", table, err)
	}
	defer rows.Close()
	out := make(map[string]any, len(ids))
	for rows.Next() {
		id, rec, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("store: load changed %s: %w", table, err)
		}
		out[id] = rec
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: load changed %s: %w", table, err)
	}
	return out, nil
}
