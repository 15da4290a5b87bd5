package main

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/bodytest"
	"github.com/vectabase/vectabase/store/backup"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TestNoRouteDecodesPastItsLimit wires every area as serve does and sends
// every registered route (Stripe webhook, Discord interactions and the
// realtime socket included) a gzip body that decodes to 64 MiB, past every
// route's limit, and one in stacked codings: each answers 413 and 415 in
// the contract's shape, so no route reaches an uncapped decoder. /healthz
// and /readyz read no body and answer as usual.
func TestNoRouteDecodesPastItsLimit(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	reg := prometheus.NewRegistry()
	srv := server.New(server.Config{}, zerolog.Nop(), reg)
	keyFile := filepath.Join(t.TempDir(), "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Keyring: keyring.Config{Backend: "local", MasterKeyFile: keyFile}, Backup: backup.Config{Dir: t.TempDir()}}
	d := &deps{cfg: cfg, log: zerolog.Nop(), reg: reg, db: db, kr: keyringtest.New(t, db.Pool)}
	t.Cleanup(d.close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := mountAreas(ctx, d, srv); err != nil {
		t.Fatalf("mountAreas err = %v", err)
	}
	bomb := bodytest.Gzip(64 << 20)
	n := 0
	for _, r := range srv.App().GetRoutes(true) {
		if r.Method == "HEAD" || r.Method == "USE" || r.Path == "/healthz" || r.Path == "/readyz" {
			continue
		}
		path := concrete(r.Path)
		for _, tc := range []struct {
			enc, code string
			status    int
			body      []byte
		}{
			{"gzip", "PAYLOAD_TOO_LARGE", 413, bomb},
			{"gzip, gzip", "UNSUPPORTED_MEDIA_TYPE", 415, []byte("x")},
		} {
			req := httptest.NewRequest(r.Method, path, bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Content-Encoding", tc.enc)
			resp, err := srv.App().Test(req, int((30 * time.Second).Milliseconds()))
			if err != nil {
				t.Fatalf("%s %s: %v", r.Method, path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), `"error":"`+tc.code+`"`) {
				t.Errorf("%s %s with Content-Encoding %q = %d %s, want %d %s", r.Method, path, tc.enc, resp.StatusCode, body, tc.status, tc.code)
			}
		}
		n++
	}
	if n < 40 {
		t.Fatalf("only %d routes checked: the route list is not the whole API", n)
	}
}

// concrete fills a route pattern's parameters with a plausible value.
func concrete(pattern string) string {
	parts := strings.Split(pattern, "/")
	for i, p := range parts {
		switch {
		case strings.HasPrefix(p, ":"):
			parts[i] = "00000000-0000-4000-8000-000000000000"
		case p == "*" || p == "+":
			parts[i] = "x"
		}
	}
	return strings.Join(parts, "/")
}

// TestHTTPVariablesParse: the HTTP_*, TRUSTED_PROXIES and READYZ_KEK_CACHE
// variables fill server.Config, with the README's defaults.
func TestHTTPVariablesParse(t *testing.T) {
	t.Parallel()
	cfg, err := parseConfig(map[string]string{
		"HTTP_READ_HEADER_TIMEOUT": "2s", "HTTP_READ_TIMEOUT": "4s", "HTTP_WRITE_TIMEOUT": "6s", "HTTP_IDLE_TIMEOUT": "8s",
		"HTTP_MAX_HEADER_BYTES": "9000", "HTTP_MAX_CONNS": "100", "HTTP_MAX_CONNS_PER_IP": "10",
		"READYZ_KEK_CACHE": "3s", "TRUSTED_PROXIES": "10.0.0.0/8,192.168.1.1", "STRIPE_CHECKOUT_MAX_PER_IP": "7",
	})
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Server
	if s.ReadHeaderTimeout != 2*time.Second || s.ReadTimeout != 4*time.Second || s.WriteTimeout != 6*time.Second ||
		s.IdleTimeout != 8*time.Second || s.MaxHeaderBytes != 9000 || s.MaxConns != 100 || s.MaxConnsPerIP != 10 ||
		s.ReadyzKEKCache != 3*time.Second || len(s.TrustedProxies) != 2 || cfg.Stripe.CheckoutMaxPerIP != 7 {
		t.Fatalf("parsed %+v, stripe %v", s, cfg.Stripe)
	}
	def, err := parseConfig(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	s = def.Server
	if s.ReadHeaderTimeout != 10*time.Second || s.ReadTimeout != 30*time.Second || s.WriteTimeout != 30*time.Second ||
		s.IdleTimeout != 120*time.Second || s.MaxHeaderBytes != 16384 || s.MaxConns != 20000 || s.MaxConnsPerIP != 0 ||
		s.ReadyzKEKCache != 5*time.Second || def.Stripe.CheckoutMaxPerIP != 30 || def.Stripe.CheckoutWindow != time.Minute {
		t.Fatalf("defaults %+v, stripe %v", s, def.Stripe)
	}
	bad, _ := parseConfig(map[string]string{"TRUSTED_PROXIES": "proxy.internal"})
	if err := bad.Server.Validate(); err == nil || !strings.Contains(err.Error(), "proxy.internal") {
		t.Fatalf("Validate(TRUSTED_PROXIES=proxy.internal) = %v", err)
	}
}
