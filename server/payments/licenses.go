package payments

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// Auditor records audit events (vault/audit.Log); Record returns nil only
// once the event is stored.
type Auditor interface {
	Record(ctx context.Context, ev vectabase.AuditEvent) error
}

// SetAuditor makes the service audit billing changes (subscriptions,
// credit grants: billing.go) and every license a webhook event issues
// or revokes, and every license key the checkout success page reveals,
// the licenses inside the transaction that does it: an event whose audit row cannot be
// written is rolled back and answered 500, so Stripe delivers it again.
// Call it before serving. Without an auditor nothing is audited (tests).
func (s *Service) SetAuditor(a Auditor) {
	s.aud = a
	s.repo.OnLicenseChange(s.auditLicense)
}

// auditLicense records what a Stripe event did to a license, as the system
// actor: never the key.
func (s *Service) auditLicense(ctx context.Context, ch store.LicenseChange) error {
	if s.aud == nil {
		return nil
	}
	details := map[string]any{"kind": ch.Kind, "saleId": ch.SaleID, "stripeEvent": Mask(ch.EventID)}
	if ch.BuyerID != "" {
		details["buyerId"] = ch.BuyerID
	}
	if ch.Reason != "" {
		details["reason"] = ch.Reason
	}
	err := s.aud.Record(ctx, vectabase.AuditEvent{ActorType: vectabase.ActorSystem, ActorID: "stripe-webhook",
		Action: "license." + ch.Action, ResourceType: "license", ResourceID: ch.LicenseID,
		Result: vectabase.ResultSuccess, Details: details})
	if err != nil {
		return fmt.Errorf("payments: audit license.%s: %w", ch.Action, err)
	}
	return nil
}

// CheckoutLicenseResult is the answer of GET /api/stripe/checkout/:sessionId:
// the sale a Checkout Session paid for and the license it issued. The
// license's key is in the first answer only.
type CheckoutLicenseResult struct {
	SaleID    string           `json:"saleId"`
	Status    string           `json:"status"`
	ProductID string           `json:"productId"`
	License   *CheckoutLicense `json:"license"`
}

// CheckoutLicense is a license as its buyer sees it on the success page.
type CheckoutLicense struct {
	ID                 string     `json:"id"`
	Kind               string     `json:"kind"`
	SystemID           *string    `json:"systemId"`
	DeveloperProductID *string    `json:"developerProductId"`
	RobloxUserID       int64      `json:"robloxUserId"`
	Status             string     `json:"status"`
	ExpiresAt          *time.Time `json:"expiresAt"`
	CreatedAt          time.Time  `json:"createdAt"`
	LicenseKey         string     `json:"licenseKey,omitempty"`
}

// CheckoutLicenseLookup answers the checkout success page. The Checkout
// Session id is the proof: Stripe gives it only to the browser that paid
// (the checkout route's answer and the success URL's
// {CHECKOUT_SESSION_ID}), so whoever presents it is the buyer, signed in or
// not. The license key is revealed once, audited; later look-ups see the
// license without it (a signed-in buyer keeps it at /api/me/licenses). A
// signed-in caller looking up an anonymous purchase becomes its buyer.
// Errors: NOT_FOUND while no paid sale is recorded for the session (the
// webhook may not have arrived yet: try again shortly).
func (s *Service) CheckoutLicenseLookup(ctx context.Context, sessionID, callerID, ip, requestID string) (CheckoutLicenseResult, error) {
	if !validToken(sessionID, 255) {
		return CheckoutLicenseResult{}, vectabase.Errorf(vectabase.ENOTFOUND, "checkout session not found")
	}
	actorType := vectabase.ActorAnonymous
	if callerID != "" {
		actorType = vectabase.ActorUser
	}
	res, err := s.repo.ClaimCheckoutLicense(ctx, sessionID, callerID, func(ctx context.Context, action, resourceID string, details map[string]any) error {
		if s.aud == nil {
			return nil
		}
		resourceType := "license"
		if action == "sale.claimed" {
			resourceType = "sale"
		}
		err := s.aud.Record(ctx, vectabase.AuditEvent{ActorType: actorType, ActorID: callerID,
			Action: action, ResourceType: resourceType, ResourceID: resourceID, Result: vectabase.ResultSuccess,
			IP: ip, RequestID: requestID, Details: details})
		if err != nil {
			return vectabase.WrapInternal(fmt.Errorf("payments: audit %s: %w", action, err))
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return CheckoutLicenseResult{}, vectabase.Errorf(vectabase.ENOTFOUND, "no paid checkout is recorded for this session yet")
	}
	if err != nil {
		return CheckoutLicenseResult{}, err
	}
	out := CheckoutLicenseResult{SaleID: res.SaleID, Status: res.SaleStatus, ProductID: res.ProductID}
	if l := res.License; l != nil {
		out.License = &CheckoutLicense{ID: l.ID, Kind: l.Kind, SystemID: l.SystemID, DeveloperProductID: l.DeveloperProductID,
			RobloxUserID: l.RobloxUserID, Status: l.Status, ExpiresAt: l.ExpiresAt, CreatedAt: l.CreatedAt}
		if res.KeyShown {
			out.License.LicenseKey = l.Key
		}
	}
	return out, nil
}
