// Package payments is the Stripe area: Connect onboarding of stores,
// Checkout sessions that pay a store through a destination charge with the
// platform's fee, and the webhook that records sales, refunds and account
// changes exactly once per event.
//
// The package is named payments, not stripe, so that it never shadows
// stripe-go in a reader's head or an import list.
//
// Stripe ids are sensitive here: they are stored encrypted (store.Payments)
// and shown, logged and counted only masked (acct_****abcd). The one
// exception is the Checkout session id the checkout route returns, which the
// contract gives the buyer's browser so that it can redirect to Stripe.
package payments

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store"
)

// Config is the area's configuration, filled from the environment in cmd/.
// The credentials may be empty: the vault's stripe_secret_key and
// stripe_webhook_secret are read instead.
type Config struct {
	SecretKey     string `env:"STRIPE_SECRET_KEY"`
	WebhookSecret string `env:"STRIPE_WEBHOOK_SECRET"` // comma-separated: platform and Connect endpoints, rolled secrets
	APIBase       string `env:"STRIPE_API_BASE"`       // "" is Stripe's own API

	// Checkout calls allowed per client IP (anonymous buyers) or per user
	// (signed-in buyers) in each window, counted in the database across
	// instances before anything reaches Stripe. 0 or less: no limit.
	CheckoutMaxPerIP int           `env:"STRIPE_CHECKOUT_MAX_PER_IP" envDefault:"30"`
	CheckoutWindow   time.Duration `env:"STRIPE_CHECKOUT_WINDOW" envDefault:"1m"`

	// PlanPrices maps the platform's Stripe price ids to developer plans
	// (billing.go): STRIPE_PLAN_PRICES=price_123:pro,price_456:pro.
	PlanPrices map[string]string `env:"STRIPE_PLAN_PRICES" envKeyValSeparator:":"`
}

// String never shows the credentials, only whether they are set.
func (c Config) String() string {
	set := func(s string) string {
		if s == "" {
			return "unset"
		}
		return "set"
	}
	return "payments.Config{SecretKey: " + set(c.SecretKey) + ", WebhookSecret: " + set(c.WebhookSecret) + ", APIBase: " + c.APIBase +
		", CheckoutMaxPerIP: " + strconv.Itoa(c.CheckoutMaxPerIP) + ", CheckoutWindow: " + c.CheckoutWindow.String() + "}"
}

// GoString is String, so %#v redacts too.
func (c Config) GoString() string { return c.String() }

// Vault secret names of the credentials (policies/access.json lets the
// system actor read them).
const (
	SecretKeyName     = "stripe_secret_key"
	WebhookSecretName = "stripe_webhook_secret"
)

// Credentials reads a credential from the secrets vault when the
// environment's value is empty ("" when neither has one). vault.Service
// implements it; every vault read is audited there.
type Credentials interface {
	Credential(ctx context.Context, envValue, name string) (string, error)
}

// Auth is what the area needs from authentication (server/auth).
type Auth struct {
	RequireUser  fiber.Handler
	OptionalUser fiber.Handler
	UserID       func(c *fiber.Ctx) string // "" when anonymous
}

// credentialTTL bounds how long a credential read from the vault is reused:
// long enough that webhooks do not each cost an audited vault read, short
// enough that a rotated key is picked up without a restart.
const credentialTTL = time.Minute

// Service is the Stripe area's business logic.
type Service struct {
	db    *store.DB
	repo  *store.Payments
	cfg   Config
	creds Credentials
	aud   Auditor // licenses and billing changes (SetAuditor)
	log   zerolog.Logger
	now   func() time.Time

	webhooks  *prometheus.CounterVec
	throttled prometheus.Counter

	mu     sync.Mutex
	cache  map[string]cachedCredential
	apiKey string
	api    *client.API
}

type cachedCredential struct {
	value string
	until time.Time
}

// New builds the service. creds may be nil (environment only); reg may be
// nil.
func New(db *store.DB, kr *keyring.Keyring, cfg Config, creds Credentials, log zerolog.Logger, reg prometheus.Registerer) *Service {
	if cfg.CheckoutWindow <= 0 {
		cfg.CheckoutWindow = time.Minute
	}
	s := &Service{
		db:    db,
		repo:  store.NewPayments(db, kr),
		cfg:   cfg,
		creds: creds,
		log:   log,
		now:   time.Now,
		cache: map[string]cachedCredential{},
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vectabase_stripe_webhooks_total",
			Help: "Stripe webhook deliveries by event type (other: types this server ignores) and result.",
		}, []string{"type", "result"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vectabase_stripe_checkout_throttled_total",
			Help: "Checkout calls refused with 429 because their IP (or user) passed STRIPE_CHECKOUT_MAX_PER_IP.",
		}),
	}
	if reg != nil {
		reg.MustRegister(s.webhooks, s.throttled)
	}
	return s
}

// RetryAfter is in the chain of a RATE_LIMITED error: how long the caller
// should wait. The handler puts it in the Retry-After header.
type RetryAfter struct{ Wait time.Duration }

func (r *RetryAfter) Error() string { return "retry after " + r.Wait.String() }

// AllowCheckout counts one checkout call against its caller, the user
// when buyerID is set and otherwise the client address ip (IPv6 by /64),
// and refuses it past STRIPE_CHECKOUT_MAX_PER_IP in the window:
// RATE_LIMITED with a *RetryAfter in the chain. It runs before anything
// else a checkout does, so a flood of anonymous checkouts costs one
// counter update each and never a Stripe call or a vault read.
func (s *Service) AllowCheckout(ctx context.Context, buyerID, ip string) error {
	if s.cfg.CheckoutMaxPerIP <= 0 {
		return nil
	}
	bucket := "checkout:ip:" + server.IPBucket(ip)
	if buyerID != "" {
		bucket = "checkout:user:" + buyerID
	}
	now := s.now()
	ws := now.Truncate(s.cfg.CheckoutWindow)
	hits, err := s.db.ThrottleHit(ctx, []string{bucket}, ws, 1)
	if err != nil {
		return err
	}
	if hits[0].Hits > s.cfg.CheckoutMaxPerIP {
		s.throttled.Inc()
		return vectabase.WrapError(vectabase.ERATELIMITED, "too many checkouts from this address; try again later",
			&RetryAfter{Wait: ws.Add(s.cfg.CheckoutWindow).Sub(now)})
	}
	return nil
}

// credential returns the environment's value or the vault's secret name,
// "" when neither is set.
func (s *Service) credential(ctx context.Context, envValue, name string) (string, error) {
	if envValue != "" || s.creds == nil {
		return envValue, nil
	}
	s.mu.Lock()
	c, ok := s.cache[name]
	s.mu.Unlock()
	if ok && s.now().Before(c.until) {
		return c.value, nil
	}
	v, err := s.creds.Credential(ctx, "", name)
	if err != nil {
		// Whatever the vault said (sealed keyring, policy, database), the
		// client's request is fine: Stripe is unavailable to us.
		s.log.Error().Str("secret", name).Str("error", vectabase.ErrorMessage(err)).Msg("read stripe credential from the vault")
		return "", vectabase.WrapError(vectabase.EUNAVAILABLE, "Stripe credentials could not be read", err)
	}
	s.mu.Lock()
	s.cache[name] = cachedCredential{value: v, until: s.now().Add(credentialTTL)}
	s.mu.Unlock()
	return v, nil
}

// unavailable is the answer of every Stripe route while a credential is
// missing: the operator has not configured Stripe, which is no fault of the
// client and no crash of ours.
func unavailable(env, secret string) error {
	return vectabase.Errorf(vectabase.EUNAVAILABLE, "Stripe is not configured: set %s or the vault secret %s", env, secret)
}

// client returns the Stripe API client for the current secret key.
func (s *Service) client(ctx context.Context) (*client.API, error) {
	key, err := s.credential(ctx, s.cfg.SecretKey, SecretKeyName)
	if err != nil {
		return nil, err
	}
	if key == "" {
		return nil, unavailable("STRIPE_SECRET_KEY", SecretKeyName)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.api == nil || s.apiKey != key {
		cfg := &stripe.BackendConfig{
			HTTPClient: &http.Client{Timeout: 20 * time.Second},
			// stripe-go's own logger prints request errors, which quote
			// Stripe ids; our adapter logs a masked summary instead.
			LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
			MaxNetworkRetries: stripe.Int64(2),
		}
		if s.cfg.APIBase != "" {
			cfg.URL = stripe.String(s.cfg.APIBase)
		}
		api := &client.API{}
		api.Init(key, stripe.NewBackendsWithConfig(cfg))
		s.api, s.apiKey = api, key
	}
	return s.api, nil
}

// stripeError flattens an error of stripe-go into the contract's errors.
// Stripe's messages can quote ids, so only the status, type and code are
// logged, and the client learns which side failed.
func (s *Service) stripeError(op string, err error) error {
	var se *stripe.Error
	if !errors.As(err, &se) {
		s.log.Warn().Str("op", op).Str("error", "network").Msg("stripe call failed")
		return vectabase.WrapError(vectabase.EUNAVAILABLE, "Stripe could not be reached", err)
	}
	s.log.Warn().Str("op", op).Int("status", se.HTTPStatusCode).Str("type", string(se.Type)).
		Str("code", string(se.Code)).Str("param", se.Param).Msg("stripe call failed")
	switch {
	case se.HTTPStatusCode == http.StatusUnauthorized || se.HTTPStatusCode == http.StatusForbidden:
		return vectabase.Errorf(vectabase.EUNAVAILABLE, "Stripe refused the platform's credentials")
	case se.HTTPStatusCode == http.StatusTooManyRequests || se.HTTPStatusCode >= 500:
		return vectabase.Errorf(vectabase.EUNAVAILABLE, "Stripe is unavailable, try again later")
	case se.Param != "":
		return vectabase.Errorf(vectabase.EBADREQUEST, "Stripe refused the request (%s: %s)", se.Param, se.Code)
	default:
		return vectabase.Errorf(vectabase.EBADREQUEST, "Stripe refused the request (%s)", se.Code)
	}
}

// Mask shows only the prefix and last four characters of a Stripe id
// (acct_****abcd), so an owner can tell which account is linked without the
// id being disclosed.
func Mask(id string) string {
	if id == "" {
		return ""
	}
	prefix := ""
	for i := 0; i < len(id) && i < 8; i++ {
		if id[i] == '_' {
			prefix = id[:i+1]
			break
		}
	}
	rest := id[len(prefix):]
	if len(rest) <= 4 {
		return prefix + "****"
	}
	return prefix + "****" + rest[len(rest)-4:]
}
