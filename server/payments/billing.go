package payments

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// Developer billing: the platform's own Stripe subscriptions of developers
// (plans that set their API keys' limits) and the credit packs bought
// through checkout (obfuscation credits).

// The billing events the webhook acts on.
const (
	eventSubCreated    = "customer.subscription.created"
	eventSubUpdated    = "customer.subscription.updated"
	eventSubDeleted    = "customer.subscription.deleted"
	eventInvoicePaid   = "invoice.paid"
	eventInvoiceFailed = "invoice.payment_failed"
)

// Subscription metadata naming the developer (a Vectabase user id; the
// first of these keys present) and, when the price is not in
// STRIPE_PLAN_PRICES, the plan. The vectabase_ names match the checkout
// session's metadata.
var (
	metaDeveloper = []string{"vectabase_developer_id", "vectabase_user_id", "developerId", "userId"}
	metaPlan      = []string{"vectabase_plan", "plan"}
)

// metaValue is the value of the first of keys that m holds.
func metaValue(m map[string]string, keys []string) string {
	for _, k := range keys {
		if v, ok := m[k]; ok {
			return v
		}
	}
	return ""
}

func isBillingEvent(t string) bool {
	switch t {
	case eventSubCreated, eventSubUpdated, eventSubDeleted, eventInvoicePaid, eventInvoiceFailed:
		return true
	}
	return false
}

// applyBilling records a subscription or invoice event; ok is false when
// the object does not have the shape its type promises (the caller then
// records the event as ignored).
func (s *Service) applyBilling(ctx context.Context, id, typ string, raw json.RawMessage) (res store.EventResult, ok bool, err error) {
	var e store.SubscriptionEvent
	switch typ {
	case eventSubCreated, eventSubUpdated, eventSubDeleted:
		var sub stripe.Subscription
		if json.Unmarshal(raw, &sub) != nil || !validToken(sub.ID, 255) || !validToken(string(sub.Status), 64) {
			return "", false, nil
		}
		e = store.SubscriptionEvent{SubscriptionID: sub.ID, Status: string(sub.Status), Plan: s.planOf(&sub),
			DeveloperID: metaValue(sub.Metadata, metaDeveloper)}
		if typ == eventSubDeleted {
			e.Status = string(stripe.SubscriptionStatusCanceled)
		}
		if sub.Customer != nil && validToken(sub.Customer.ID, 255) {
			e.CustomerID = sub.Customer.ID
		}
		if sub.CurrentPeriodEnd > 0 {
			t := time.Unix(sub.CurrentPeriodEnd, 0).UTC()
			e.PeriodEnd = &t
		}
	case eventInvoicePaid, eventInvoiceFailed:
		var inv stripe.Invoice
		if json.Unmarshal(raw, &inv) != nil || inv.Subscription == nil || !validToken(inv.Subscription.ID, 255) {
			return "", false, nil
		}
		e = store.SubscriptionEvent{SubscriptionID: inv.Subscription.ID, OnlyKnown: true, Status: string(stripe.SubscriptionStatusActive)}
		if typ == eventInvoiceFailed {
			e.Status = string(stripe.SubscriptionStatusPastDue)
		} else if end := invoicePeriodEnd(&inv); end > 0 {
			t := time.Unix(end, 0).UTC()
			e.PeriodEnd = &t
		}
	default:
		return "", false, nil
	}
	e.EventID, e.Type = id, typ
	res, err = s.repo.RecordSubscription(ctx, e, func(ch store.SubscriptionChange) error {
		action := "subscription.update"
		if ch.Created {
			action = "subscription.create"
		}
		return s.audit(ctx, vectabase.AuditEvent{ActorType: vectabase.ActorSystem, ActorID: "stripe",
			Action: action, ResourceType: "developer_subscription", ResourceID: ch.RowID, Result: vectabase.ResultSuccess,
			Details: map[string]any{"developerId": ch.DeveloperID, "plan": ch.Plan, "status": ch.Status, "event": typ}})
	})
	return res, true, err
}

// planOf is the plan a subscription pays for: the first of its prices that
// STRIPE_PLAN_PRICES names, else its metadata's plan, else "free".
func (s *Service) planOf(sub *stripe.Subscription) string {
	if sub.Items != nil {
		for _, it := range sub.Items.Data {
			if it != nil && it.Price != nil {
				if plan, ok := s.cfg.PlanPrices[it.Price.ID]; ok {
					return plan
				}
			}
		}
	}
	if p := cleanText(metaValue(sub.Metadata, metaPlan), 64); p != "" {
		return p
	}
	return "free"
}

// invoicePeriodEnd is the latest end of the invoice's subscription lines:
// the end of the period the invoice paid for.
func invoicePeriodEnd(inv *stripe.Invoice) int64 {
	var end int64
	if inv.Lines != nil {
		for _, l := range inv.Lines.Data {
			if l != nil && l.Period != nil && l.Period.End > end {
				end = l.Period.End
			}
		}
	}
	return end
}

// creditPackNeedsBuyer refuses an anonymous checkout of a credit pack:
// credits belong to an account, and an anonymous sale would grant none.
func creditPackNeedsBuyer(p store.CheckoutProduct, buyerID string) error {
	if p.CreditUnits != nil && buyerID == "" {
		return vectabase.Errorf(vectabase.EUNAUTHORIZED, "sign in to buy credits: a credit pack is granted to the buyer's account")
	}
	return nil
}

// auditGrants writes the audit rows of the credit grants event id made (a
// credit-pack sale) that are not audited yet: after the sale's commit, and
// again on every redelivery until it succeeds.
func (s *Service) auditGrants(ctx context.Context, eventID string) error {
	return s.repo.AuditGrants(ctx, eventID, func(g store.Grant) error {
		details := map[string]any{"developerId": g.DeveloperID, "units": g.Units, "source": g.Source}
		if g.SaleID != nil {
			details["saleId"] = *g.SaleID
		}
		return s.audit(ctx, vectabase.AuditEvent{ActorType: vectabase.ActorSystem, ActorID: "stripe",
			Action: "credits.grant", ResourceType: "obfuscation_credit_grant", ResourceID: g.ID,
			Result: vectabase.ResultSuccess, Details: details})
	})
}

func (s *Service) audit(ctx context.Context, ev vectabase.AuditEvent) error {
	if s.aud == nil {
		return nil
	}
	if err := s.aud.Record(ctx, ev); err != nil {
		return vectabase.WrapInternal(fmt.Errorf("payments: audit %s: %w", ev.Action, err))
	}
	return nil
}
