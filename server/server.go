// Package server is the HTTP API on Fiber: the middleware every request
// passes (request id, recovery, one log line, metrics), the error handler
// that turns every failure into the contract's body, health and readiness,
// and the route tables of each area. Handlers are thin: decode, call one
// service method, encode.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/cors"
	"github.com/gofiber/fiber/v2/utils"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/vectabase/vectabase"
)

// MaxBodyBytes is the largest request body any route accepts.
const MaxBodyBytes = 1 << 20

// Config is the HTTP configuration, filled from the environment in cmd/.
type Config struct {
	HTTPAddr       string   `env:"HTTP_ADDR" envDefault:"127.0.0.1:8080"`
	MetricsAddr    string   `env:"METRICS_ADDR" envDefault:"127.0.0.1:9090"`
	CORSOrigins    []string `env:"CORS_ORIGINS" envSeparator:","`
	TrustedProxies []string `env:"TRUSTED_PROXIES" envSeparator:","`

	// Refusals throttles and aggregates unauthenticated refusals.
	Refusals RefusalConfig

	// Connection limits. The header timeout runs from a connection's
	// first byte (or a keep-alive request's first byte) to the end of the
	// headers; the read timeout then bounds the body. Hijacked connections
	// (the realtime WebSocket) are free of all of them: fasthttp clears
	// their deadlines, and the socket keeps its own pings.
	ReadHeaderTimeout time.Duration `env:"HTTP_READ_HEADER_TIMEOUT" envDefault:"10s"`
	ReadTimeout       time.Duration `env:"HTTP_READ_TIMEOUT" envDefault:"30s"`
	WriteTimeout      time.Duration `env:"HTTP_WRITE_TIMEOUT" envDefault:"30s"`
	IdleTimeout       time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"120s"`
	MaxHeaderBytes    int           `env:"HTTP_MAX_HEADER_BYTES" envDefault:"16384"`
	MaxConns          int           `env:"HTTP_MAX_CONNS" envDefault:"20000"`
	MaxConnsPerIP     int           `env:"HTTP_MAX_CONNS_PER_IP" envDefault:"0"`

	// ReadyzKEKCache is how long /readyz reuses the keyring check's result
	// (a Vault transit round trip with that backend).
	ReadyzKEKCache time.Duration `env:"READYZ_KEK_CACHE" envDefault:"5s"`
}

// withDefaults fills what a Config built in code (tests, harnesses) leaves
// zero with the environment's defaults.
func (c Config) withDefaults() Config {
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 16 << 10
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 20000
	}
	return c
}

// Validate checks what the environment can get wrong: TRUSTED_PROXIES
// entries that are not addresses or prefixes, negative limits.
func (c Config) Validate() error {
	if _, err := ParseTrustedProxies(c.TrustedProxies); err != nil {
		return err
	}
	if c.MaxHeaderBytes < 0 || c.MaxConns < 0 || c.MaxConnsPerIP < 0 {
		return fmt.Errorf("server: HTTP_MAX_HEADER_BYTES, HTTP_MAX_CONNS and HTTP_MAX_CONNS_PER_IP must not be negative")
	}
	if c.MaxHeaderBytes > 0 && c.MaxHeaderBytes < 4<<10 {
		return fmt.Errorf("server: HTTP_MAX_HEADER_BYTES %d is below 4096", c.MaxHeaderBytes)
	}
	if c.ReadHeaderTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 || c.ReadyzKEKCache < 0 {
		return fmt.Errorf("server: HTTP timeouts and READYZ_KEK_CACHE must not be negative")
	}
	return nil
}

// ReadyCheck reports whether a dependency is usable; /readyz runs them all.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
	// CacheFor, when > 0, reuses the check's last result (success or
	// failure) for that long, and runs one check at a time: a flood of
	// /readyz is then not a flood of calls to the dependency.
	CacheFor time.Duration
}

// Server is the API and metrics listeners.
type Server struct {
	app     *fiber.App
	cfg     Config
	log     zerolog.Logger
	reg     *prometheus.Registry
	metrics *httpMetrics
	refuse  *Refusals

	mu      sync.Mutex
	checks  []*readyCheck
	metricL *http.Server
}

// New builds the Fiber app with the middleware every route passes. reg is
// the registry /metrics serves; the server adds its HTTP metrics to it.
// Entries of cfg.TrustedProxies that do not parse are ignored here;
// Config.Validate reports them.
func New(cfg Config, log zerolog.Logger, reg *prometheus.Registry) *Server {
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, log: log, reg: reg, metrics: newHTTPMetrics(reg), refuse: NewRefusals(cfg.Refusals, log, reg)}
	fcfg := fiber.Config{
		// fasthttp refuses a body larger than this from its Content-Length
		// (or while reading chunks) before buffering it; routes then apply
		// their own, smaller limits to the decoded body.
		BodyLimit:             MaxBodyBytes,
		ErrorHandler:          errorHandler(log),
		DisableStartupMessage: true,
		// The header timeout; HeaderReceived below gives the body its own.
		ReadTimeout:  cfg.ReadHeaderTimeout,
		WriteTimeout: cfg.WriteTimeout,
		IdleTimeout:  cfg.IdleTimeout,
		// The header-size cap: fasthttp reads the whole header into this
		// buffer and refuses a larger one (431).
		ReadBufferSize: cfg.MaxHeaderBytes,
		Concurrency:    cfg.MaxConns,
		// No route takes multipart forms: never spool them to disk.
		DisablePreParseMultipartForm: true,
	}
	s.app = fiber.New(fcfg)
	fs := s.app.Server()
	// HTTP_MAX_CONNS_PER_IP is enforced by connLimiter (Listen), before
	// fasthttp sees the connection and with the contract's error body.
	// fasthttp's own MaxConnsPerIP stays off: its per-IP connection
	// wrapper is closed twice when Shutdown closes an idle keep-alive
	// connection whose worker then returns, a nil dereference that killed
	// the process at shutdown (valyala/fasthttp#1987, fixed upstream
	// after the version Fiber v2 builds with here).
	fs.MaxConnsPerIP = 0
	readTimeout := cfg.ReadTimeout
	fs.HeaderReceived = func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
		return fasthttp.RequestConfig{ReadTimeout: readTimeout}
	}
	trusted, err := ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		log.Error().Str("error", err.Error()).Msg("TRUSTED_PROXIES ignored")
		trusted = nil
	}
	s.app.Use(clientIPMiddleware(trusted), requestIDMiddleware, s.observe, recoverMiddleware, contentCodingMiddleware, func(c *fiber.Ctx) error {
		c.Locals(refusalsKey{}, s.refuse)
		return c.Next()
	})
	if len(cfg.CORSOrigins) > 0 {
		s.app.Use(cors.New(cors.Config{
			AllowOrigins:  strings.Join(cfg.CORSOrigins, ","),
			AllowHeaders:  "Authorization, Content-Type, X-API-Key, X-Request-ID",
			ExposeHeaders: "X-Request-ID, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After",
		}))
	}
	s.app.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	s.app.Get("/readyz", s.readyz)
	return s
}

// App returns the Fiber app, for tests (app.Test) and for areas that mount
// routes themselves.
func (s *Server) App() *fiber.App { return s.app }

// Refusals is the server's tracker of unauthenticated refusals (see
// Refuse): cmd sets its recorder, runs it and flushes it at shutdown.
func (s *Server) Refusals() *Refusals { return s.refuse }

// Log is the server's logger.
func (s *Server) Log() zerolog.Logger { return s.log }

// AddReadyCheck adds a dependency that /readyz checks.
func (s *Server) AddReadyCheck(rc ReadyCheck) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, &readyCheck{ReadyCheck: rc})
}

// readyCheck is a ReadyCheck with its cached result.
type readyCheck struct {
	ReadyCheck
	mu    sync.Mutex // held while the check runs: one at a time
	until time.Time
	err   error
}

func (rc *readyCheck) run(ctx context.Context) error {
	if rc.CacheFor <= 0 {
		return rc.Check(ctx)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if time.Now().Before(rc.until) {
		return rc.err
	}
	rc.err = rc.Check(ctx)
	rc.until = time.Now().Add(rc.CacheFor)
	return rc.err
}

func (s *Server) readyz(c *fiber.Ctx) error {
	s.mu.Lock()
	checks := append([]*readyCheck(nil), s.checks...)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	for _, rc := range checks {
		if err := rc.run(ctx); err != nil {
			s.log.Warn().Str("check", rc.Name).Str("error", err.Error()).Msg("not ready")
			return vectabase.Errorf(vectabase.EUNAVAILABLE, "%s is not ready", rc.Name)
		}
	}
	return c.JSON(fiber.Map{"status": "ready"})
}

// Route is one entry of an area's route table: everything a reader needs to
// know about an endpoint on one line.
type Route struct {
	Method    string
	Path      string
	Auth      fiber.Handler // nil: no authentication
	BodyLimit int           // bytes; 0: MaxBodyBytes
	Timeout   time.Duration // 0: 30 s
	Handler   fiber.Handler
}

// Mount registers an area's route table.
func (s *Server) Mount(routes []Route) {
	for _, r := range routes {
		handlers := []fiber.Handler{limits(r)}
		if r.Auth != nil {
			handlers = append(handlers, r.Auth)
		}
		handlers = append(handlers, r.Handler)
		s.app.Add(r.Method, r.Path, handlers...)
	}
}

// limits applies a route's body limit and timeout.
func limits(r Route) fiber.Handler {
	limit := r.BodyLimit
	if limit <= 0 {
		limit = MaxBodyBytes
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return func(c *fiber.Ctx) error {
		// The limit holds for the decoded body (see body.go).
		if err := decodedBody(c, limit); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.UserContext(), timeout)
		defer cancel()
		c.SetUserContext(ctx)
		return c.Next()
	}
}

// recoverMiddleware turns a panic into INTERNAL. The panic value is not
// logged: it may hold anything, including secrets; the stack is enough.
func recoverMiddleware(c *fiber.Ctx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &vectabase.Error{Code: vectabase.EINTERNAL, Message: "internal error", Err: fmt.Errorf("panic (%T)", r)}
		}
	}()
	return c.Next()
}

// observe writes the request's one log line and its metrics. It handles the
// error itself so that the logged status is the one sent.
func (s *Server) observe(c *fiber.Ctx) error {
	start := time.Now()
	err := c.Next()
	if err != nil {
		if herr := s.app.ErrorHandler(c, err); herr != nil {
			_ = c.SendStatus(fiber.StatusInternalServerError)
		}
	}
	status := c.Response().StatusCode()
	latency := time.Since(start)
	route := routeOf(c)
	// Unmatched paths share one label, so scanners cannot blow up the
	// metrics' cardinality.
	var fe *fiber.Error
	if errors.As(err, &fe) && (fe.Code == fiber.StatusNotFound || fe.Code == fiber.StatusMethodNotAllowed) {
		route = "unmatched"
	}
	// Label values outlive the request: copy them out of Fiber's reused
	// buffers, or stored series change their labels under the registry.
	method := utils.CopyString(c.Method())
	route = utils.CopyString(route)
	s.metrics.observe(method, route, status, latency)
	actor := ActorOf(c)
	ev := s.log.Info()
	if status >= 500 {
		ev = s.log.Error()
	}
	ev.Str("requestId", RequestID(c)).
		Str("method", method).
		Str("route", route).
		Str("path", c.Path()). // path only: query strings may carry tokens
		Int("status", status).
		Dur("latency", latency).
		Str("ip", ClientIP(c)).
		Str("actorType", actor.Type).
		Str("actorId", actor.ID).
		Msg("request")
	return nil
}

func routeOf(c *fiber.Ctx) string {
	if r := c.Route(); r != nil && r.Path != "" && r.Path != "/" {
		return r.Path
	}
	return c.Path()
}

// Listen serves the API on cfg.HTTPAddr and the metrics on cfg.MetricsAddr
// until Shutdown. It returns when the API listener stops.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("server: listen on HTTP_ADDR %s: %w", s.cfg.HTTPAddr, err)
	}
	return s.Serve(ln)
}

// Serve serves the API on ln (and the metrics listener, if configured).
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.MetricsAddr != "" && s.reg != nil {
		ml, err := net.Listen("tcp", s.cfg.MetricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("server: listen on METRICS_ADDR %s: %w", s.cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.mu.Lock()
		s.metricL = hs
		s.mu.Unlock()
		go func() {
			if err := hs.Serve(ml); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error().Err(err).Msg("metrics listener stopped")
			}
		}()
	}
	// HTTP_MAX_CONNS and HTTP_MAX_CONNS_PER_IP, answered in the contract's
	// shape (fasthttp's own caps stay behind it as a backstop).
	return s.app.Listener(newConnLimiter(ln, s.cfg.MaxConns, s.cfg.MaxConnsPerIP))
}

// Shutdown stops accepting connections and waits for in-flight requests to
// finish, up to ctx's deadline.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	hs := s.metricL
	s.mu.Unlock()
	if hs != nil {
		_ = hs.Shutdown(ctx)
	}
	return s.app.ShutdownWithContext(ctx)
}
