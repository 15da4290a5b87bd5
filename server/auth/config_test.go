package auth_test

import (
	"strings"
	"testing"
	"time"

	caarlosenv "github.com/caarlos0/env/v11"

	"github.com/vectabase/vectabase/server/auth"
)

// The environment defaults are the contract's (section 2).
func TestConfigFromEnvironment(t *testing.T) {
	var c auth.Config
	if err := caarlosenv.ParseWithOptions(&c, caarlosenv.Options{Environment: map[string]string{}}); err != nil {
		t.Fatalf("env.Parse err = %v, want nil", err)
	}
	if c.AccessTTL != time.Hour || c.RefreshTTL != 720*time.Hour || c.Issuer != "vectabase" ||
		c.RefreshReuseInterval != 0 || c.DiscordAPIBase != "https://discord.com/api" {
		t.Errorf("defaults = %v, want 1h, 720h, vectabase, 0s, https://discord.com/api", c)
	}
	err := caarlosenv.ParseWithOptions(&c, caarlosenv.Options{Environment: map[string]string{
		"JWT_ACCESS_TTL": "15m", "JWT_REFRESH_TTL": "24h", "JWT_ISSUER": "me", "JWT_REFRESH_REUSE_INTERVAL": "5s",
		"DISCORD_CLIENT_SECRET": "shh-secret",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessTTL != 15*time.Minute || c.RefreshTTL != 24*time.Hour || c.Issuer != "me" || c.RefreshReuseInterval != 5*time.Second {
		t.Errorf("parsed = %v", c)
	}
	for _, s := range []string{c.String(), c.GoString()} {
		if strings.Contains(s, "shh-secret") {
			t.Errorf("Config string %q shows the Discord client secret", s)
		}
	}
}
