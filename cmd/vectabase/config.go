package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/caarlos0/env/v11"
	"github.com/joho/godotenv"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/auth"
	"github.com/vectabase/vectabase/server/discord"
	"github.com/vectabase/vectabase/server/mail"
	"github.com/vectabase/vectabase/server/marketplace"
	"github.com/vectabase/vectabase/server/payments"
	"github.com/vectabase/vectabase/server/realtime"
	"github.com/vectabase/vectabase/server/redact"
	"github.com/vectabase/vectabase/server/retention"
	"github.com/vectabase/vectabase/server/rotation"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/backup"
	"github.com/vectabase/vectabase/vault"
	"github.com/vectabase/vectabase/vault/alerts"
	"github.com/vectabase/vectabase/vault/audit"
)

// devDir is where `vectabase dev` keeps its cluster, master key and dev.env.
const devDir = ".vectabase"

// Config is the whole configuration, one struct per package, filled from
// the environment (after .env and ./.vectabase/dev.env).
type Config struct {
	Store   store.Config
	Server  server.Config
	Log     LogConfig
	Keyring keyring.Config
	Backup  backup.Config
	Auth    auth.Config
	Mail    mail.Config
	// Realtime is the /api/realtime change feed.
	Realtime realtime.Config
	Secrets  vault.Config
	Rotation rotation.Config
	// Audit bounds the audit writer's queue and configures checkpoints.
	Audit audit.Config
	// Alerts go to ALERT_WEBHOOK_URL and the audit trail.
	Alerts alerts.Config
	// Retention prunes old request logs, Stripe events, sessions, counters.
	Retention retention.Config

	Marketplace marketplace.Config
	Discord     discord.Config
	Stripe      payments.Config

	AdminEmail    string `env:"ADMIN_EMAIL"`
	AdminPassword string `env:"ADMIN_PASSWORD"`
}

// LogConfig is zerolog's configuration.
type LogConfig struct {
	Level  string `env:"LOG_LEVEL" envDefault:"info"`
	Format string `env:"LOG_FORMAT"` // json | console; default json (console in dev)
}

// String never shows the admin password or database password.
func (c Config) String() string {
	return fmt.Sprintf("Config{%s, http=%s, metrics=%s, admin=%q}", c.Store, c.Server.HTTPAddr, c.Server.MetricsAddr, c.AdminEmail)
}

// loadEnvFiles reads ./.env and, unless skipDev, ./.vectabase/dev.env into
// the environment. Variables already set win over both, and .env wins over
// dev.env.
func loadEnvFiles(skipDev bool) error {
	files := []string{".env"}
	if !skipDev {
		files = append(files, filepath.Join(devDir, "dev.env"))
	}
	for _, f := range files {
		err := godotenv.Load(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read %s: %w", f, err)
		}
	}
	return nil
}

// loadConfig loads the env files and parses the environment.
func loadConfig(skipDev bool) (Config, error) {
	var cfg Config
	if err := loadEnvFiles(skipDev); err != nil {
		return cfg, err
	}
	return parseConfig(env.ToMap(os.Environ()))
}

// parseConfig fills the configuration from the variables in environ, with
// every package's defaults for what environ lacks.
func parseConfig(environ map[string]string) (Config, error) {
	var cfg Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environ}); err != nil {
		return cfg, fmt.Errorf("configuration: %s", oneLine(err.Error()))
	}
	return cfg, nil
}

// toolLogger is the logger of one-shot commands: warnings and errors only
// (what the database retry says while it waits, what went wrong), so that
// their own output and progress stay readable; a LOG_LEVEL of debug or
// trace is still honoured, for diagnosis.
func toolLogger(cfg Config, w io.Writer) (zerolog.Logger, error) {
	level := "warn"
	if l, err := zerolog.ParseLevel(strings.ToLower(cfg.Log.Level)); err == nil && l < zerolog.InfoLevel {
		level = cfg.Log.Level
	}
	return newLogger(LogConfig{Level: level, Format: cfg.Log.Format}, "console", w)
}

// toolStore is the pool configuration of one-shot commands: a few
// connections, and no slow-query tracing, since bulk statements (import,
// backup, re-encryption) are slow by design and would bury the one line a
// failing command prints.
func toolStore(c store.Config, url string, maxConns int32) store.Config {
	// The direct URL must be PostgreSQL itself: a pooled one is refused
	// with a line naming DATABASE_DIRECT_URL.
	c.Direct = url == c.DirectConnString()
	c.URL = url
	c.MaxConns = maxConns
	c.SlowQueryMS = -1
	return c
}

// newLogger builds the zerolog logger: JSON on stderr unless console is
// asked for (or is the default, in dev).
func newLogger(c LogConfig, defaultFormat string, w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(strings.ToLower(c.Level))
	if err != nil || c.Level == "" {
		return zerolog.Nop(), fmt.Errorf("LOG_LEVEL %q is not a level (trace, debug, info, warn, error)", c.Level)
	}
	// Colours only for a person at a terminal: redirected to a file or a
	// pipe, escape codes would be noise in every line.
	color := isTerminal(w)
	// Every log line passes the redactor: secret shapes never reach output,
	// whatever a caller logged.
	w = redact.NewWriter(w)
	format := c.Format
	if format == "" {
		format = defaultFormat
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05", NoColor: !color}
	default:
		return zerolog.Nop(), fmt.Errorf("LOG_FORMAT %q is not json or console", format)
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}
