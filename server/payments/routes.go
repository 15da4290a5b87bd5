package payments

import (
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/vectabase/vectabase/server"
)

const (
	smallBody = 16 << 10
	// Stripe's events are far below this; the contract's 1 MiB is the cap.
	webhookBody = 1 << 20
	// Every route but the webhook waits on Stripe's API (with retries).
	stripeTimeout = 60 * time.Second
)

// Routes is the area's route table. The webhook has no bearer auth: the
// Stripe-Signature over its raw body is its authentication, checked in the
// handler.
func (s *Service) Routes(a Auth) []server.Route {
	return []server.Route{
		{Method: fiber.MethodPost, Path: "/api/stripe/onboard", Auth: a.RequireUser, BodyLimit: smallBody, Timeout: stripeTimeout, Handler: s.handleOnboard(a)},
		{Method: fiber.MethodGet, Path: "/api/stripe/status", Auth: a.RequireUser, Timeout: stripeTimeout, Handler: s.handleStatus(a)},
		{Method: fiber.MethodPost, Path: "/api/stripe/checkout", Auth: a.OptionalUser, BodyLimit: smallBody, Timeout: stripeTimeout, Handler: s.handleCheckout(a)},
		{Method: fiber.MethodGet, Path: "/api/stripe/checkout/:sessionId", Auth: a.OptionalUser, Handler: s.handleCheckoutLicense(a)},
		{Method: fiber.MethodPost, Path: "/api/stripe/webhook", BodyLimit: webhookBody, Handler: s.handleWebhook},
	}
}

func (s *Service) handleOnboard(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		var in OnboardInput
		if err := server.DecodeJSON(c, &in); err != nil {
			return err
		}
		out, err := s.Onboard(c.UserContext(), a.UserID(c), in)
		if err != nil {
			return err
		}
		return c.JSON(out)
	}
}

func (s *Service) handleStatus(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		out, err := s.Status(c.UserContext(), a.UserID(c), utils.CopyString(c.Query("storeId")))
		if err != nil {
			return err
		}
		return c.JSON(out)
	}
}

func (s *Service) handleCheckout(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		// Counted before the body is even decoded: a malformed flood is
		// throttled as well.
		if err := s.AllowCheckout(c.UserContext(), a.UserID(c), server.ClientIP(c)); err != nil {
			var ra *RetryAfter
			if errors.As(err, &ra) {
				c.Set(fiber.HeaderRetryAfter, strconv.Itoa(max(1, int(math.Ceil(ra.Wait.Seconds())))))
			}
			return err
		}
		var in CheckoutInput
		if err := server.DecodeJSON(c, &in); err != nil {
			return err
		}
		out, err := s.Checkout(c.UserContext(), a.UserID(c), in)
		if err != nil {
			return err
		}
		return c.JSON(out)
	}
}

// handleCheckoutLicense is the checkout success page's look-up; the
// session id in the path is the buyer's proof (CheckoutLicenseLookup).
func (s *Service) handleCheckoutLicense(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		out, err := s.CheckoutLicenseLookup(c.UserContext(), utils.CopyString(c.Params("sessionId")), a.UserID(c),
			utils.CopyString(c.IP()), server.RequestID(c))
		if err != nil {
			return err
		}
		c.Set(fiber.HeaderCacheControl, "no-store")
		return c.JSON(out)
	}
}

// WebhookResult is the webhook's answer: what recording the event did.
type WebhookResult struct {
	Received bool   `json:"received"`
	Result   string `json:"result"`
}

// handleWebhook passes the raw body on untouched: the signature covers
// its exact bytes.
func (s *Service) handleWebhook(c *fiber.Ctx) error {
	body := append([]byte(nil), c.Body()...)
	res, err := s.HandleWebhook(c.UserContext(), body, utils.CopyString(c.Get("Stripe-Signature")))
	if err != nil {
		return err
	}
	return c.JSON(WebhookResult{Received: true, Result: string(res)})
}
