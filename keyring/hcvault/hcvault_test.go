package hcvault_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/hcvault"
	"github.com/vectabase/vectabase/keyring/kektest"
)

const token = "hvs.THIS-TOKEN-MUST-NEVER-BE-PRINTED"

// TestOutsideVault runs the KEK suite against the Vault in VAULT_ADDR (see
// the README: vault server -dev, enable transit, create the key). The
// in-process Vault run lives in the nested module ./vaulttest.
func TestOutsideVault(t *testing.T) {
	if os.Getenv("VAULT_ADDR") == "" {
		t.Skip("VAULT_ADDR not set; the in-process Vault suite is in keyring/hcvault/vaulttest")
	}
	ctx := context.Background()
	cfg := hcvault.Config{Mount: os.Getenv("VAULT_TRANSIT_MOUNT"), Key: os.Getenv("VAULT_TRANSIT_KEY")}
	kektest.Run(t, func() keyring.KEK {
		kek, err := hcvault.New(ctx, cfg)
		if err != nil {
			t.Fatalf("hcvault.New err = %v, want nil", err)
		}
		t.Cleanup(func() { kek.Close() })
		return kek
	})
}

func client(t *testing.T, addr string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// fakeVault answers lookup-self and the key read with the given statuses.
func fakeVault(t *testing.T, lookupStatus, keyStatus int, keyType string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/v1/auth/token/lookup-self":
			w.WriteHeader(lookupStatus)
			if lookupStatus == 200 {
				w.Write([]byte(`{"data":{"renewable":false,"ttl":0}}`))
			} else {
				w.Write([]byte(`{"errors":["permission denied"]}`))
			}
		case strings.HasPrefix(r.URL.Path, "/v1/transit/keys/"):
			w.WriteHeader(keyStatus)
			if keyStatus == 200 {
				w.Write([]byte(`{"data":{"type":"` + keyType + `","derived":false}}`))
			} else {
				w.Write([]byte(`{"errors":[]}`))
			}
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestNewFailsClearly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name, addr, want string
	}{
		{"vault down", "http://127.0.0.1:1", "is unreachable"},
		{"token denied", fakeVault(t, 403, 200, "aes256-gcm96"), "denied the token"},
		{"key missing", fakeVault(t, 200, 404, ""), "transit key transit/keys/vectabase not found"},
		{"key of wrong type", fakeVault(t, 200, 200, "rsa-2048"), `has type "rsa-2048"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := hcvault.New(ctx, hcvault.Config{Client: client(t, tc.addr)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("hcvault.New err = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "THIS-TOKEN") {
				t.Errorf("hcvault.New err = %q shows the token", err)
			}
		})
	}
}

func TestNewWithoutToken(t *testing.T) {
	t.Parallel()
	c := client(t, "http://127.0.0.1:1")
	c.ClearToken()
	_, err := hcvault.New(context.Background(), hcvault.Config{Client: c})
	if err == nil || !strings.Contains(err.Error(), "VAULT_TOKEN") {
		t.Fatalf("hcvault.New without token err = %v, want one naming VAULT_TOKEN", err)
	}
}

// A Vault that is sealed (503) or unreachable gives errors wrapping
// keyring.ErrKEKUnavailable, which the API answers with 503 UNAVAILABLE;
// a refused token does not.
func TestUnavailableVaultIsKEKUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sealed := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case sealed:
			w.WriteHeader(503)
			w.Write([]byte(`{"errors":["Vault is sealed"]}`))
		case r.URL.Path == "/v1/auth/token/lookup-self":
			w.Write([]byte(`{"data":{"renewable":false,"ttl":0}}`))
		case strings.HasPrefix(r.URL.Path, "/v1/transit/keys/"):
			w.Write([]byte(`{"data":{"type":"aes256-gcm96","derived":false}}`))
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(srv.Close)
	kek, err := hcvault.New(ctx, hcvault.Config{Client: client(t, srv.URL)})
	if err != nil {
		t.Fatal(err)
	}
	sealed = true
	if _, err := kek.Encrypt(ctx, []byte("keyset"), []byte("ad")); !errors.Is(err, keyring.ErrKEKUnavailable) {
		t.Errorf("Encrypt on a sealed Vault err = %v, want one wrapping ErrKEKUnavailable", err)
	}
	if err := kek.RotateKey(ctx); !errors.Is(err, keyring.ErrKEKUnavailable) {
		t.Errorf("RotateKey on a sealed Vault err = %v, want one wrapping ErrKEKUnavailable", err)
	}
	if _, err := hcvault.New(ctx, hcvault.Config{Client: client(t, "http://127.0.0.1:1")}); !errors.Is(err, keyring.ErrKEKUnavailable) {
		t.Errorf("New on an unreachable Vault err = %v, want one wrapping ErrKEKUnavailable", err)
	}
	if _, err := hcvault.New(ctx, hcvault.Config{Client: client(t, fakeVault(t, 403, 200, "aes256-gcm96"))}); errors.Is(err, keyring.ErrKEKUnavailable) {
		t.Errorf("New with a refused token err = %v, want not ErrKEKUnavailable", err)
	}
}
