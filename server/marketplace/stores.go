package marketplace

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase/store"
)

// StoreResource is a store as the API shows it to its owner. The Stripe
// account id is only ever shown masked.
type StoreResource struct {
	ID              string    `json:"id"`
	OwnerID         string    `json:"ownerId"`
	Name            string    `json:"name"`
	Slug            string    `json:"slug"`
	Description     *string   `json:"description"`
	LogoURL         *string   `json:"logoUrl"`
	StripeAccountID *string   `json:"stripeAccountId"`
	StripeOnboarded bool      `json:"stripeOnboarded"`
	CommissionBps   int       `json:"commissionBps"`
	CreatedAt       time.Time `json:"createdAt"`
	UpdatedAt       time.Time `json:"updatedAt"`
}

func storeResource(s store.MarketStore) StoreResource {
	r := StoreResource{
		ID: s.ID, OwnerID: s.OwnerID, Name: s.Name, Slug: s.Slug, Description: s.Description, LogoURL: s.LogoURL,
		StripeOnboarded: s.StripeOnboarded, CommissionBps: s.CommissionBps, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
	}
	if s.StripeAccountMasked != "" {
		m := s.StripeAccountMasked
		r.StripeAccountID = &m
	}
	return r
}

// StoreInput is the body of POST and PATCH /api/stores. The commission and
// the Stripe account are the platform's to set, not the owner's.
type StoreInput struct {
	Name        *string `json:"name"`
	Slug        *string `json:"slug"`
	Description *string `json:"description"`
	LogoURL     *string `json:"logoUrl"`
}

func (in *StoreInput) validate(create bool) error {
	if create {
		if err := required("name", in.Name); err != nil {
			return err
		}
	}
	if err := checkText("name", in.Name, 1, 100); err != nil {
		return err
	}
	if err := checkSlug(in.Slug); err != nil {
		return err
	}
	if err := checkText("description", in.Description, 0, 2000); err != nil {
		return err
	}
	return checkURL("logoUrl", in.LogoURL)
}

func (in StoreInput) fields() store.StoreFields {
	return store.StoreFields{Name: in.Name, Slug: in.Slug, Description: in.Description, LogoURL: in.LogoURL}
}

// CreateStore creates a store owned by userID. A slug given and taken is
// CONFLICT; without one, the slug is made from the name, with a random
// suffix when that is taken.
func (s *Service) CreateStore(ctx context.Context, userID string, in StoreInput) (StoreResource, error) {
	if err := in.validate(true); err != nil {
		return StoreResource{}, err
	}
	derived := in.Slug == nil
	if derived {
		slug := slugify(*in.Name)
		in.Slug = &slug
	}
	st, err := s.repo.CreateStore(ctx, userID, in.fields())
	if derived && errors.Is(err, store.ErrConflict) {
		slug := strings.TrimSuffix((*in.Slug)[:min(len(*in.Slug), 56)], "-") + "-" + randomSuffix()
		in.Slug = &slug
		st, err = s.repo.CreateStore(ctx, userID, in.fields())
	}
	return storeResource(st), mapErr(err, "store")
}

// slugify turns a store name into a slug: lowercase ASCII letters and
// digits, other runs as one hyphen, at most 63 characters; "store" when
// nothing is left.
func slugify(name string) string {
	var b strings.Builder
	hyphen := false
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			if hyphen && b.Len() > 0 {
				b.WriteByte('-')
			}
			hyphen = false
			b.WriteRune(r)
		default:
			hyphen = true
		}
		if b.Len() >= 63 {
			break
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	if s == "" {
		return "store"
	}
	return s
}

// randomSuffix is six random base36 characters.
func randomSuffix() string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 6)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	for i := range b {
		b[i] = digits[int(b[i])%len(digits)]
	}
	return string(b)
}

// UpdateStore changes userID's store id; another user's store is NOT_FOUND.
func (s *Service) UpdateStore(ctx context.Context, userID, id string, in StoreInput) (StoreResource, error) {
	if err := in.validate(false); err != nil {
		return StoreResource{}, err
	}
	st, err := s.repo.UpdateStore(ctx, userID, id, in.fields())
	return storeResource(st), mapErr(err, "store")
}

func (s *Service) handleCreateStore(a Auth) fiber.Handler {
	return withBody(fiber.StatusCreated, nil, func(c *fiber.Ctx, _ []string, in StoreInput) (StoreResource, error) {
		return s.CreateStore(c.UserContext(), a.UserID(c), in)
	})
}

func (s *Service) handleListStores(a Auth) fiber.Handler {
	return listing(nil, func(c *fiber.Ctx, _ []string, p store.Page) ([]store.MarketStore, *store.Cursor, error) {
		return s.repo.ListStores(c.UserContext(), a.UserID(c), p)
	}, storeResource)
}

func (s *Service) handleGetStore(a Auth) fiber.Handler {
	return withIDs([]string{"id"}, func(c *fiber.Ctx, id []string) (StoreResource, error) {
		st, err := s.repo.GetStore(c.UserContext(), a.UserID(c), id[0])
		if err != nil {
			return StoreResource{}, mapErr(err, "store")
		}
		return storeResource(st), nil
	})
}

func (s *Service) handleUpdateStore(a Auth) fiber.Handler {
	return withBody(fiber.StatusOK, []string{"id"}, func(c *fiber.Ctx, id []string, in StoreInput) (StoreResource, error) {
		return s.UpdateStore(c.UserContext(), a.UserID(c), id[0], in)
	})
}

func (s *Service) handleDeleteStore(a Auth) fiber.Handler {
	return deleting([]string{"id"}, func(c *fiber.Ctx, id []string) error {
		return mapErr(s.repo.DeleteStore(c.UserContext(), a.UserID(c), id[0]), "store")
	})
}
