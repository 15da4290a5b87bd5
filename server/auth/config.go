package auth

import (
	"fmt"
	"runtime"
	"time"
)

// Config is authentication's configuration, filled from the environment in
// cmd/. The Discord client secret is a secret: String redacts it.
type Config struct {
	AccessTTL  time.Duration `env:"JWT_ACCESS_TTL" envDefault:"1h"`
	RefreshTTL time.Duration `env:"JWT_REFRESH_TTL" envDefault:"720h"`
	Issuer     string        `env:"JWT_ISSUER" envDefault:"vectabase"`
	// RefreshReuseInterval is the grace for clients that refresh twice at
	// once: within it a reused refresh token gets the same successor pair;
	// after it, reuse revokes the chain. 0 disables the grace.
	RefreshReuseInterval time.Duration `env:"JWT_REFRESH_REUSE_INTERVAL" envDefault:"0s"`

	DiscordClientID     string `env:"DISCORD_CLIENT_ID"`
	DiscordClientSecret string `env:"DISCORD_CLIENT_SECRET"`
	DiscordRedirectURI  string `env:"DISCORD_REDIRECT_URI"`
	DiscordAPIBase      string `env:"DISCORD_API_BASE" envDefault:"https://discord.com/api"`
	// DiscordAuthorizeURL is where users are sent to grant access; empty:
	// DiscordAPIBase + "/oauth2/authorize".
	DiscordAuthorizeURL string `env:"DISCORD_AUTHORIZE_URL"`

	// Throttling against password guessing, counted in the database so the
	// limits hold across instances. Failures lock an account (by email) or
	// an IP for the rest of the window; attempts bound login and register
	// calls per IP whatever their outcome. The per-IP limits are generous
	// because tripping one blocks every user behind that address (offices,
	// NAT, a test suite on loopback); guessing a given account is held to
	// MaxFailuresPerAccount per window whatever the source.
	MaxFailuresPerAccount int           `env:"AUTH_MAX_FAILURES_PER_ACCOUNT" envDefault:"10"`
	MaxFailuresPerIP      int           `env:"AUTH_MAX_FAILURES_PER_IP" envDefault:"200"`
	FailureWindow         time.Duration `env:"AUTH_FAILURE_WINDOW" envDefault:"15m"`
	MaxAttemptsPerIP      int           `env:"AUTH_MAX_ATTEMPTS_PER_IP" envDefault:"1000"`
	AttemptWindow         time.Duration `env:"AUTH_ATTEMPT_WINDOW" envDefault:"1m"`

	// SigningKeyReload is how often an instance re-reads the signing keys,
	// to pick up a rotation made by another instance.
	SigningKeyReload time.Duration `env:"JWT_SIGNING_KEY_RELOAD" envDefault:"1m"`
	// SigningKeyRotateEvery makes a new signing key when the newest is this
	// old (0: only on demand, RotateSigningKey). It is raised to more than
	// the access-token lifetime, since a token must outlive at most one
	// rotation to stay verifiable.
	SigningKeyRotateEvery time.Duration `env:"JWT_SIGNING_KEY_ROTATE_EVERY" envDefault:"720h"`

	// MaxConcurrentHashes bounds the password hashes (login, register)
	// computed at once; more wait their turn. 0: GOMAXPROCS, one per core.
	MaxConcurrentHashes int `env:"AUTH_MAX_CONCURRENT_HASHES" envDefault:"0"`

	// Accounts: reset links live ResetTTL, confirmation links ConfirmTTL;
	// an address gets at most MaxResetsPerEmail reset mails per ResetWindow.
	// RequireConfirmedEmail refuses password logins until the email is
	// confirmed (imported Supabase users keep their confirmation).
	ResetTTL              time.Duration `env:"AUTH_RESET_TTL" envDefault:"1h"`
	ConfirmTTL            time.Duration `env:"AUTH_CONFIRM_TTL" envDefault:"24h"`
	ResetWindow           time.Duration `env:"AUTH_RESET_WINDOW" envDefault:"1h"`
	MaxResetsPerEmail     int           `env:"AUTH_MAX_RESETS_PER_EMAIL" envDefault:"5"`
	RequireConfirmedEmail bool          `env:"AUTH_REQUIRE_CONFIRMED_EMAIL" envDefault:"false"`

	// Argon2 are the password hashing parameters; zero: OWASPArgon2.
	Argon2 Argon2Params
}

// String describes c without the Discord client secret.
func (c Config) String() string {
	secret := ""
	if c.DiscordClientSecret != "" {
		secret = "[redacted]"
	}
	return fmt.Sprintf("auth.Config{AccessTTL:%s RefreshTTL:%s Issuer:%q RefreshReuseInterval:%s DiscordClientID:%q DiscordClientSecret:%q DiscordRedirectURI:%q DiscordAPIBase:%q}",
		c.AccessTTL, c.RefreshTTL, c.Issuer, c.RefreshReuseInterval, c.DiscordClientID, secret, c.DiscordRedirectURI, c.DiscordAPIBase)
}

// GoString redacts like String.
func (c Config) GoString() string { return c.String() }

func (c Config) withDefaults() Config {
	if c.AccessTTL == 0 {
		c.AccessTTL = time.Hour
	}
	if c.RefreshTTL == 0 {
		c.RefreshTTL = 720 * time.Hour
	}
	if c.Issuer == "" {
		c.Issuer = "vectabase"
	}
	if c.DiscordAPIBase == "" {
		c.DiscordAPIBase = "https://discord.com/api"
	}
	if c.MaxFailuresPerAccount == 0 {
		c.MaxFailuresPerAccount = 10
	}
	if c.MaxFailuresPerIP == 0 {
		c.MaxFailuresPerIP = 200
	}
	if c.FailureWindow == 0 {
		c.FailureWindow = 15 * time.Minute
	}
	if c.MaxAttemptsPerIP == 0 {
		c.MaxAttemptsPerIP = 1000
	}
	if c.AttemptWindow == 0 {
		c.AttemptWindow = time.Minute
	}
	if c.SigningKeyReload == 0 {
		c.SigningKeyReload = time.Minute
	}
	if c.SigningKeyRotateEvery > 0 {
		// The previous key is accepted until the next rotation, so a token
		// must not outlive two rotations: rotate less often than tokens live.
		c.SigningKeyRotateEvery = max(c.SigningKeyRotateEvery, c.AccessTTL+c.SigningKeyReload+tokenLeeway+time.Minute)
	}
	if c.ResetTTL == 0 {
		c.ResetTTL = time.Hour
	}
	if c.ConfirmTTL == 0 {
		c.ConfirmTTL = 24 * time.Hour
	}
	if c.ResetWindow == 0 {
		c.ResetWindow = time.Hour
	}
	if c.MaxResetsPerEmail == 0 {
		c.MaxResetsPerEmail = 5
	}
	if c.MaxConcurrentHashes == 0 {
		c.MaxConcurrentHashes = runtime.GOMAXPROCS(0)
	}
	if c.Argon2 == (Argon2Params{}) {
		c.Argon2 = OWASPArgon2
	}
	return c
}

// Validate checks the lifetimes: JWT times are whole seconds, so lifetimes
// must be at least one second.
func (c Config) Validate() error {
	if c.AccessTTL < time.Second {
		return fmt.Errorf("auth: JWT_ACCESS_TTL %s is shorter than one second", c.AccessTTL)
	}
	if c.RefreshTTL < time.Second {
		return fmt.Errorf("auth: JWT_REFRESH_TTL %s is shorter than one second", c.RefreshTTL)
	}
	if c.RefreshReuseInterval < 0 {
		return fmt.Errorf("auth: JWT_REFRESH_REUSE_INTERVAL %s is negative", c.RefreshReuseInterval)
	}
	if c.SigningKeyRotateEvery < 0 {
		return fmt.Errorf("auth: JWT_SIGNING_KEY_ROTATE_EVERY %s is negative", c.SigningKeyRotateEvery)
	}
	if c.MaxConcurrentHashes < 0 {
		return fmt.Errorf("auth: AUTH_MAX_CONCURRENT_HASHES %d is negative", c.MaxConcurrentHashes)
	}
	if c.ResetTTL < time.Minute || c.ConfirmTTL < time.Minute {
		return fmt.Errorf("auth: AUTH_RESET_TTL and AUTH_CONFIRM_TTL must be at least a minute")
	}
	if c.MaxFailuresPerAccount < 0 || c.MaxFailuresPerIP < 0 || c.MaxAttemptsPerIP < 0 || c.MaxResetsPerEmail < 0 {
		return fmt.Errorf("auth: throttling limits must not be negative")
	}
	return nil
}
