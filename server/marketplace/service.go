// Package marketplace is the marketplace and developer API: stores,
// products, sales, whitelist systems and their players, developer API keys,
// the whitelist check and key verification game servers call, per-key rate
// limits shared by every instance, and batched API request logs.
//
// Ownership is enforced in every query (the owner id is part of the WHERE
// clause), so another user's resource is indistinguishable from a missing
// one: 404.
package marketplace

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/store"
)

// Config is the area's configuration, filled from the environment in cmd/.
type Config struct {
	RequestLogBuffer int           `env:"API_REQUEST_LOG_BUFFER" envDefault:"65536"`
	RequestLogBatch  int           `env:"API_REQUEST_LOG_BATCH" envDefault:"1000"`
	RequestLogFlush  time.Duration `env:"API_REQUEST_LOG_FLUSH" envDefault:"200ms"`
	// RequestLogSpoolDir is where each request-log row is appended before
	// its request is answered, so a killed process loses none
	// (store.RequestLogConfig.SpoolDir); "off" or "": memory only.
	RequestLogSpoolDir string `env:"API_REQUEST_LOG_SPOOL_DIR" envDefault:"./.vectabase/spool"`

	// PlanLimits are the per-minute limits of the subscription plans
	// (plans.go); nil: DefaultPlanLimits. PlanDefault is the plan of a
	// developer with no subscription ("": their keys' own limits).
	PlanLimits  map[string]int `env:"PLAN_LIMITS" envKeyValSeparator:":" envDefault:"free:60,pro:600"`
	PlanDefault string         `env:"PLAN_DEFAULT"`
}

// Auth is what the area needs from authentication (server/auth): middleware
// that requires or merely accepts a bearer token, and the caller's user id
// ("" when anonymous).
type Auth struct {
	RequireUser  fiber.Handler
	OptionalUser fiber.Handler
	UserID       func(c *fiber.Ctx) string
}

// Auditor records audit events (vault/audit.Log); Record returns nil only
// once the event is stored.
type Auditor interface {
	Record(ctx context.Context, ev vectabase.AuditEvent) error
}

// Service is the area's business logic over the marketplace repository.
type Service struct {
	repo *store.Marketplace
	kr   *keyring.Keyring
	aud  Auditor
	logs *store.RequestLogWriter
	log  zerolog.Logger

	plans Plans

	rejected prometheus.Counter

	stop      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
}

// New builds the service and starts its background work (the request-log
// writer and the pruning of ended rate-limit windows); Close stops it.
// API keys' creation, changes and revocation are audited through aud.
// reg may be nil.
func New(db *store.DB, kr *keyring.Keyring, aud Auditor, cfg Config, log zerolog.Logger, reg prometheus.Registerer) *Service {
	plans, err := NewPlans(cfg.PlanLimits, cfg.PlanDefault)
	if err != nil {
		// cmd checks the configuration first (Config.Validate); a bad
		// one here falls back to the defaults rather than no limits.
		log.Error().Str("error", err.Error()).Msg("plan limits; using the defaults")
		plans, _ = NewPlans(nil, "")
	}
	s := &Service{
		repo: store.NewMarketplace(db, kr),
		kr:   kr,
		aud:  aud,
		logs: store.NewRequestLogWriter(db, store.RequestLogConfig{
			Buffer: cfg.RequestLogBuffer, Batch: cfg.RequestLogBatch, Every: cfg.RequestLogFlush,
			SpoolDir: cfg.spoolDir(),
		}, log, reg),
		log:   log,
		plans: plans,
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vectabase_ratelimit_rejected_total",
			Help: "API-key requests refused with 429 because the key's per-minute limit was reached.",
		}),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	if reg != nil {
		reg.MustRegister(s.rejected)
	}
	go s.prune()
	return s
}

func (c Config) spoolDir() string {
	if c.RequestLogSpoolDir == "off" {
		return ""
	}
	return c.RequestLogSpoolDir
}

// Validate checks the plan configuration (PLAN_LIMITS, PLAN_DEFAULT).
func (c Config) Validate() error {
	_, err := NewPlans(c.PlanLimits, c.PlanDefault)
	return err
}

// Close flushes every queued request log and stops background work. Call it
// after the HTTP server has shut down, so no request is still adding logs.
func (s *Service) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.stopped
	return s.logs.Close(ctx)
}

func (s *Service) prune() {
	defer close(s.stopped)
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := s.repo.PruneRateLimits(ctx); err != nil {
				s.log.Warn().Str("error", err.Error()).Msg("prune rate-limit windows")
			}
			cancel()
		}
	}
}

// mapErr maps the repository's sentinels to client errors; what names the
// resource in the message.
func mapErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return vectabase.Errorf(vectabase.ENOTFOUND, "%s not found", what)
	case errors.Is(err, store.ErrConflict):
		return vectabase.WrapError(vectabase.ECONFLICT, conflictMessage(what), err)
	case errors.Is(err, store.ErrInUse):
		return vectabase.Errorf(vectabase.ECONFLICT, "%s has sales and cannot be deleted; deactivate it instead", what)
	case errors.Is(err, store.ErrFull):
		return vectabase.Errorf(vectabase.ECONFLICT, "whitelist system is full (maxUsers reached)")
	}
	return err
}

func conflictMessage(what string) string {
	switch what {
	case "store":
		return "slug: already taken"
	case "whitelist user":
		return "robloxUserId: already whitelisted in this system"
	}
	return what + " already exists"
}
