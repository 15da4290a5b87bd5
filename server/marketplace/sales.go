package marketplace

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase/store"
)

// SaleResource is a sale as the store's owner sees it; the Stripe payment
// intent id stays encrypted in the database.
type SaleResource struct {
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

func saleResource(s store.Sale) SaleResource {
	return SaleResource{
		ID: s.ID, ProductID: s.ProductID, StoreID: s.StoreID, BuyerID: s.BuyerID, BuyerEmail: s.BuyerEmail,
		RobloxUserID: s.RobloxUserID, AmountCents: s.AmountCents, PlatformFeeCents: s.PlatformFeeCents,
		Currency: s.Currency, Status: s.Status, CreatedAt: s.CreatedAt,
	}
}

// SalesQuery is the filter of GET /api/sales: ?storeId, ?from, ?to
// (RFC 3339; from inclusive, to exclusive; ?since and ?until, the audit
// log's names, are accepted too).
type SalesQuery struct {
	StoreID, From, To string
}

// ListSales lists the sales of userID's stores, newest first. A storeId of
// another user's store simply matches nothing.
func (s *Service) ListSales(ctx context.Context, userID string, q SalesQuery, p store.Page) (list[SaleResource], error) {
	f := store.SaleFilter{OwnerID: userID}
	if q.StoreID != "" {
		id, err := parseUUID("storeId", q.StoreID)
		if err != nil {
			return list[SaleResource]{}, err
		}
		f.StoreID = id
	}
	if q.From != "" {
		t, err := parseTime("from", q.From)
		if err != nil {
			return list[SaleResource]{}, err
		}
		f.From = &t
	}
	if q.To != "" {
		t, err := parseTime("to", q.To)
		if err != nil {
			return list[SaleResource]{}, err
		}
		f.To = &t
	}
	if f.From != nil && f.To != nil && !f.From.Before(*f.To) {
		return list[SaleResource]{}, invalid("to", "must be after from")
	}
	rows, next, err := s.repo.ListSales(ctx, f, p)
	if err != nil {
		return list[SaleResource]{}, err
	}
	return listOf(rows, next, saleResource), nil
}

func (s *Service) handleListSales(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		p, err := pageOf(c)
		if err != nil {
			return err
		}
		q := SalesQuery{StoreID: c.Query("storeId"), From: c.Query("from", c.Query("since")), To: c.Query("to", c.Query("until"))}
		out, err := s.ListSales(c.UserContext(), a.UserID(c), q, p)
		if err != nil {
			return err
		}
		return c.JSON(out)
	}
}
