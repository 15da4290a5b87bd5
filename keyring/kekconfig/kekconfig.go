// Package kekconfig turns a keyring.Config into the KEK it names: a local
// key file, a local passphrase (salt from the store), or Vault transit. It
// is the one place that knows every backend, so cmd/ stays a few lines and
// a new KMS is one file plus one case here.
package kekconfig

import (
	"context"
	"fmt"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/hcvault"
	"github.com/vectabase/vectabase/keyring/local"
)

// New returns the KEK cfg names. For a passphrase it reads (or creates, on
// first start) the salt in st. The Vault KEK implements io.Closer: close it
// at shutdown to stop its token renewal. Errors name the cause and never a
// secret.
func New(ctx context.Context, cfg keyring.Config, st keyring.Store) (keyring.KEK, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch cfg.Backend {
	case "vault":
		return hcvault.New(ctx, hcvault.Config{Mount: cfg.TransitMount, Key: cfg.TransitKey})
	case "local":
		if cfg.MasterKeyFile != "" {
			return local.NewFromFile(cfg.MasterKeyFile)
		}
		salt, err := keyring.PassphraseSalt(ctx, st)
		if err != nil {
			return nil, err
		}
		return local.NewFromPassphrase(cfg.Passphrase, salt)
	}
	return nil, fmt.Errorf("keyring: unknown KEYRING_BACKEND %q", cfg.Backend)
}
