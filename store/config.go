package store

import (
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Config is the database configuration, filled from the environment in cmd/.
type Config struct {
	URL       string `env:"DATABASE_URL"`
	DirectURL string `env:"DATABASE_DIRECT_URL"`
	Host      string `env:"DB_HOST" envDefault:"localhost"`
	Port      int    `env:"DB_PORT" envDefault:"5432"`
	Name      string `env:"DB_NAME" envDefault:"vectabase"`
	User      string `env:"DB_USER" envDefault:"vectabase_admin"`
	Password  string `env:"DB_PASSWORD"`
	// SSLMode is verify-full unless set; dev mode sets disable.
	SSLMode   string `env:"DB_SSLMODE" envDefault:"verify-full"`
	MaxConns  int32  `env:"DB_MAX_CONNS" envDefault:"20"`
	PgBouncer bool   `env:"DB_PGBOUNCER" envDefault:"false"`
	// SlowQueryMS is the slow-query threshold; below zero, no statement is
	// traced (one-shot bulk commands, whose statements are slow by design).
	SlowQueryMS int `env:"SLOW_QUERY_MS" envDefault:"100"`

	// Direct says the pool must reach PostgreSQL itself (migrations,
	// LISTEN, session locks, pg_dump): Open refuses one that leads to a
	// pooler, whatever PgBouncer says. Not from the environment.
	Direct bool `env:"-"`

	// Not from the environment: the seed's fixed pool and retry policy.
	MaxConnIdleTime time.Duration `env:"-"`
	ConnectTimeout  time.Duration `env:"-"`
	RetryTries      int           `env:"-"`
	RetryFirst      time.Duration `env:"-"`
	RetryMax        time.Duration `env:"-"`
}

// withDefaults fills the fields that have no environment variable.
func (c Config) withDefaults() Config {
	if c.MaxConns <= 0 {
		c.MaxConns = 20
	}
	if c.MaxConnIdleTime == 0 {
		c.MaxConnIdleTime = 30 * time.Second
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.RetryTries == 0 {
		c.RetryTries = 5
	}
	if c.RetryFirst == 0 {
		c.RetryFirst = time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.SlowQueryMS == 0 {
		c.SlowQueryMS = 100
	}
	return c
}

// ConnString returns DATABASE_URL, or a URL built from the DB_* fields.
func (c Config) ConnString() string {
	if c.URL != "" {
		return c.URL
	}
	u := url.URL{
		Scheme: "postgres",
		Host:   c.Host + ":" + strconv.Itoa(c.Port),
		Path:   "/" + c.Name,
	}
	if c.Password != "" {
		u.User = url.UserPassword(c.User, c.Password)
	} else {
		u.User = url.User(c.User)
	}
	q := url.Values{}
	if c.SSLMode != "" {
		q.Set("sslmode", c.SSLMode)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// DirectConnString returns the URL for what PgBouncer's transaction mode
// cannot carry (migrations, LISTEN/NOTIFY, session locks).
func (c Config) DirectConnString() string {
	if c.DirectURL != "" {
		return c.DirectURL
	}
	return c.ConnString()
}

// String describes the configuration without the password.
func (c Config) String() string {
	return fmt.Sprintf("store.Config{%s, max_conns=%d, pgbouncer=%t}", Redact(c.ConnString()), c.MaxConns, c.PgBouncer)
}

// Redact returns a connection string with its password replaced, for messages.
func Redact(conn string) string {
	u, err := url.Parse(conn)
	if err != nil || u.Scheme == "" {
		return "(unparsable connection string)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
