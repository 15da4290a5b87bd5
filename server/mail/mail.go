// Package mail sends the server's mails: password resets, email
// confirmations and notices. Mails are written to a durable outbox (store)
// in the transaction of the change that causes them; a Worker started by
// cmd sends them through a Sender, one instance at a time per mail, with
// retries. The SMTP sender is github.com/wneessen/go-mail; vectabase dev
// uses a Dir sender that writes .eml files instead.
package mail

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is mail's configuration, filled from the environment in cmd/.
// SMTPURL holds the relay's password: String redacts it.
type Config struct {
	// SMTPURL is smtp://user:pass@host:587 (STARTTLS required), smtps://…:465
	// (implicit TLS), with ?tls=opportunistic|none to relax it (local relays).
	// Empty: no SMTP (dev writes mails to Dir; serve keeps them queued).
	SMTPURL string `env:"SMTP_URL"`
	From    string `env:"MAIL_FROM" envDefault:"Vectabase <no-reply@vectabase.local>"`
	// TemplateDir overrides the embedded templates: NAME.subject.txt,
	// NAME.txt and NAME.html, for any of the names in Templates.
	TemplateDir string `env:"MAIL_TEMPLATE_DIR"`
	// Dir receives each mail as an .eml file when SMTPURL is empty and Dir
	// is set (vectabase dev: ./.vectabase/mail).
	Dir string `env:"MAIL_DIR"`
	// PublicURL is the web app's address, the base of links in mails.
	PublicURL string `env:"PUBLIC_URL"`

	PollInterval time.Duration `env:"MAIL_POLL_INTERVAL" envDefault:"2s"`
	MaxAttempts  int           `env:"MAIL_MAX_ATTEMPTS" envDefault:"12"`
	SendTimeout  time.Duration `env:"MAIL_SEND_TIMEOUT" envDefault:"30s"`
}

// WithDefaults fills what the environment would have (for configurations
// built in code).
func (c Config) WithDefaults() Config {
	if c.From == "" {
		c.From = "Vectabase <no-reply@vectabase.local>"
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 12
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 30 * time.Second
	}
	return c
}

// String describes c without the SMTP password.
func (c Config) String() string {
	return fmt.Sprintf("mail.Config{SMTP:%s From:%q Dir:%q PublicURL:%q}", redactURL(c.SMTPURL), c.From, c.Dir, c.PublicURL)
}

// GoString redacts like String.
func (c Config) GoString() string { return c.String() }

func redactURL(raw string) string {
	if raw == "" {
		return `""`
	}
	u, err := url.Parse(raw)
	if err != nil {
		return `"[unparsable]"`
	}
	return strconv.Quote(u.Redacted())
}

// Message is one rendered mail. Link is the link it carries, if any (for
// the dev log; it is in Text and HTML already).
type Message struct {
	To      string
	Subject string
	Text    string
	HTML    string
	Link    string
}

// Sender delivers a message; an error means it was not delivered (the
// worker retries it later).
type Sender interface {
	Send(ctx context.Context, from string, m Message) error
}

// smtpSettings is SMTPURL parsed.
type smtpSettings struct {
	host, user, pass string
	port             int
	tls              string // starttls | implicit | opportunistic | none
}

func parseSMTPURL(raw string) (smtpSettings, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return smtpSettings{}, errors.New("mail: SMTP_URL is not a URL")
	}
	var s smtpSettings
	switch u.Scheme {
	case "smtp":
		s.tls, s.port = "starttls", 587
	case "smtps":
		s.tls, s.port = "implicit", 465
	default:
		return s, fmt.Errorf("mail: SMTP_URL scheme %q: want smtp or smtps", u.Scheme)
	}
	s.host = u.Hostname()
	if s.host == "" {
		return s, errors.New("mail: SMTP_URL has no host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return s, errors.New("mail: SMTP_URL has a bad port")
		}
		s.port = n
	}
	if u.User != nil {
		s.user = u.User.Username()
		s.pass, _ = u.User.Password()
	}
	switch t := u.Query().Get("tls"); t {
	case "":
	case "starttls", "implicit", "opportunistic", "none":
		s.tls = t
	default:
		return s, fmt.Errorf("mail: SMTP_URL tls=%q: want starttls, implicit, opportunistic or none", t)
	}
	return s, nil
}

// Validate checks the configuration without connecting anywhere.
func (c Config) Validate() error {
	if c.SMTPURL != "" {
		if _, err := parseSMTPURL(c.SMTPURL); err != nil {
			return err
		}
	}
	if c.From == "" {
		return errors.New("mail: MAIL_FROM is empty")
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("mail: PUBLIC_URL must be an http(s) URL")
		}
	}
	if c.MaxAttempts < 1 {
		return errors.New("mail: MAIL_MAX_ATTEMPTS must be at least 1")
	}
	return nil
}

// NewSender is the sender c names: SMTP when SMTPURL is set, else a Dir
// sender when Dir is set, else nil (mails stay queued until one is
// configured).
func NewSender(c Config, onWrite func(path string, m Message)) (Sender, error) {
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.SMTPURL != "" {
		s, _ := parseSMTPURL(c.SMTPURL)
		return &SMTP{s: s, timeout: c.SendTimeout}, nil
	}
	if c.Dir != "" {
		return &Dir{Path: c.Dir, OnWrite: onWrite}, nil
	}
	return nil, nil
}

// Link joins the public URL and a path with one query parameter.
func (c Config) Link(path, key, value string) string {
	base := strings.TrimRight(c.PublicURL, "/")
	if base == "" {
		base = "http://localhost:8080"
	}
	return base + path + "?" + url.Values{key: {value}}.Encode()
}

// hostPort is host:port for dialing.
func (s smtpSettings) hostPort() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }
