package marketplace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store"
)

// ScopeObfuscate is the scope POST /api/developer/obfuscation/usage needs.
const ScopeObfuscate = "obfuscate"

const (
	// maxUnits bounds one consumption (and a credit pack): far above any
	// script, far below int32 overflow of a balance.
	maxUnits = 1_000_000
	// maxIdempotencyKey is Stripe's bound on Idempotency-Key.
	maxIdempotencyKey = 255
	headerIdempotency = "Idempotency-Key"
)

// UsageInput is the body of POST /api/developer/obfuscation/usage.
type UsageInput struct {
	Units        *int    `json:"units"`
	ScriptSHA256 *string `json:"scriptSha256"`
}

// validate checks in and returns the normalised script hash ("" for none).
func (in UsageInput) validate() (string, error) {
	if err := required("units", in.Units); err != nil {
		return "", err
	}
	if err := checkRange("units", in.Units, 1, maxUnits); err != nil {
		return "", err
	}
	if in.ScriptSHA256 == nil {
		return "", nil
	}
	h := strings.ToLower(*in.ScriptSHA256)
	if len(h) != 64 {
		return "", invalid("scriptSha256", "must be 64 hexadecimal digits (SHA-256)")
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", invalid("scriptSha256", "must be 64 hexadecimal digits (SHA-256)")
	}
	return h, nil
}

// requestHash identifies a consumption's body, so a retry with the same
// Idempotency-Key and another body is told apart from a true retry.
func requestHash(units int, script string) string {
	sum := sha256.Sum256([]byte("units=" + strconv.Itoa(units) + "\nscriptSha256=" + script))
	return hex.EncodeToString(sum[:])
}

// idempotencyKey reads the optional Idempotency-Key header: 1 to 255
// printable ASCII characters.
func idempotencyKey(c *fiber.Ctx) (string, error) {
	raw := c.Get(headerIdempotency)
	if raw == "" {
		return "", nil
	}
	if len(raw) > maxIdempotencyKey {
		return "", vectabase.Errorf(vectabase.EBADREQUEST, "Idempotency-Key must be at most %d characters", maxIdempotencyKey)
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] < ' ' || raw[i] > '~' {
			return "", vectabase.Errorf(vectabase.EBADREQUEST, "Idempotency-Key must be printable ASCII")
		}
	}
	return utils.CopyString(raw), nil
}

// UsageResult is the answer of a consumption: 201, and the same body again
// for a retry with the same Idempotency-Key (with Idempotent-Replayed: true).
type UsageResult struct {
	ID           string    `json:"id"`
	Units        int       `json:"units"`
	Balance      int       `json:"balance"` // left right after this consumption
	ScriptSHA256 *string   `json:"scriptSha256"`
	CreatedAt    time.Time `json:"createdAt"`
}

// Consume consumes in.Units credits of key u's developer. A request with an
// Idempotency-Key the key used before consumes nothing and answers the
// first request's result (replayed), or CONFLICT when its body differs.
// INSUFFICIENT_CREDITS when the balance is short. Every consumption (and
// every replay) is audited after it commits: when that audit fails the
// caller gets INTERNAL and, retrying with its Idempotency-Key, a replay
// that is audited again, so no answered consumption goes unaudited.
func (s *Service) Consume(ctx context.Context, u store.KeyUse, in UsageInput, idem, requestID, ip string) (UsageResult, bool, error) {
	script, err := in.validate()
	if err != nil {
		return UsageResult{}, false, err
	}
	hash := requestHash(*in.Units, script)
	r, err := s.repo.ConsumeCredits(ctx, store.Consumption{DeveloperID: u.DeveloperID, APIKeyID: u.KeyID, Units: *in.Units,
		ScriptSHA256: script, IdempotencyKey: idem, RequestHash: hash, RequestID: requestID})
	if errors.Is(err, store.ErrInsufficientCredits) {
		return UsageResult{}, false, vectabase.Errorf(vectabase.EINSUFFICIENTCREDITS, "%d credits requested, %d available", *in.Units, r.Balance)
	}
	if err != nil {
		return UsageResult{}, false, err
	}
	if r.Replayed && r.RequestHash != hash {
		return UsageResult{}, false, vectabase.Errorf(vectabase.ECONFLICT, "Idempotency-Key was already used with a different request body")
	}
	out := UsageResult{ID: r.UsageID, Units: r.Units, Balance: r.Balance, CreatedAt: r.CreatedAt.UTC()}
	if script != "" {
		out.ScriptSHA256 = &script
	}
	err = s.aud.Record(ctx, vectabase.AuditEvent{ActorType: vectabase.ActorAPIKey, ActorID: u.KeyID,
		Action: "credits.consume", ResourceType: "obfuscation_usage", ResourceID: r.UsageID, Result: vectabase.ResultSuccess,
		IP: ip, RequestID: requestID,
		Details: map[string]any{"developerId": u.DeveloperID, "units": r.Units, "balance": r.Balance, "replayed": r.Replayed}})
	if err != nil {
		return UsageResult{}, false, vectabase.WrapInternal(fmt.Errorf("marketplace: audit credits.consume: %w", err))
	}
	return out, r.Replayed, nil
}

// handleUsage is POST /api/developer/obfuscation/usage. As with the
// whitelist check, the key is admitted (401, 429, 403) before the body is
// looked at.
func (s *Service) handleUsage(c *fiber.Ctx) error {
	u, err := s.useKey(c, ScopeObfuscate)
	if err != nil {
		return err
	}
	if err := checkBodySize(c); err != nil {
		return err
	}
	idem, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	var in UsageInput
	if err := server.DecodeJSON(c, &in); err != nil {
		return err
	}
	out, replayed, err := s.Consume(c.UserContext(), u, in, idem, server.RequestID(c), utils.CopyString(c.IP()))
	if err != nil {
		return err
	}
	if replayed {
		c.Set("Idempotent-Replayed", "true")
	}
	return c.Status(fiber.StatusCreated).JSON(out)
}

// CreditsResult is the body of GET /api/developer/credits: the balance and
// one page of consumptions, newest first.
type CreditsResult struct {
	Balance    int             `json:"balance"`
	Items      []UsageResource `json:"items"`
	NextCursor *string         `json:"nextCursor"`
}

// UsageResource is a row of obfuscation_usage.
type UsageResource struct {
	ID           string    `json:"id"`
	APIKeyID     *string   `json:"apiKeyId"`
	Units        int       `json:"units"`
	ScriptSHA256 *string   `json:"scriptSha256"`
	BytesIn      *int      `json:"bytesIn"`
	CreatedAt    time.Time `json:"createdAt"`
}

func usageResource(u store.Usage) UsageResource {
	return UsageResource{ID: u.ID, APIKeyID: u.APIKeyID, Units: u.Units, ScriptSHA256: u.ScriptSHA256, BytesIn: u.BytesIn, CreatedAt: u.CreatedAt.UTC()}
}

func (s *Service) handleCredits(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		p, err := pageOf(c)
		if err != nil {
			return err
		}
		ctx, dev := c.UserContext(), a.UserID(c)
		bal, err := s.repo.CreditBalance(ctx, dev)
		if err != nil {
			return err
		}
		rows, next, err := s.repo.ListUsage(ctx, dev, p)
		if err != nil {
			return err
		}
		l := listOf(rows, next, usageResource)
		return c.JSON(CreditsResult{Balance: bal, Items: l.Items, NextCursor: l.NextCursor})
	}
}
