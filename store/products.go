package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring"
)

// Product is a row of products. DownloadURL is decrypted only for the
// owner of the product's store (OwnedByViewer); for anyone else it is nil.
type Product struct {
	ID            string
	StoreID       string
	Name          string
	Description   *string
	PriceCents    int
	Currency      string
	RobloxAssetID *int64
	DownloadURL   *string
	IsActive      bool
	Metadata      json.RawMessage
	CreatedAt     time.Time
	UpdatedAt     time.Time
	CreditUnits   *int // a credit pack: obfuscation credits a completed sale grants the buyer
	// What a purchase of the product licenses: a whitelist system or a
	// developer product of the store's owner, or neither.
	WhitelistSystemID  *string
	DeveloperProductID *string

	OwnedByViewer bool
}

// ProductFields are the columns an owner may set; on update a nil field is
// unchanged. ClearDownloadURL removes the download URL.
type ProductFields struct {
	Name             *string
	Description      *string
	PriceCents       *int
	Currency         *string
	RobloxAssetID    *int64
	DownloadURL      *string
	ClearDownloadURL bool
	IsActive         *bool
	Metadata         json.RawMessage
	CreditUnits      *int
	ClearCreditUnits bool
	// License target: setting one clears the other; the Clear flags set
	// it to NULL. The caller checks that a target is ownerID's.
	WhitelistSystemID       *string
	ClearWhitelistSystemID  bool
	DeveloperProductID      *string
	ClearDeveloperProductID bool
}

// ProductFilter selects a product list. Mine lists every product of the
// viewer's stores; otherwise the list holds active products (and the
// viewer's own inactive ones), of StoreID when it is set.
type ProductFilter struct {
	ViewerID string // "" for an anonymous caller
	Mine     bool
	StoreID  string
}

const productColumns = `p.id, p.store_id, p.name, p.description, p.price_cents, p.currency, p.roblox_asset_id, p.download_url, p.is_active, p.metadata, p.created_at, p.updated_at, p.whitelist_system_id, p.developer_product_id, s.owner_id, p.credit_units`

func (m *Marketplace) scanProduct(ctx context.Context, row pgx.Row, viewerID string) (Product, error) {
	var p Product
	var url []byte
	var owner string
	if err := row.Scan(&p.ID, &p.StoreID, &p.Name, &p.Description, &p.PriceCents, &p.Currency, &p.RobloxAssetID, &url, &p.IsActive, &p.Metadata, &p.CreatedAt, &p.UpdatedAt, &p.WhitelistSystemID, &p.DeveloperProductID, &owner, &p.CreditUnits); err != nil {
		return p, err
	}
	p.OwnedByViewer = viewerID != "" && owner == viewerID
	if p.OwnedByViewer && url != nil {
		pt, err := m.kr.Decrypt(ctx, productURLLoc(p.ID), url)
		if err != nil {
			return p, err
		}
		s := string(pt)
		p.DownloadURL = &s
	}
	return p, nil
}

func productURLLoc(id string) keyring.Location {
	return keyring.Location{Table: "products", Column: "download_url", RowID: id}
}

func productCursor(p Product) Cursor { return Cursor{CreatedAt: p.CreatedAt, ID: uuid.MustParse(p.ID)} }

func (m *Marketplace) encryptURL(ctx context.Context, id string, url *string) ([]byte, error) {
	if url == nil {
		return nil, nil
	}
	return m.kr.Encrypt(ctx, productURLLoc(id), []byte(*url))
}

// ownedTargets holds when the license targets given ($12 whitelist system,
// $13 developer product) are the owner's ($3 on create, $2 on update: both
// statements name the owner as s.owner_id).
const ownedTargets = `($12::uuid IS NULL OR EXISTS (SELECT 1 FROM whitelist_systems w WHERE w.id = $12::uuid AND w.owner_id = s.owner_id))
				AND ($13::uuid IS NULL OR EXISTS (SELECT 1 FROM developer_products d WHERE d.id = $13::uuid AND d.developer_id = s.owner_id))`

// CreateProduct adds a product to ownerID's store storeID; a store that is
// not ownerID's is ErrNotFound.
func (m *Marketplace) CreateProduct(ctx context.Context, ownerID, storeID string, f ProductFields) (Product, error) {
	id := uuid.NewString()
	url, err := m.encryptURL(ctx, id, f.DownloadURL)
	if err != nil {
		return Product{}, err
	}
	meta := f.Metadata
	if meta == nil {
		meta = json.RawMessage(`{}`)
	}
	active := true
	if f.IsActive != nil {
		active = *f.IsActive
	}
	currency := "usd"
	if f.Currency != nil {
		currency = *f.Currency
	}
	row := m.db.Pool.QueryRow(ctx, `WITH p AS (
			INSERT INTO products (id, store_id, name, description, price_cents, currency, roblox_asset_id, download_url, is_active, metadata,
				whitelist_system_id, developer_product_id, credit_units)
			SELECT $1, s.id, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM stores s WHERE s.id = $2 AND s.owner_id = $3
				AND `+ownedTargets+`
			RETURNING *)
		SELECT `+productColumns+` FROM p JOIN stores s ON s.id = p.store_id`,
		id, storeID, ownerID, deref(f.Name), f.Description, derefInt(f.PriceCents), currency, f.RobloxAssetID, url, active, meta,
		f.WhitelistSystemID, f.DeveloperProductID, f.CreditUnits)
	p, err := m.scanProduct(ctx, row, ownerID)
	return p, MapError(err)
}

// GetProduct returns product id as viewerID ("" anonymous) may see it: an
// inactive product is ErrNotFound to everyone but its store's owner.
func (m *Marketplace) GetProduct(ctx context.Context, viewerID, id string) (Product, error) {
	row := m.db.Pool.QueryRow(ctx, `SELECT `+productColumns+` FROM products p JOIN stores s ON s.id = p.store_id
		WHERE p.id = $1 AND (p.is_active OR s.owner_id = $2::uuid)`, id, nullUUID(viewerID))
	p, err := m.scanProduct(ctx, row, viewerID)
	return p, MapError(err)
}

// listProductsSQL is ListProducts' statement: $1 the viewer, $2 the store
// (or NULL), then the page's position and size. The listing of every
// visible product walks products_page_idx newest first (migration 00029).
func listProductsSQL(mine bool) string {
	where := `(p.is_active OR s.owner_id = $1::uuid) AND ($2::uuid IS NULL OR p.store_id = $2::uuid)`
	if mine {
		where = `s.owner_id = $1::uuid AND ($2::uuid IS NULL OR p.store_id = $2::uuid)`
	}
	return `SELECT ` + productColumns + ` FROM products p JOIN stores s ON s.id = p.store_id
		WHERE ` + where + pageClause("p", 3)
}

// ListProducts returns a page of products selected by f, newest first.
func (m *Marketplace) ListProducts(ctx context.Context, f ProductFilter, p Page) ([]Product, *Cursor, error) {
	t, id := pageArgs(p)
	rows, err := m.db.Pool.Query(ctx, listProductsSQL(f.Mine), nullUUID(f.ViewerID), nullUUID(f.StoreID), t, id, p.Limit+1)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var out []Product
	for rows.Next() {
		pr, err := m.scanProduct(ctx, rows, f.ViewerID)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, pr)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	items, next := trimPage(out, p.Limit, productCursor)
	return items, next, nil
}

// UpdateProduct changes the set fields of product id in one of ownerID's
// stores; anyone else's product is ErrNotFound.
func (m *Marketplace) UpdateProduct(ctx context.Context, ownerID, id string, f ProductFields) (Product, error) {
	url, err := m.encryptURL(ctx, id, f.DownloadURL)
	if err != nil {
		return Product{}, err
	}
	setURL := f.DownloadURL != nil || f.ClearDownloadURL
	row := m.db.Pool.QueryRow(ctx, `WITH p AS (
			UPDATE products AS p SET
				name = coalesce($3, p.name), description = coalesce($4, p.description),
				price_cents = coalesce($5, p.price_cents), currency = coalesce($6, p.currency),
				roblox_asset_id = coalesce($7, p.roblox_asset_id),
				download_url = CASE WHEN $8 THEN $9 ELSE p.download_url END,
				is_active = coalesce($10, p.is_active), metadata = coalesce($11, p.metadata),
				whitelist_system_id = CASE WHEN $14 OR $13::uuid IS NOT NULL THEN $12::uuid
					ELSE coalesce($12::uuid, p.whitelist_system_id) END,
				developer_product_id = CASE WHEN $15 OR $12::uuid IS NOT NULL THEN $13::uuid
					ELSE coalesce($13::uuid, p.developer_product_id) END,
				credit_units = CASE WHEN $16 THEN $17::int ELSE p.credit_units END,
				updated_at = now()
			FROM stores s WHERE p.id = $1 AND s.id = p.store_id AND s.owner_id = $2 AND `+ownedTargets+`
			RETURNING p.*)
		SELECT `+productColumns+` FROM p JOIN stores s ON s.id = p.store_id`,
		id, ownerID, f.Name, f.Description, f.PriceCents, f.Currency, f.RobloxAssetID, setURL, url, f.IsActive, nullJSON(f.Metadata),
		f.WhitelistSystemID, f.DeveloperProductID, f.ClearWhitelistSystemID, f.ClearDeveloperProductID,
		f.CreditUnits != nil || f.ClearCreditUnits, f.CreditUnits)
	pr, err := m.scanProduct(ctx, row, ownerID)
	return pr, MapError(err)
}

// DeleteProduct deletes product id of one of ownerID's stores. A product
// with sales is ErrInUse (deactivate it instead).
func (m *Marketplace) DeleteProduct(ctx context.Context, ownerID, id string) error {
	tag, err := m.db.Pool.Exec(ctx, `DELETE FROM products p USING stores s
		WHERE p.id = $1 AND s.id = p.store_id AND s.owner_id = $2`, id, ownerID)
	if isForeignKeyViolation(err) {
		return ErrInUse
	}
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

func derefInt(n *int) int {
	if n == nil {
		return 0
	}
	return *n
}

// nullUUID passes "" as SQL NULL.
func nullUUID(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullJSON(b json.RawMessage) any {
	if b == nil {
		return nil
	}
	return b
}
