package marketplace

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// SystemResource is a whitelist system.
type SystemResource struct {
	ID          string    `json:"id"`
	OwnerID     string    `json:"ownerId"`
	StoreID     *string   `json:"storeId"`
	Name        string    `json:"name"`
	Description *string   `json:"description"`
	MaxUsers    *int      `json:"maxUsers"`
	IsActive    bool      `json:"isActive"`
	CreatedAt   time.Time `json:"createdAt"`
}

func systemResource(w store.WhitelistSystem) SystemResource {
	return SystemResource{ID: w.ID, OwnerID: w.OwnerID, StoreID: w.StoreID, Name: w.Name, Description: w.Description,
		MaxUsers: w.MaxUsers, IsActive: w.IsActive, CreatedAt: w.CreatedAt}
}

// WhitelistUserResource is a whitelisted player. LicenseKey is present only
// in the response that created the entry; the hardware id is never shown,
// only whether one is bound.
type WhitelistUserResource struct {
	ID             string     `json:"id"`
	SystemID       string     `json:"systemId"`
	RobloxUserID   int64      `json:"robloxUserId"`
	RobloxUsername *string    `json:"robloxUsername"`
	DiscordID      *string    `json:"discordId"`
	HWIDBound      bool       `json:"hwidBound"`
	ExpiresAt      *time.Time `json:"expiresAt"`
	CreatedAt      time.Time  `json:"createdAt"`
	LicenseKey     string     `json:"licenseKey,omitempty"`
	// Status is active, revoked or expired; SaleID names the purchase that
	// issued the entry (null for one made by hand or by the bot).
	Status string  `json:"status"`
	SaleID *string `json:"saleId"`
}

func wlUserResource(u store.WhitelistUser) WhitelistUserResource {
	return WhitelistUserResource{ID: u.ID, SystemID: u.SystemID, RobloxUserID: u.RobloxUserID, RobloxUsername: u.RobloxUsername,
		DiscordID: u.DiscordID, HWIDBound: u.HasHWID, ExpiresAt: u.ExpiresAt, CreatedAt: u.CreatedAt, Status: u.Status, SaleID: u.SaleID}
}

// SystemInput is the body of POST and PATCH /api/whitelist/systems; null
// storeId or maxUsers clears them.
type SystemInput struct {
	Name        *string       `json:"name"`
	Description *string       `json:"description"`
	StoreID     Field[string] `json:"storeId"`
	MaxUsers    Field[int]    `json:"maxUsers"`
	IsActive    *bool         `json:"isActive"`
}

func (in *SystemInput) validate(create bool) error {
	if create {
		if err := required("name", in.Name); err != nil {
			return err
		}
	}
	if err := checkText("name", in.Name, 1, 100); err != nil {
		return err
	}
	if err := checkText("description", in.Description, 0, 2000); err != nil {
		return err
	}
	if id := in.StoreID.Ptr(); id != nil {
		u, err := parseUUID("storeId", *id)
		if err != nil {
			return err
		}
		in.StoreID.Value = u
	}
	return checkRange("maxUsers", in.MaxUsers.Ptr(), 1, 1_000_000)
}

func (in SystemInput) fields() store.WhitelistSystemFields {
	return store.WhitelistSystemFields{Name: in.Name, Description: in.Description,
		StoreID: in.StoreID.Ptr(), ClearStoreID: in.StoreID.Null,
		MaxUsers: in.MaxUsers.Ptr(), ClearMaxUsers: in.MaxUsers.Null, IsActive: in.IsActive}
}

// checkStore makes sure a system is linked only to the caller's own store.
func (s *Service) checkStore(ctx context.Context, userID string, storeID *string) error {
	if storeID == nil {
		return nil
	}
	_, err := s.repo.GetStore(ctx, userID, *storeID)
	return mapErr(err, "store")
}

// CreateSystem creates a whitelist system owned by userID.
func (s *Service) CreateSystem(ctx context.Context, userID string, in SystemInput) (SystemResource, error) {
	if err := in.validate(true); err != nil {
		return SystemResource{}, err
	}
	if err := s.checkStore(ctx, userID, in.StoreID.Ptr()); err != nil {
		return SystemResource{}, err
	}
	w, err := s.repo.CreateWhitelistSystem(ctx, userID, in.fields())
	return systemResource(w), mapErr(err, "whitelist system")
}

// UpdateSystem changes userID's system id.
func (s *Service) UpdateSystem(ctx context.Context, userID, id string, in SystemInput) (SystemResource, error) {
	if err := in.validate(false); err != nil {
		return SystemResource{}, err
	}
	if err := s.checkStore(ctx, userID, in.StoreID.Ptr()); err != nil {
		return SystemResource{}, err
	}
	w, err := s.repo.UpdateWhitelistSystem(ctx, userID, id, in.fields())
	return systemResource(w), mapErr(err, "whitelist system")
}

// WhitelistUserInput is the body of POST and PATCH
// /api/whitelist/systems/:id/users. expiresAt null (on update) makes the
// entry permanent; resetHwid unbinds the player's hardware id.
type WhitelistUserInput struct {
	RobloxUserID   *RobloxID     `json:"robloxUserId"`
	RobloxUsername *string       `json:"robloxUsername"`
	DiscordID      *string       `json:"discordId"`
	ExpiresAt      Field[string] `json:"expiresAt"`
	ResetHWID      bool          `json:"resetHwid"`
	// Status (update only): revoked revokes the license at once, active
	// restores it. Audited.
	Status *string `json:"status"`
}

var (
	robloxNameRE = regexp.MustCompile(`^[A-Za-z0-9_]{3,20}$`)
	snowflakeRE  = regexp.MustCompile(`^[0-9]{15,20}$`)
)

func (in *WhitelistUserInput) fields(create bool) (store.WhitelistUserFields, error) {
	f := store.WhitelistUserFields{RobloxUserID: in.RobloxUserID.int64Ptr(), RobloxUsername: in.RobloxUsername,
		DiscordID: in.DiscordID, ClearExpiresAt: in.ExpiresAt.Null, ResetHWID: in.ResetHWID, Status: in.Status}
	if in.Status != nil && *in.Status != "active" && *in.Status != "revoked" {
		return f, invalid("status", "must be active or revoked")
	}
	if create {
		if err := required("robloxUserId", in.RobloxUserID); err != nil {
			return f, err
		}
		if in.ResetHWID {
			return f, invalid("resetHwid", "applies only to an existing entry")
		}
		if in.Status != nil {
			return f, invalid("status", "applies only to an existing entry")
		}
	}
	if err := checkPositive64("robloxUserId", f.RobloxUserID); err != nil {
		return f, err
	}
	if in.RobloxUsername != nil && !robloxNameRE.MatchString(*in.RobloxUsername) {
		return f, invalid("robloxUsername", "must be 3 to 20 letters, digits or underscores")
	}
	if in.DiscordID != nil && !snowflakeRE.MatchString(*in.DiscordID) {
		return f, invalid("discordId", "must be a Discord user id (15 to 20 digits)")
	}
	if v := in.ExpiresAt.Ptr(); v != nil {
		t, err := parseTime("expiresAt", *v)
		if err != nil {
			return f, err
		}
		f.ExpiresAt = &t
	}
	return f, nil
}

// licenseEncoding writes license keys in base32 without padding: uppercase
// letters and digits 2-7, easy to read out and type.
var licenseEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newLicenseKey returns "VB-" and 160 random bits as four groups of eight
// base32 characters.
func newLicenseKey() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	s := licenseEncoding.EncodeToString(b)
	return "VB-" + s[0:8] + "-" + s[8:16] + "-" + s[16:24] + "-" + s[24:32]
}

// normalizeLicenseKey accepts what a player may paste: surrounding spaces
// and lowercase.
func normalizeLicenseKey(k string) string { return strings.ToUpper(strings.TrimSpace(k)) }

// CreateWhitelistUser whitelists a player in userID's system systemID with a
// new license key, returned in this response only.
func (s *Service) CreateWhitelistUser(ctx context.Context, userID, systemID string, in WhitelistUserInput) (WhitelistUserResource, error) {
	f, err := in.fields(true)
	if err != nil {
		return WhitelistUserResource{}, err
	}
	key := newLicenseKey()
	u, err := s.repo.CreateWhitelistUser(ctx, userID, systemID, f, key)
	if errors.Is(err, store.ErrNotFound) {
		return WhitelistUserResource{}, mapErr(err, "whitelist system")
	}
	if err != nil {
		return WhitelistUserResource{}, mapErr(err, "whitelist user")
	}
	r := wlUserResource(u)
	r.LicenseKey = key
	return r, nil
}

// UpdateWhitelistUser changes entry entryID of userID's system systemID.
func (s *Service) UpdateWhitelistUser(ctx context.Context, userID, systemID, entryID string, in WhitelistUserInput) (WhitelistUserResource, error) {
	f, err := in.fields(false)
	if err != nil {
		return WhitelistUserResource{}, err
	}
	u, err := s.repo.UpdateWhitelistUser(ctx, userID, systemID, entryID, f)
	if err != nil {
		return WhitelistUserResource{}, mapErr(err, "whitelist user")
	}
	if in.Status != nil || in.ResetHWID {
		// Revoking, restoring and unbinding a license are audited.
		action := "license.hwid_reset"
		if in.Status != nil {
			action = map[string]string{"revoked": "license.revoked", "active": "license.restored"}[*in.Status]
		}
		if err := s.aud.Record(ctx, vectabase.AuditEvent{ActorType: vectabase.ActorUser, ActorID: userID, Action: action,
			ResourceType: "license", ResourceID: u.ID, Result: vectabase.ResultSuccess,
			Details: map[string]any{"kind": "system", "systemId": systemID, "hwidReset": in.ResetHWID}}); err != nil {
			return WhitelistUserResource{}, vectabase.WrapInternal(fmt.Errorf("marketplace: audit %s: %w", action, err))
		}
	}
	return wlUserResource(u), nil
}

func (s *Service) handleCreateSystem(a Auth) fiber.Handler {
	return withBody(fiber.StatusCreated, nil, func(c *fiber.Ctx, _ []string, in SystemInput) (SystemResource, error) {
		return s.CreateSystem(c.UserContext(), a.UserID(c), in)
	})
}

func (s *Service) handleListSystems(a Auth) fiber.Handler {
	return listing(nil, func(c *fiber.Ctx, _ []string, p store.Page) ([]store.WhitelistSystem, *store.Cursor, error) {
		return s.repo.ListWhitelistSystems(c.UserContext(), a.UserID(c), p)
	}, systemResource)
}

func (s *Service) handleGetSystem(a Auth) fiber.Handler {
	return withIDs([]string{"id"}, func(c *fiber.Ctx, id []string) (SystemResource, error) {
		w, err := s.repo.GetWhitelistSystem(c.UserContext(), a.UserID(c), id[0])
		if err != nil {
			return SystemResource{}, mapErr(err, "whitelist system")
		}
		return systemResource(w), nil
	})
}

func (s *Service) handleUpdateSystem(a Auth) fiber.Handler {
	return withBody(fiber.StatusOK, []string{"id"}, func(c *fiber.Ctx, id []string, in SystemInput) (SystemResource, error) {
		return s.UpdateSystem(c.UserContext(), a.UserID(c), id[0], in)
	})
}

func (s *Service) handleDeleteSystem(a Auth) fiber.Handler {
	return deleting([]string{"id"}, func(c *fiber.Ctx, id []string) error {
		return mapErr(s.repo.DeleteWhitelistSystem(c.UserContext(), a.UserID(c), id[0]), "whitelist system")
	})
}

func (s *Service) handleCreateWLUser(a Auth) fiber.Handler {
	return withBody(fiber.StatusCreated, []string{"id"}, func(c *fiber.Ctx, sys []string, in WhitelistUserInput) (WhitelistUserResource, error) {
		return s.CreateWhitelistUser(c.UserContext(), a.UserID(c), sys[0], in)
	})
}

func (s *Service) handleListWLUsers(a Auth) fiber.Handler {
	return listing([]string{"id"}, func(c *fiber.Ctx, sys []string, p store.Page) ([]store.WhitelistUser, *store.Cursor, error) {
		rows, next, err := s.repo.ListWhitelistUsers(c.UserContext(), a.UserID(c), sys[0], p)
		return rows, next, mapErr(err, "whitelist system")
	}, wlUserResource)
}

func (s *Service) handleGetWLUser(a Auth) fiber.Handler {
	return withIDs([]string{"id", "userId"}, func(c *fiber.Ctx, ids []string) (WhitelistUserResource, error) {
		u, err := s.repo.GetWhitelistUser(c.UserContext(), a.UserID(c), ids[0], ids[1])
		if err != nil {
			return WhitelistUserResource{}, mapErr(err, "whitelist user")
		}
		return wlUserResource(u), nil
	})
}

func (s *Service) handleUpdateWLUser(a Auth) fiber.Handler {
	return withBody(fiber.StatusOK, []string{"id", "userId"}, func(c *fiber.Ctx, ids []string, in WhitelistUserInput) (WhitelistUserResource, error) {
		return s.UpdateWhitelistUser(c.UserContext(), a.UserID(c), ids[0], ids[1], in)
	})
}

func (s *Service) handleDeleteWLUser(a Auth) fiber.Handler {
	return deleting([]string{"id", "userId"}, func(c *fiber.Ctx, ids []string) error {
		return mapErr(s.repo.DeleteWhitelistUser(c.UserContext(), a.UserID(c), ids[0], ids[1]), "whitelist user")
	})
}
