package payments

import (
	"context"
	"errors"
	"math"
	"net/url"
	"strconv"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

// OnboardInput is the body of POST /api/stripe/onboard.
type OnboardInput struct {
	StoreID    string `json:"storeId"`
	ReturnURL  string `json:"returnUrl"`
	RefreshURL string `json:"refreshUrl"`
}

// OnboardResult is the answer of POST /api/stripe/onboard: the account
// link's URL, where the store owner completes Stripe's onboarding.
type OnboardResult struct {
	URL string `json:"url"`
}

// StatusResult is the answer of GET /api/stripe/status. AccountID is
// masked, and null when the store has no account yet.
type StatusResult struct {
	AccountID        *string `json:"accountId"`
	ChargesEnabled   bool    `json:"chargesEnabled"`
	PayoutsEnabled   bool    `json:"payoutsEnabled"`
	DetailsSubmitted bool    `json:"detailsSubmitted"`
}

// CheckoutInput is the body of POST /api/stripe/checkout.
type CheckoutInput struct {
	ProductID    string `json:"productId"`
	SuccessURL   string `json:"successUrl"`
	CancelURL    string `json:"cancelUrl"`
	RobloxUserID *int64 `json:"robloxUserId"`
	// DiscordID, optional, is the buyer's Discord user id, recorded on the
	// license a purchase issues (so the whitelist bot knows the member).
	DiscordID *string `json:"discordId"`
}

// CheckoutResult is the answer of POST /api/stripe/checkout.
type CheckoutResult struct {
	SessionID string `json:"sessionId"`
	URL       string `json:"url"`
}

// Metadata keys the checkout route puts on the session (and its payment
// intent) and the webhook reads back.
const (
	metaProduct  = "vectabase_product_id"
	metaStore    = "vectabase_store_id"
	metaBuyer    = "vectabase_buyer_id"
	metaRoblox   = "vectabase_roblox_user_id"
	metaFee      = "vectabase_platform_fee_cents"
	metaDiscord  = "vectabase_discord_id"
	maxURLLength = 2048
)

func invalid(field, msg string) error {
	return vectabase.Errorf(vectabase.EVALIDATION, "%s: %s", field, msg)
}

// checkURL accepts an absolute http or https URL. Messages never repeat the
// value.
func checkURL(field, raw string) error {
	if raw == "" {
		return invalid(field, "is required")
	}
	if len(raw) > maxURLLength {
		return invalid(field, "must be at most 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid(field, "must be an absolute http or https URL")
	}
	return nil
}

func checkID(field, id string) error {
	if id == "" {
		return invalid(field, "is required")
	}
	if uuid.Validate(id) != nil {
		return invalid(field, "must be a UUID")
	}
	return nil
}

var errStoreNotFound = vectabase.Errorf(vectabase.ENOTFOUND, "store not found")

// ownedStore returns userID's store; another user's store is NOT_FOUND, as
// in the marketplace, so store ids cannot be probed.
func (s *Service) ownedStore(ctx context.Context, userID, storeID string) (store.PaymentStore, error) {
	st, err := s.repo.OwnedPaymentStore(ctx, userID, storeID)
	if errors.Is(err, store.ErrNotFound) {
		return st, errStoreNotFound
	}
	return st, err
}

// Onboard creates userID's store's Express Connect account when it has
// none, and returns a Stripe account link to complete its onboarding.
// Errors: VALIDATION_FAILED, NOT_FOUND (not the caller's store),
// UNAVAILABLE (Stripe not configured or down).
func (s *Service) Onboard(ctx context.Context, userID string, in OnboardInput) (OnboardResult, error) {
	if err := checkID("storeId", in.StoreID); err != nil {
		return OnboardResult{}, err
	}
	if err := checkURL("returnUrl", in.ReturnURL); err != nil {
		return OnboardResult{}, err
	}
	if err := checkURL("refreshUrl", in.RefreshURL); err != nil {
		return OnboardResult{}, err
	}
	api, err := s.client(ctx)
	if err != nil {
		return OnboardResult{}, err
	}
	st, err := s.ownedStore(ctx, userID, in.StoreID)
	if err != nil {
		return OnboardResult{}, err
	}
	account := st.AccountID
	if account == "" {
		params := &stripe.AccountParams{
			Type: stripe.String(string(stripe.AccountTypeExpress)),
			Capabilities: &stripe.AccountCapabilitiesParams{
				CardPayments: &stripe.AccountCapabilitiesCardPaymentsParams{Requested: stripe.Bool(true)},
				Transfers:    &stripe.AccountCapabilitiesTransfersParams{Requested: stripe.Bool(true)},
			},
		}
		params.AddMetadata(metaStore, st.ID)
		// Stripe answers a repeated key with the first account, so an
		// owner double-clicking does not leave an orphan account behind.
		params.SetIdempotencyKey("vectabase-onboard-" + st.ID)
		acct, err := api.Accounts.New(params)
		if err != nil {
			return OnboardResult{}, s.stripeError("accounts.create", err)
		}
		if account, err = s.repo.SetStripeAccount(ctx, st.ID, acct.ID); err != nil {
			return OnboardResult{}, err
		}
		s.log.Info().Str("store", st.ID).Str("account", Mask(account)).Msg("stripe account created")
	}
	link, err := api.AccountLinks.New(&stripe.AccountLinkParams{
		Account:    stripe.String(account),
		RefreshURL: stripe.String(in.RefreshURL),
		ReturnURL:  stripe.String(in.ReturnURL),
		Type:       stripe.String("account_onboarding"),
	})
	if err != nil {
		return OnboardResult{}, s.stripeError("account_links.create", err)
	}
	return OnboardResult{URL: link.URL}, nil
}

// onboarded is the rule for a store that may sell: Stripe has the details
// it asked for and lets the account take charges.
func onboarded(a *stripe.Account) bool { return a.ChargesEnabled && a.DetailsSubmitted }

// Status returns the Stripe state of userID's store storeID, refreshing its
// stripe_onboarded flag from Stripe on the way. Errors: VALIDATION_FAILED,
// NOT_FOUND, UNAVAILABLE.
func (s *Service) Status(ctx context.Context, userID, storeID string) (StatusResult, error) {
	if err := checkID("storeId", storeID); err != nil {
		return StatusResult{}, err
	}
	api, err := s.client(ctx)
	if err != nil {
		return StatusResult{}, err
	}
	st, err := s.ownedStore(ctx, userID, storeID)
	if err != nil || st.AccountID == "" {
		return StatusResult{}, err
	}
	acct, err := api.Accounts.GetByID(st.AccountID, nil)
	if err != nil {
		return StatusResult{}, s.stripeError("accounts.retrieve", err)
	}
	if ok := onboarded(acct); ok != st.Onboarded {
		if err := s.repo.SetOnboarded(ctx, st.ID, ok); err != nil {
			return StatusResult{}, err
		}
	}
	masked := Mask(st.AccountID)
	return StatusResult{
		AccountID:        &masked,
		ChargesEnabled:   acct.ChargesEnabled,
		PayoutsEnabled:   acct.PayoutsEnabled,
		DetailsSubmitted: acct.DetailsSubmitted,
	}, nil
}

// validSnowflake accepts a Discord user id: 15 to 20 digits.
func validSnowflake(s string) bool {
	if len(s) < 15 || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// PlatformFee is the platform's share of priceCents at commissionBps basis
// points, rounded down (the seller gets the odd cent).
func PlatformFee(priceCents int64, commissionBps int) int64 {
	if priceCents <= 0 || commissionBps <= 0 {
		return 0
	}
	if commissionBps >= 10000 {
		return priceCents
	}
	return priceCents * int64(commissionBps) / 10000
}

// Checkout opens a Stripe Checkout session for product productID, paid to
// its store's Connect account as a destination charge with the platform's
// fee. buyerID is "" for an anonymous buyer. Errors: VALIDATION_FAILED,
// NOT_FOUND (no such active product), CONFLICT (the store cannot take
// payments yet, or the product's whitelist system is full), UNAVAILABLE.
func (s *Service) Checkout(ctx context.Context, buyerID string, in CheckoutInput) (CheckoutResult, error) {
	if err := checkID("productId", in.ProductID); err != nil {
		return CheckoutResult{}, err
	}
	if err := checkURL("successUrl", in.SuccessURL); err != nil {
		return CheckoutResult{}, err
	}
	if err := checkURL("cancelUrl", in.CancelURL); err != nil {
		return CheckoutResult{}, err
	}
	if in.RobloxUserID != nil && *in.RobloxUserID <= 0 {
		return CheckoutResult{}, invalid("robloxUserId", "must be a positive integer")
	}
	if in.DiscordID != nil && !validSnowflake(*in.DiscordID) {
		return CheckoutResult{}, invalid("discordId", "must be a Discord user id (15 to 20 digits)")
	}
	api, err := s.client(ctx)
	if err != nil {
		return CheckoutResult{}, err
	}
	p, err := s.repo.CheckoutProduct(ctx, in.ProductID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !p.Active) {
		return CheckoutResult{}, vectabase.Errorf(vectabase.ENOTFOUND, "product not found")
	}
	if err != nil {
		return CheckoutResult{}, err
	}
	if p.Store.AccountID == "" || !p.Store.Onboarded {
		return CheckoutResult{}, vectabase.Errorf(vectabase.ECONFLICT, "this store cannot take payments yet: its Stripe onboarding is not complete")
	}
	if p.Licenses && in.RobloxUserID == nil {
		return CheckoutResult{}, invalid("robloxUserId", "is required: buying this product issues a license to a Roblox user")
	}
	if p.SystemFull {
		// Checked before the buyer pays; a license paid for is issued even
		// if the system filled up meanwhile.
		return CheckoutResult{}, vectabase.Errorf(vectabase.ECONFLICT, "this product is sold out: its whitelist system is full (maxUsers reached)")
	}
	if p.PriceCents <= 0 || p.PriceCents > math.MaxInt32 {
		return CheckoutResult{}, vectabase.Errorf(vectabase.EVALIDATION, "productId: the product has no price to pay")
	}
	if err := creditPackNeedsBuyer(p, buyerID); err != nil { // billing.go
		return CheckoutResult{}, err
	}
	fee := PlatformFee(p.PriceCents, p.Store.CommissionBps)
	meta := map[string]string{
		metaProduct: p.ID,
		metaStore:   p.Store.ID,
		metaFee:     strconv.FormatInt(fee, 10),
	}
	if buyerID != "" {
		meta[metaBuyer] = buyerID
	}
	if in.RobloxUserID != nil {
		meta[metaRoblox] = strconv.FormatInt(*in.RobloxUserID, 10)
	}
	if in.DiscordID != nil {
		meta[metaDiscord] = *in.DiscordID
	}
	params := &stripe.CheckoutSessionParams{
		Mode:       stripe.String(string(stripe.CheckoutSessionModePayment)),
		SuccessURL: stripe.String(in.SuccessURL),
		CancelURL:  stripe.String(in.CancelURL),
		LineItems: []*stripe.CheckoutSessionLineItemParams{{
			Quantity: stripe.Int64(1),
			PriceData: &stripe.CheckoutSessionLineItemPriceDataParams{
				Currency:    stripe.String(p.Currency),
				UnitAmount:  stripe.Int64(p.PriceCents),
				ProductData: &stripe.CheckoutSessionLineItemPriceDataProductDataParams{Name: stripe.String(p.Name)},
			},
		}},
		PaymentIntentData: &stripe.CheckoutSessionPaymentIntentDataParams{
			ApplicationFeeAmount: stripe.Int64(fee),
			TransferData: &stripe.CheckoutSessionPaymentIntentDataTransferDataParams{
				Destination: stripe.String(p.Store.AccountID),
			},
			Metadata: meta,
		},
		Metadata: meta,
	}
	if buyerID != "" {
		params.ClientReferenceID = stripe.String(buyerID)
	}
	sess, err := api.CheckoutSessions.New(params)
	if err != nil {
		return CheckoutResult{}, s.stripeError("checkout.sessions.create", err)
	}
	return CheckoutResult{SessionID: sess.ID, URL: sess.URL}, nil
}
