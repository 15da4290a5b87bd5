package marketplace

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// ProductResource is a product. DownloadURL is what a buyer receives, so it
// is shown only to the owner of the product's store.
type ProductResource struct {
	ID            string          `json:"id"`
	StoreID       string          `json:"storeId"`
	Name          string          `json:"name"`
	Description   *string         `json:"description"`
	PriceCents    int             `json:"priceCents"`
	Currency      string          `json:"currency"`
	RobloxAssetID *int64          `json:"robloxAssetId"`
	DownloadURL   *string         `json:"downloadUrl,omitempty"`
	IsActive      bool            `json:"isActive"`
	Metadata      json.RawMessage `json:"metadata"`
	CreatedAt     time.Time       `json:"createdAt"`
	UpdatedAt     time.Time       `json:"updatedAt"`
	// CreditUnits makes the product a credit pack: each completed sale
	// grants the buyer this many obfuscation credits.
	CreditUnits *int `json:"creditUnits"`
	// What buying the product licenses (at most one is set): a license
	// in this whitelist system, or in this developer product.
	WhitelistSystemID  *string `json:"whitelistSystemId"`
	DeveloperProductID *string `json:"developerProductId"`
}

func productResource(p store.Product) ProductResource {
	r := ProductResource{
		ID: p.ID, StoreID: p.StoreID, Name: p.Name, Description: p.Description, PriceCents: p.PriceCents,
		Currency: p.Currency, RobloxAssetID: p.RobloxAssetID, IsActive: p.IsActive, Metadata: p.Metadata,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, CreditUnits: p.CreditUnits,
		WhitelistSystemID: p.WhitelistSystemID, DeveloperProductID: p.DeveloperProductID,
	}
	if p.OwnedByViewer {
		r.DownloadURL = p.DownloadURL
	}
	return r
}

// Largest price accepted: a million dollars in cents, far above any real
// product and far below integer overflow.
const maxPriceCents = 100_000_000

// ProductInput is the body of POST and PATCH /api/products. storeId is
// required on create and cannot change afterwards; downloadUrl null clears
// it. whitelistSystemId or developerProductId (one of the caller's own)
// makes each purchase issue the buyer a license there; setting one clears
// the other, null clears it.
type ProductInput struct {
	StoreID       *string         `json:"storeId"`
	Name          *string         `json:"name"`
	Description   *string         `json:"description"`
	PriceCents    *int            `json:"priceCents"`
	Currency      *string         `json:"currency"`
	RobloxAssetID *int64          `json:"robloxAssetId"`
	DownloadURL   Field[string]   `json:"downloadUrl"`
	IsActive      *bool           `json:"isActive"`
	Metadata      json.RawMessage `json:"metadata"`
	CreditUnits   Field[int]      `json:"creditUnits"` // null: not a credit pack

	WhitelistSystemID  Field[string] `json:"whitelistSystemId"`
	DeveloperProductID Field[string] `json:"developerProductId"`
}

func (in *ProductInput) validate(create bool) error {
	if create {
		if err := required("storeId", in.StoreID); err != nil {
			return err
		}
		id, err := parseUUID("storeId", *in.StoreID)
		if err != nil {
			return err
		}
		in.StoreID = &id
		if err := required("name", in.Name); err != nil {
			return err
		}
		if err := required("priceCents", in.PriceCents); err != nil {
			return err
		}
	} else if in.StoreID != nil {
		return invalid("storeId", "cannot be changed; create the product in the other store")
	}
	if err := checkText("name", in.Name, 1, 200); err != nil {
		return err
	}
	if err := checkText("description", in.Description, 0, 5000); err != nil {
		return err
	}
	if err := checkRange("priceCents", in.PriceCents, 0, maxPriceCents); err != nil {
		return err
	}
	if err := checkCurrency(in.Currency); err != nil {
		return err
	}
	if err := checkPositive64("robloxAssetId", in.RobloxAssetID); err != nil {
		return err
	}
	if url := in.DownloadURL.Ptr(); url != nil {
		if err := checkURL("downloadUrl", url); err != nil {
			return err
		}
		in.DownloadURL.Value = *url // trimmed
	}
	if err := checkRange("creditUnits", in.CreditUnits.Ptr(), 1, maxUnits); err != nil {
		return err
	}
	if in.WhitelistSystemID.Ptr() != nil && in.DeveloperProductID.Ptr() != nil {
		return invalid("developerProductId", "a product licenses a whitelist system or a developer product, not both")
	}
	for _, f := range []struct {
		name string
		v    *Field[string]
	}{{"whitelistSystemId", &in.WhitelistSystemID}, {"developerProductId", &in.DeveloperProductID}} {
		if id := f.v.Ptr(); id != nil {
			u, err := parseUUID(f.name, *id)
			if err != nil {
				return err
			}
			f.v.Value = u
		}
	}
	return checkMetadata(in.Metadata)
}

// checkTargets makes sure a product licenses only the caller's own
// whitelist system or developer product.
func (s *Service) checkTargets(ctx context.Context, userID string, in ProductInput) error {
	if id := in.WhitelistSystemID.Ptr(); id != nil {
		if _, err := s.repo.GetWhitelistSystem(ctx, userID, *id); err != nil {
			return mapErr(err, "whitelist system")
		}
	}
	if id := in.DeveloperProductID.Ptr(); id != nil {
		if _, err := s.repo.GetDeveloperProduct(ctx, userID, *id); err != nil {
			return mapErr(err, "developer product")
		}
	}
	return nil
}

func (in ProductInput) fields() store.ProductFields {
	return store.ProductFields{
		Name: in.Name, Description: in.Description, PriceCents: in.PriceCents, Currency: in.Currency,
		RobloxAssetID: in.RobloxAssetID, DownloadURL: in.DownloadURL.Ptr(), ClearDownloadURL: in.DownloadURL.Null,
		IsActive: in.IsActive, Metadata: in.Metadata,
		CreditUnits: in.CreditUnits.Ptr(), ClearCreditUnits: in.CreditUnits.Null,
		WhitelistSystemID: in.WhitelistSystemID.Ptr(), ClearWhitelistSystemID: in.WhitelistSystemID.Null,
		DeveloperProductID: in.DeveloperProductID.Ptr(), ClearDeveloperProductID: in.DeveloperProductID.Null,
	}
}

// CreateProduct adds a product to userID's store in.StoreID; a store that
// is not userID's is NOT_FOUND.
func (s *Service) CreateProduct(ctx context.Context, userID string, in ProductInput) (ProductResource, error) {
	if err := in.validate(true); err != nil {
		return ProductResource{}, err
	}
	if err := s.checkTargets(ctx, userID, in); err != nil {
		return ProductResource{}, err
	}
	p, err := s.repo.CreateProduct(ctx, userID, *in.StoreID, in.fields())
	if err != nil {
		return ProductResource{}, mapErr(err, "store")
	}
	return productResource(p), s.auditTarget(ctx, userID, in, p)
}

// auditTarget records a change of what a product's purchase licenses (its
// whitelist system or developer product), when the body set one: it decides
// who gets licenses for money.
func (s *Service) auditTarget(ctx context.Context, userID string, in ProductInput, p store.Product) error {
	if !in.WhitelistSystemID.Set && !in.DeveloperProductID.Set {
		return nil
	}
	err := s.aud.Record(ctx, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: userID,
		Action: "product.license_target", ResourceType: "product", ResourceID: p.ID, Result: vectabase.ResultSuccess,
		Details: map[string]any{"whitelistSystemId": p.WhitelistSystemID, "developerProductId": p.DeveloperProductID}})
	if err != nil {
		return vectabase.WrapInternal(fmt.Errorf("marketplace: audit product.license_target: %w", err))
	}
	return nil
}

// UpdateProduct changes product id of one of userID's stores.
func (s *Service) UpdateProduct(ctx context.Context, userID, id string, in ProductInput) (ProductResource, error) {
	if err := in.validate(false); err != nil {
		return ProductResource{}, err
	}
	if err := s.checkTargets(ctx, userID, in); err != nil {
		return ProductResource{}, err
	}
	p, err := s.repo.UpdateProduct(ctx, userID, id, in.fields())
	if err != nil {
		return ProductResource{}, mapErr(err, "product")
	}
	return productResource(p), s.auditTarget(ctx, userID, in, p)
}

// ListProducts lists products for viewerID ("" anonymous). Without storeID
// a signed-in caller gets their own products (all of them); otherwise, or
// with mine=false, the list is the active products (of storeID when set)
// plus the caller's own inactive ones.
func (s *Service) ListProducts(ctx context.Context, viewerID, storeID, mine string, p store.Page) (list[ProductResource], error) {
	f := store.ProductFilter{ViewerID: viewerID, Mine: viewerID != "" && storeID == ""}
	switch mine {
	case "":
	case "true":
		if viewerID == "" {
			return list[ProductResource]{}, invalid("mine", "needs a signed-in caller")
		}
	case "false":
		f.Mine = false
	default:
		return list[ProductResource]{}, invalid("mine", "must be true or false")
	}
	if storeID != "" {
		id, err := parseUUID("storeId", storeID)
		if err != nil {
			return list[ProductResource]{}, err
		}
		f.StoreID = id
	}
	rows, next, err := s.repo.ListProducts(ctx, f, p)
	if err != nil {
		return list[ProductResource]{}, err
	}
	return listOf(rows, next, productResource), nil
}

func (s *Service) handleCreateProduct(a Auth) fiber.Handler {
	return withBody(fiber.StatusCreated, nil, func(c *fiber.Ctx, _ []string, in ProductInput) (ProductResource, error) {
		return s.CreateProduct(c.UserContext(), a.UserID(c), in)
	})
}

func (s *Service) handleListProducts(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		p, err := pageOf(c)
		if err != nil {
			return err
		}
		out, err := s.ListProducts(c.UserContext(), a.UserID(c), c.Query("storeId"), c.Query("mine"), p)
		if err != nil {
			return err
		}
		return c.JSON(out)
	}
}

func (s *Service) handleGetProduct(a Auth) fiber.Handler {
	return withIDs([]string{"id"}, func(c *fiber.Ctx, id []string) (ProductResource, error) {
		p, err := s.repo.GetProduct(c.UserContext(), a.UserID(c), id[0])
		if err != nil {
			return ProductResource{}, mapErr(err, "product")
		}
		return productResource(p), nil
	})
}

func (s *Service) handleUpdateProduct(a Auth) fiber.Handler {
	return withBody(fiber.StatusOK, []string{"id"}, func(c *fiber.Ctx, id []string, in ProductInput) (ProductResource, error) {
		return s.UpdateProduct(c.UserContext(), a.UserID(c), id[0], in)
	})
}

func (s *Service) handleDeleteProduct(a Auth) fiber.Handler {
	return deleting([]string{"id"}, func(c *fiber.Ctx, id []string) error {
		return mapErr(s.repo.DeleteProduct(c.UserContext(), a.UserID(c), id[0]), "product")
	})
}
