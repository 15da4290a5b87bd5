// Package kekconfig turns a keyring.Config into the KEK it names: a local
// key file, a local passphrase (salt from the store), Vault transit, AWS
// KMS or a PKCS#11 token, followed by the decrypt-only KEKs of
// KEYRING_PREVIOUS_KEKS. It is the one place that knows every backend, so
// cmd/ stays a few lines and a new KMS is one file plus one case here.
package kekconfig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/awskms"
	"github.com/vectabase/vectabase/keyring/hcvault"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/keyring/pkcs11"
)

// Backends lists the KEYRING_BACKEND values.
var Backends = []string{"local", "vault", "awskms", "pkcs11"}

// Option configures New and FromSpec.
type Option func(*options)

type options struct{ reg prometheus.Registerer }

// WithRegisterer counts and times every KEK's operations on reg
// (vectabase_kek_operations_total, vectabase_kek_operation_duration_seconds).
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *options) { o.reg = reg }
}

// New returns the KEK cfg names, each backend instrumented, chained with
// the previous KEKs of cfg.PreviousKEKs (keyring.Chain) when there are any.
// For a passphrase it reads (or creates, on first start) the salt in st.
// The result implements io.Closer: close it at shutdown (Vault token
// renewal, PKCS#11 sessions). Errors name the cause and never a secret.
func New(ctx context.Context, cfg keyring.Config, st keyring.Store, opts ...Option) (keyring.KEK, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	current, err := FromSpec(ctx, cfg.Backend, cfg, st, opts...)
	if err != nil {
		return nil, err
	}
	var previous []keyring.KEK
	for _, spec := range strings.Split(cfg.PreviousKEKs, ",") {
		if spec = strings.TrimSpace(spec); spec == "" {
			continue
		}
		k, err := FromSpec(ctx, spec, cfg, st, opts...)
		if err != nil {
			closeAll(append(previous, current))
			return nil, fmt.Errorf("KEYRING_PREVIOUS_KEKS: %w", err)
		}
		previous = append(previous, k)
	}
	return keyring.NewChain(current, previous...), nil
}

func closeAll(keks []keyring.KEK) {
	for _, k := range keks {
		if c, ok := k.(io.Closer); ok {
			_ = c.Close()
		}
	}
}

// FromSpec returns the KEK spec names, instrumented. A spec is a backend
// name, for the KEK the rest of cfg configures (as KEYRING_BACKEND), or
// "backend:key" naming another key of that backend:
//
//	local:/path/old.key        a local key file
//	vault:mount/key            a Vault transit key (VAULT_* server and token)
//	awskms:arn:aws:kms:…       an AWS KMS key id, ARN or alias
//	pkcs11:token/key or key    a key on a token of PKCS11_MODULE (PIN from PKCS11_PIN_FILE)
//
// A passphrase cannot be named in a spec (it is a secret); "local" alone is
// cfg's key file or passphrase.
func FromSpec(ctx context.Context, spec string, cfg keyring.Config, st keyring.Store, opts ...Option) (keyring.KEK, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	backend, arg, named := strings.Cut(strings.TrimSpace(spec), ":")
	if named && arg == "" {
		return nil, fmt.Errorf("keyring: KEK %q names no key after the colon", spec)
	}
	var kek keyring.KEK
	var err error
	switch backend {
	case "local":
		switch {
		case named:
			kek, err = local.NewFromFile(arg)
		case cfg.MasterKeyFile != "":
			kek, err = local.NewFromFile(cfg.MasterKeyFile)
		case cfg.Passphrase != "":
			var salt []byte
			if salt, err = keyring.PassphraseSalt(ctx, st); err == nil {
				kek, err = local.NewFromPassphrase(cfg.Passphrase, salt)
			}
		default:
			err = errors.New("keyring: local KEK needs KEYRING_MASTER_KEY_FILE, KEYRING_PASSPHRASE or local:/path")
		}
	case "vault":
		mount, key := cfg.TransitMount, cfg.TransitKey
		if named {
			var ok bool
			if mount, key, ok = strings.Cut(strings.TrimPrefix(arg, "/"), "/"); !ok || mount == "" || key == "" {
				return nil, fmt.Errorf("keyring: vault KEK %q: want vault:mount/key", spec)
			}
			key = strings.TrimPrefix(key, "keys/")
		}
		kek, err = hcvault.New(ctx, hcvault.Config{Mount: mount, Key: key})
	case "awskms":
		id := cfg.AWSKMSKeyID
		if named {
			id = arg
		}
		kek, err = awskms.New(ctx, awskms.Config{KeyID: id})
	case "pkcs11":
		pc := pkcs11.Config{Module: cfg.PKCS11Module, TokenLabel: cfg.PKCS11TokenLabel, PINFile: cfg.PKCS11PINFile, KeyLabel: cfg.PKCS11KeyLabel}
		if named {
			if token, key, ok := strings.Cut(arg, "/"); ok {
				pc.TokenLabel, pc.KeyLabel = token, key
			} else {
				pc.KeyLabel = arg
			}
		}
		kek, err = pkcs11.New(ctx, pc)
	default:
		return nil, fmt.Errorf("keyring: unknown KEK backend %q (want one of %s)", backend, strings.Join(Backends, ", "))
	}
	if err != nil {
		return nil, err
	}
	ins, err := keyring.Instrument(kek, o.reg)
	if err != nil {
		closeAll([]keyring.KEK{kek})
		return nil, err
	}
	return ins, nil
}
