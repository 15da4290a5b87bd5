package store

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Sale is a row of sales without its Stripe payment intent id, which stays
// encrypted: nothing in the marketplace API needs it.
type Sale struct {
	ID               string
	ProductID        string
	StoreID          string
	BuyerID          *string
	BuyerEmail       *string
	RobloxUserID     *int64
	AmountCents      int
	PlatformFeeCents int
	Currency         string
	Status           string
	CreatedAt        time.Time
}

// SaleFilter selects the sales of OwnerID's stores, of StoreID when set,
// created in [From, To) when those are set.
type SaleFilter struct {
	OwnerID string
	StoreID string
	From    *time.Time
	To      *time.Time
}

func saleCursor(s Sale) Cursor { return Cursor{CreatedAt: s.CreatedAt, ID: uuid.MustParse(s.ID)} }

// ListSales returns a page of sales selected by f, newest first.
func (m *Marketplace) ListSales(ctx context.Context, f SaleFilter, p Page) ([]Sale, *Cursor, error) {
	t, id := pageArgs(p)
	rows, err := m.db.Pool.Query(ctx, `SELECT x.id, x.product_id, x.store_id, x.buyer_id, x.buyer_email, x.roblox_user_id,
			x.amount_cents, x.platform_fee_cents, x.currency, x.status, x.created_at
		FROM sales x
		WHERE x.store_id IN (SELECT s.id FROM stores s WHERE s.owner_id = $1 AND ($2::uuid IS NULL OR s.id = $2::uuid))
		  AND ($3::timestamptz IS NULL OR x.created_at >= $3) AND ($4::timestamptz IS NULL OR x.created_at < $4)`+
		pageClause("x", 5), f.OwnerID, nullUUID(f.StoreID), f.From, f.To, t, id, p.Limit+1)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var out []Sale
	for rows.Next() {
		var s Sale
		if err := rows.Scan(&s.ID, &s.ProductID, &s.StoreID, &s.BuyerID, &s.BuyerEmail, &s.RobloxUserID,
			&s.AmountCents, &s.PlatformFeeCents, &s.Currency, &s.Status, &s.CreatedAt); err != nil {
			return nil, nil, err
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	items, next := trimPage(out, p.Limit, saleCursor)
	return items, next, nil
}
