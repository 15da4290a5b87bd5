package payments

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/store"
)

// WebhookTolerance is how old a Stripe-Signature timestamp may be: Stripe's
// own default, which bounds how long a captured delivery can be replayed
// (replays inside it are caught by the event id).
const WebhookTolerance = 5 * time.Minute

// The event types the webhook acts on; any other is acknowledged and
// counted under type="other", which keeps the metric's label set bounded.
const (
	eventCheckoutCompleted = "checkout.session.completed"
	eventChargeRefunded    = "charge.refunded"
	eventAccountUpdated    = "account.updated"
	// A checkout paid by a delayed method (bank debit) completes with an
	// unpaid session; one of these follows when the payment settles.
	eventAsyncSucceeded = "checkout.session.async_payment_succeeded"
	eventAsyncFailed    = "checkout.session.async_payment_failed"
	// A dispute (chargeback) revokes what the payment bought at once.
	eventDisputeCreated = "charge.dispute.created"
)

// Results of a delivery beyond store.EventResult, for the metric.
const (
	resultBadSignature = "invalid_signature"
	resultUnavailable  = "unavailable"
	resultError        = "error"
)

func typeLabel(t string) string {
	switch t {
	case eventCheckoutCompleted, eventChargeRefunded, eventAccountUpdated, eventAsyncSucceeded, eventAsyncFailed, eventDisputeCreated:
		return t
	}
	if isBillingEvent(t) {
		return t
	}
	return "other"
}

// HandleWebhook verifies payload's Stripe-Signature (sig) and applies the
// event once. It returns what recording the event did. Errors: BAD_REQUEST
// for a missing, wrong or expired signature or an event without an id;
// UNAVAILABLE when no webhook secret is configured; anything else is ours,
// answered 500 so that Stripe delivers the event again.
func (s *Service) HandleWebhook(ctx context.Context, payload []byte, sig string) (store.EventResult, error) {
	secret, err := s.credential(ctx, s.cfg.WebhookSecret, WebhookSecretName)
	if err == nil && secret == "" {
		err = unavailable("STRIPE_WEBHOOK_SECRET", WebhookSecretName)
	}
	if err != nil {
		s.count("unknown", resultUnavailable)
		return "", err
	}
	ev, err := constructEvent(payload, sig, secret)
	if err != nil {
		s.count("unknown", resultBadSignature)
		return "", signatureError(err)
	}
	if !validToken(ev.ID, 255) {
		s.count("unknown", resultBadSignature)
		return "", vectabase.Errorf(vectabase.EBADREQUEST, "the event has no valid id")
	}
	typ := string(ev.Type)
	if !validToken(typ, 255) {
		typ = "invalid"
	}
	res, err := s.apply(ctx, ev.ID, typ, ev.Data)
	if err == nil {
		err = s.auditGrants(ctx, ev.ID) // credit packs the event granted (billing.go)
	}
	label := typeLabel(typ)
	if err != nil {
		s.count(label, resultError)
		s.log.Error().Str("event", Mask(ev.ID)).Str("type", label).Str("error", err.Error()).Msg("stripe webhook failed")
		return "", err
	}
	s.count(label, string(res))
	s.log.Info().Str("event", Mask(ev.ID)).Str("type", label).Str("result", string(res)).Msg("stripe webhook")
	return res, nil
}

// constructEvent verifies sig against each of the comma-separated secrets:
// a platform endpoint and a Connect endpoint (which delivers account.updated
// of connected accounts) have a secret each, and a rolled secret overlaps
// its successor for a while.
func constructEvent(payload []byte, sig, secrets string) (stripe.Event, error) {
	var first error
	for _, secret := range strings.Split(secrets, ",") {
		secret = strings.TrimSpace(secret)
		if secret == "" {
			continue
		}
		ev, err := webhook.ConstructEventWithOptions(payload, sig, secret, webhook.ConstructEventOptions{
			Tolerance: WebhookTolerance,
			// Events are rendered in the account's API version, which need
			// not be stripe-go's: the handlers read only long-stable fields.
			IgnoreAPIVersionMismatch: true,
		})
		if err == nil {
			return ev, nil
		}
		if first == nil || errors.Is(first, webhook.ErrNoValidSignature) {
			first = err
		}
	}
	if first == nil {
		first = webhook.ErrNoValidSignature
	}
	return stripe.Event{}, first
}

func (s *Service) count(typ, result string) { s.webhooks.WithLabelValues(typ, result).Inc() }

// signatureError tells the sender what was wrong with the signature, never
// what it should have been.
func signatureError(err error) error {
	switch {
	case errors.Is(err, webhook.ErrNotSigned):
		return vectabase.Errorf(vectabase.EBADREQUEST, "missing Stripe-Signature header")
	case errors.Is(err, webhook.ErrTooOld):
		return vectabase.Errorf(vectabase.EBADREQUEST, "Stripe-Signature timestamp is outside the 5-minute tolerance")
	case errors.Is(err, webhook.ErrInvalidHeader), errors.Is(err, webhook.ErrNoValidSignature):
		return vectabase.Errorf(vectabase.EBADREQUEST, "invalid Stripe-Signature")
	}
	// A signed body that is not an event.
	return vectabase.Errorf(vectabase.EBADREQUEST, "the body is not a Stripe event")
}

// validToken accepts what Stripe uses for ids and event types: printable
// ASCII, nothing PostgreSQL text or a btree index would refuse.
func validToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// cleanText keeps a free-text field PostgreSQL can store: valid UTF-8, no
// NUL, at most max bytes; anything else becomes "".
func cleanText(s string, max int) string {
	if len(s) > max || !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return ""
	}
	return s
}

func validCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if c[i] < 'a' || c[i] > 'z' {
			return false
		}
	}
	return true
}

func validAmount(n int64) bool { return n >= 0 && n <= math.MaxInt32 }

// apply records the event. A signed event whose object does not have the
// shape its type promises is acknowledged as ignored: Stripe would only
// deliver it again, and nothing of ours can come of it.
func (s *Service) apply(ctx context.Context, id, typ string, data *stripe.EventData) (store.EventResult, error) {
	var raw json.RawMessage
	if data != nil {
		raw = data.Raw
	}
	switch typ {
	case eventCheckoutCompleted:
		var sess stripe.CheckoutSession
		if json.Unmarshal(raw, &sess) == nil {
			if c, ok := completedCheckout(id, &sess); ok {
				return s.repo.RecordCheckout(ctx, c)
			}
		}
	case eventAsyncSucceeded, eventAsyncFailed:
		var sess stripe.CheckoutSession
		if json.Unmarshal(raw, &sess) == nil && sess.PaymentIntent != nil && validToken(sess.PaymentIntent.ID, 255) &&
			validToken(sess.ID, 255) && validAmount(sess.AmountTotal) && validCurrency(string(sess.Currency)) {
			status := "completed"
			if typ == eventAsyncFailed {
				status = "failed"
			}
			return s.repo.RecordSettlement(ctx, store.SettledCheckout{
				EventID: id, Type: typ, SessionID: sess.ID, PaymentIntentID: sess.PaymentIntent.ID,
				AmountCents: sess.AmountTotal, Currency: string(sess.Currency), Status: status,
				DiscordID: discordOf(sess.Metadata), LicenseKey: marketplace.NewLicenseKey(),
			})
		}
	case eventChargeRefunded:
		var ch stripe.Charge
		if json.Unmarshal(raw, &ch) == nil && ch.PaymentIntent != nil && validToken(ch.PaymentIntent.ID, 255) &&
			validAmount(ch.AmountRefunded) && validCurrency(string(ch.Currency)) {
			// Full when Stripe says so or the whole amount is back; a
			// partial refund keeps the license.
			full := ch.Refunded || (ch.Amount > 0 && ch.AmountRefunded >= ch.Amount)
			return s.repo.RecordRefund(ctx, store.Refund{
				EventID: id, PaymentIntentID: ch.PaymentIntent.ID, AmountRefunded: ch.AmountRefunded,
				Currency: string(ch.Currency), Full: full,
			})
		}
	case eventDisputeCreated:
		var d stripe.Dispute
		if json.Unmarshal(raw, &d) == nil && d.PaymentIntent != nil && validToken(d.PaymentIntent.ID, 255) &&
			validAmount(d.Amount) && validCurrency(string(d.Currency)) {
			return s.repo.RecordDispute(ctx, store.Dispute{
				EventID: id, PaymentIntentID: d.PaymentIntent.ID, AmountCents: d.Amount, Currency: string(d.Currency),
			})
		}
	case eventAccountUpdated:
		var a stripe.Account
		if json.Unmarshal(raw, &a) == nil && validToken(a.ID, 255) {
			return s.repo.RecordAccountUpdate(ctx, store.AccountUpdate{EventID: id, AccountID: a.ID, Onboarded: onboarded(&a)})
		}
	case eventSubCreated, eventSubUpdated, eventSubDeleted, eventInvoicePaid, eventInvoiceFailed:
		if res, ok, err := s.applyBilling(ctx, id, typ, raw); ok {
			return res, err
		}
	}
	return s.repo.RecordIgnored(ctx, id, typ)
}

// completedCheckout reduces a session to a sale, from the metadata the
// checkout route set. A session without it was not opened by this server.
func completedCheckout(eventID string, sess *stripe.CheckoutSession) (store.CompletedCheckout, bool) {
	m := sess.Metadata
	c := store.CompletedCheckout{
		EventID:     eventID,
		SessionID:   sess.ID,
		ProductID:   m[metaProduct],
		StoreID:     m[metaStore],
		AmountCents: sess.AmountTotal,
		Currency:    string(sess.Currency),
		Status:      "pending",
	}
	if uuid.Validate(c.ProductID) != nil || uuid.Validate(c.StoreID) != nil || !validToken(c.SessionID, 255) ||
		!validAmount(c.AmountCents) || !validCurrency(c.Currency) {
		return c, false
	}
	if sess.PaymentStatus == stripe.CheckoutSessionPaymentStatusPaid || sess.PaymentStatus == stripe.CheckoutSessionPaymentStatusNoPaymentRequired {
		c.Status = "completed"
	}
	if sess.PaymentIntent != nil && validToken(sess.PaymentIntent.ID, 255) {
		c.PaymentIntentID = sess.PaymentIntent.ID
	}
	if b := m[metaBuyer]; uuid.Validate(b) == nil {
		c.BuyerID = b
	}
	if r, err := strconv.ParseInt(m[metaRoblox], 10, 64); err == nil && r > 0 {
		c.RobloxUserID = &r
	}
	c.DiscordID = discordOf(m)
	c.LicenseKey = marketplace.NewLicenseKey()
	if f, err := strconv.ParseInt(m[metaFee], 10, 64); err == nil && f >= 0 && f <= c.AmountCents {
		c.FeeCents = f
	}
	if sess.CustomerDetails != nil {
		c.BuyerEmail = cleanText(sess.CustomerDetails.Email, 320)
	}
	return c, true
}

// discordOf is the buyer's Discord id from a session's metadata, "" when
// absent or not a Discord id.
func discordOf(m map[string]string) string {
	if d := m[metaDiscord]; validSnowflake(d) {
		return d
	}
	return ""
}
