// Package hcvault is the keyring's KEK on HashiCorp Vault's transit engine:
// Vault wraps and unwraps the serialized keysets, and only those. Field data
// never goes to Vault. The server and token come from the standard VAULT_*
// variables (VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE, VAULT_CACERT, ...).
package hcvault

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/hashicorp/vault/api"

	"github.com/vectabase/vectabase/keyring"
)

var _ keyring.KEK = (*KEK)(nil)
var _ keyring.KEKDescriber = (*KEK)(nil)

// Config names the transit key. Mount and Key default to "transit" and
// "vectabase" (VAULT_TRANSIT_MOUNT, VAULT_TRANSIT_KEY).
type Config struct {
	Mount string
	Key   string
	// Client is the Vault client to use. When nil, New makes one from
	// api.DefaultConfig, which reads the standard VAULT_* variables.
	Client *api.Client
}

// KEK wraps keysets with a Vault transit key. Close stops its token renewal.
type KEK struct {
	client *api.Client
	mount  string
	key    string

	stopOnce sync.Once
	watcher  *api.LifetimeWatcher
}

// authError is a transit decrypt refused for the ciphertext itself (wrong
// key, altered data or associated data); the keyring reports it as a wrong
// KEK rather than an unreachable one.
type authError struct{ msg string }

func (e authError) Error() string   { return e.msg }
func (authError) AuthFailure() bool { return true }

// New connects to Vault and checks, before anything is wrapped, that the
// server answers, the token is accepted, and the transit key exists and
// supports associated data. Each failure has its own message naming Vault's
// address and the key, never the token. When the token is renewable, New
// starts renewing it in the background until Close.
func New(ctx context.Context, cfg Config) (*KEK, error) {
	if cfg.Mount == "" {
		cfg.Mount = "transit"
	}
	if cfg.Key == "" {
		cfg.Key = "vectabase"
	}
	client := cfg.Client
	if client == nil {
		vc := api.DefaultConfig()
		if vc.Error != nil {
			return nil, fmt.Errorf("hcvault: Vault configuration from VAULT_* variables: %w", vc.Error)
		}
		var err error
		if client, err = api.NewClient(vc); err != nil {
			return nil, fmt.Errorf("hcvault: Vault client: %w", err)
		}
	}
	if client.Token() == "" {
		return nil, errors.New("hcvault: no Vault token (set VAULT_TOKEN)")
	}
	k := &KEK{client: client, mount: cfg.Mount, key: cfg.Key}

	self, err := client.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, k.flatten("look up token", err)
	}
	keyInfo, err := client.Logical().ReadWithContext(ctx, k.mount+"/keys/"+k.key)
	if err != nil {
		return nil, k.flatten("read transit key", err)
	}
	if keyInfo == nil || keyInfo.Data == nil {
		return nil, fmt.Errorf("hcvault: transit key %s/keys/%s not found at %s (create it: vault write -f %s/keys/%s)",
			k.mount, k.key, client.Address(), k.mount, k.key)
	}
	switch typ, _ := keyInfo.Data["type"].(string); typ {
	case "aes128-gcm96", "aes256-gcm96", "chacha20-poly1305":
	default:
		return nil, fmt.Errorf("hcvault: transit key %s/keys/%s has type %q; want aes256-gcm96 (associated data needs an AEAD key)", k.mount, k.key, typ)
	}
	if derived, _ := keyInfo.Data["derived"].(bool); derived {
		return nil, fmt.Errorf("hcvault: transit key %s/keys/%s is a derived key; want a plain aes256-gcm96 key", k.mount, k.key)
	}
	if err := k.startRenewal(self); err != nil {
		return nil, err
	}
	return k, nil
}

// startRenewal keeps a renewable token alive with a LifetimeWatcher. A
// root or periodic-less non-renewable token is left alone.
func (k *KEK) startRenewal(self *api.Secret) error {
	if self == nil || self.Data == nil {
		return nil
	}
	renewable, _ := self.Data["renewable"].(bool)
	var ttl int64
	if n, ok := self.Data["ttl"].(json.Number); ok {
		ttl, _ = n.Int64()
	}
	if !renewable || ttl <= 0 {
		return nil
	}
	w, err := k.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{
		Secret: &api.Secret{Auth: &api.SecretAuth{
			ClientToken:   k.client.Token(),
			Renewable:     true,
			LeaseDuration: int(ttl),
		}},
	})
	if err != nil {
		return fmt.Errorf("hcvault: token renewal: %w", err)
	}
	k.watcher = w
	go w.Start()
	go func() {
		for {
			select {
			case <-w.DoneCh():
				// Renewal ended (max TTL, revoked token, or Stop). Later
				// calls fail with "token denied", which /readyz reports.
				return
			case <-w.RenewCh():
			}
		}
	}()
	return nil
}

// Close stops renewing the token.
func (k *KEK) Close() error {
	k.stopOnce.Do(func() {
		if k.watcher != nil {
			k.watcher.Stop()
		}
	})
	return nil
}

// Encrypt wraps plaintext (a serialized keyset) with the transit key,
// binding associatedData. The ciphertext is Vault's "vault:vN:..." text.
func (k *KEK) Encrypt(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	resp, err := k.client.Logical().WriteWithContext(ctx, k.mount+"/encrypt/"+k.key, map[string]any{
		"plaintext":       base64.StdEncoding.EncodeToString(plaintext),
		"associated_data": base64.StdEncoding.EncodeToString(associatedData),
	})
	if err != nil {
		return nil, k.flatten("encrypt", err)
	}
	ct, _ := dataString(resp, "ciphertext")
	if ct == "" {
		return nil, fmt.Errorf("hcvault: encrypt with %s/keys/%s: no ciphertext in Vault's answer", k.mount, k.key)
	}
	return []byte(ct), nil
}

// Decrypt unwraps a ciphertext made by Encrypt. A ciphertext Vault refuses
// (altered, other key, other associated data) gives an error whose
// AuthFailure method is true; an unreachable Vault or refused token does not.
func (k *KEK) Decrypt(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	resp, err := k.client.Logical().WriteWithContext(ctx, k.mount+"/decrypt/"+k.key, map[string]any{
		"ciphertext":      string(ciphertext),
		"associated_data": base64.StdEncoding.EncodeToString(associatedData),
	})
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest {
			return nil, authError{fmt.Sprintf("hcvault: decrypt with %s/keys/%s: Vault refused the ciphertext", k.mount, k.key)}
		}
		return nil, k.flatten("decrypt", err)
	}
	b64, ok := dataString(resp, "plaintext")
	if !ok {
		return nil, fmt.Errorf("hcvault: decrypt with %s/keys/%s: no plaintext in Vault's answer", k.mount, k.key)
	}
	pt, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("hcvault: decrypt with %s/keys/%s: plaintext in Vault's answer is not base64", k.mount, k.key)
	}
	return pt, nil
}

// RotateKey makes Vault create a new version of the transit key; keysets
// are wrapped by it once the keyring re-wraps them (Keyring.RotateKEK with
// this same KEK). Older versions keep decrypting.
func (k *KEK) RotateKey(ctx context.Context) error {
	if _, err := k.client.Logical().WriteWithContext(ctx, k.mount+"/keys/"+k.key+"/rotate", nil); err != nil {
		return k.flatten("rotate transit key", err)
	}
	return nil
}

// KEKBackend returns "vault".
func (k *KEK) KEKBackend() string { return "vault" }

// KEKKeyID returns the transit key path, e.g. "transit/keys/vectabase".
func (k *KEK) KEKKeyID() string { return k.mount + "/keys/" + k.key }

// String names the KEK without the token.
func (k *KEK) String() string { return "vault transit KEK " + k.client.Address() + " " + k.KEKKeyID() }

// flatten turns a Vault client error into one line naming the cause, so no
// Vault type reaches callers and no token appears.
func (k *KEK) flatten(what string, err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusForbidden, http.StatusUnauthorized:
			return fmt.Errorf("hcvault: %s with %s/keys/%s: Vault at %s denied the token (permission denied; check VAULT_TOKEN and its policy)",
				what, k.mount, k.key, k.client.Address())
		case http.StatusNotFound:
			return fmt.Errorf("hcvault: %s: transit key %s/keys/%s or mount not found at %s", what, k.mount, k.key, k.client.Address())
		case http.StatusServiceUnavailable:
			return fmt.Errorf("hcvault: %s: Vault at %s is sealed or unavailable: %w", what, k.client.Address(), keyring.ErrKEKUnavailable)
		}
		return fmt.Errorf("hcvault: %s with %s/keys/%s: Vault at %s answered %d", what, k.mount, k.key, k.client.Address(), re.StatusCode)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("hcvault: %s: %w", what, err)
	}
	cause := "no answer"
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err.Error()
	}
	return fmt.Errorf("hcvault: %s: Vault at %s is unreachable: %s: %w", what, k.client.Address(), cause, keyring.ErrKEKUnavailable)
}

func dataString(s *api.Secret, field string) (string, bool) {
	if s == nil || s.Data == nil {
		return "", false
	}
	v, ok := s.Data[field].(string)
	return v, ok
}
