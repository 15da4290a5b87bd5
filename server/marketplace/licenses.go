package marketplace

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase/store"
)

// LicenseResource is a license as its buyer sees it at /api/me/licenses:
// of a whitelist system (kind system) or a developer product (kind
// product), with its key, which only its buyer is shown. The hardware id
// is never shown, only whether one is bound.
type LicenseResource struct {
	ID                 string     `json:"id"`
	Kind               string     `json:"kind"`
	SystemID           *string    `json:"systemId"`
	DeveloperProductID *string    `json:"developerProductId"`
	RobloxUserID       int64      `json:"robloxUserId"`
	DiscordID          *string    `json:"discordId"`
	Status             string     `json:"status"`
	ExpiresAt          *time.Time `json:"expiresAt"`
	HWIDBound          bool       `json:"hwidBound"`
	SaleID             *string    `json:"saleId"`
	RevokedAt          *time.Time `json:"revokedAt"`
	RevokedReason      *string    `json:"revokedReason"`
	CreatedAt          time.Time  `json:"createdAt"`
	LicenseKey         string     `json:"licenseKey"`
}

func licenseResource(l store.License) LicenseResource {
	return LicenseResource{ID: l.ID, Kind: l.Kind, SystemID: l.SystemID, DeveloperProductID: l.DeveloperProductID,
		RobloxUserID: l.RobloxUserID, DiscordID: l.DiscordID, Status: l.Status, ExpiresAt: l.ExpiresAt, HWIDBound: l.HWIDBound,
		SaleID: l.SaleID, RevokedAt: l.RevokedAt, RevokedReason: l.RevokedReason, CreatedAt: l.CreatedAt, LicenseKey: l.Key}
}

func (s *Service) handleMyLicenses(a Auth) fiber.Handler {
	return listing(nil, func(c *fiber.Ctx, _ []string, p store.Page) ([]store.License, *store.Cursor, error) {
		return s.repo.ListBuyerLicenses(c.UserContext(), a.UserID(c), p)
	}, licenseResource)
}

// StoreStats is the answer of GET /api/stores/:id/stats: one entry per UTC
// day from from to to, computed in SQL.
type StoreStats struct {
	StoreID string     `json:"storeId"`
	From    string     `json:"from"`
	To      string     `json:"to"`
	Days    []StatsDay `json:"days"`
}

// StatsDay is one UTC day of a store's figures. sales and revenueCents
// (per currency) count the sales paid that day; refunds and disputes the
// refund and dispute events recorded that day; licensesIssued the licenses
// its sales issued.
type StatsDay struct {
	Date           string           `json:"date"`
	Sales          int              `json:"sales"`
	RevenueCents   map[string]int64 `json:"revenueCents"`
	Refunds        int              `json:"refunds"`
	Disputes       int              `json:"disputes"`
	LicensesIssued int              `json:"licensesIssued"`
}

// Defaults and bounds of the stats range.
const (
	statsDefaultDays = 30
	statsMaxDays     = 366
	dateLayout       = "2006-01-02"
)

// parseDay accepts a date (2026-12-04) or an RFC 3339 timestamp (its UTC
// date counts), from 1970 to 9999.
func parseDay(field, s string) (time.Time, error) {
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return t, invalid(field, "must be a date (YYYY-MM-DD) or an RFC 3339 timestamp")
		}
	}
	t = t.UTC()
	if t.Year() < 1970 || t.Year() > 9999 {
		return t, invalid(field, "must be a date from 1970 to 9999")
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC), nil
}

// Stats returns userID's store storeID's daily figures from from to to
// (dates, inclusive; "" means the last 30 days up to today, UTC). Errors:
// VALIDATION_FAILED for a bad or reversed range or one over 366 days,
// NOT_FOUND for a store that is not userID's.
func (s *Service) Stats(ctx context.Context, userID, storeID, fromRaw, toRaw string) (StoreStats, error) {
	now := time.Now().UTC()
	to := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	var err error
	if toRaw != "" {
		if to, err = parseDay("to", toRaw); err != nil {
			return StoreStats{}, err
		}
	}
	from := to.AddDate(0, 0, -(statsDefaultDays - 1))
	if fromRaw != "" {
		if from, err = parseDay("from", fromRaw); err != nil {
			return StoreStats{}, err
		}
	}
	if from.After(to) {
		return StoreStats{}, invalid("from", "must not be after to")
	}
	if to.Sub(from) >= statsMaxDays*24*time.Hour {
		return StoreStats{}, invalid("from", "the range may span at most 366 days")
	}
	days, err := s.repo.StoreStats(ctx, userID, storeID, from, to)
	if err != nil {
		return StoreStats{}, mapErr(err, "store")
	}
	out := StoreStats{StoreID: storeID, From: from.Format(dateLayout), To: to.Format(dateLayout), Days: make([]StatsDay, 0, len(days))}
	for _, d := range days {
		rev := d.RevenueCents
		if rev == nil {
			rev = map[string]int64{}
		}
		out.Days = append(out.Days, StatsDay{Date: d.Date.Format(dateLayout), Sales: d.Sales, RevenueCents: rev,
			Refunds: d.Refunds, Disputes: d.Disputes, LicensesIssued: d.LicensesIssued})
	}
	return out, nil
}

func (s *Service) handleStoreStats(a Auth) fiber.Handler {
	return withIDs([]string{"id"}, func(c *fiber.Ctx, id []string) (StoreStats, error) {
		return s.Stats(c.UserContext(), a.UserID(c), id[0], c.Query("from"), c.Query("to"))
	})
}
