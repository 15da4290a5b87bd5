package keyring

import (
	"context"
	"crypto/rand"
	"fmt"
)

// Config selects and configures the KEK backend. It is filled from the
// environment by caarlos0/env in cmd/. MasterKeyFile is a path, not a
// secret, but Passphrase is: String redacts it, so a Config may be logged.
type Config struct {
	// Backend is "local" (key file or passphrase), "vault", "awskms" or
	// "pkcs11".
	Backend string `env:"KEYRING_BACKEND" envDefault:"local"`
	// MasterKeyFile holds 32 random bytes, base64 (local backend).
	MasterKeyFile string `env:"KEYRING_MASTER_KEY_FILE"`
	// Passphrase derives the local KEK with PBKDF2-HMAC-SHA256 instead of
	// a key file; its salt lives in the database (see PassphraseSalt).
	Passphrase string `env:"KEYRING_PASSPHRASE"`
	// TransitMount and TransitKey name the Vault transit key (vault backend).
	// The Vault server and token come from the standard VAULT_* variables.
	TransitMount string `env:"VAULT_TRANSIT_MOUNT" envDefault:"transit"`
	TransitKey   string `env:"VAULT_TRANSIT_KEY" envDefault:"vectabase"`
	// AWSKMSKeyID is the AWS KMS key (id, ARN or alias) of the awskms
	// backend; credentials, region and AWS_ENDPOINT_URL_KMS come from the
	// standard AWS configuration chain.
	AWSKMSKeyID string `env:"AWS_KMS_KEY_ID"`
	// PKCS11* name the HSM key of the pkcs11 backend. The PIN is read from
	// PKCS11PINFile, never from the environment itself.
	PKCS11Module     string `env:"PKCS11_MODULE"`
	PKCS11TokenLabel string `env:"PKCS11_TOKEN_LABEL"`
	PKCS11PINFile    string `env:"PKCS11_PIN_FILE"`
	PKCS11KeyLabel   string `env:"PKCS11_KEY_LABEL" envDefault:"vectabase-kek"`
	// PreviousKEKs lists KEKs that only unwrap, comma separated, each
	// "backend:key" (local:/path/old.key, awskms:arn:aws:kms:…,
	// pkcs11:token/key, vault:mount/key): keysets and backups wrapped
	// before a move between backends stay readable.
	PreviousKEKs string `env:"KEYRING_PREVIOUS_KEKS"`
}

// String describes c without its passphrase.
func (c Config) String() string {
	pass := ""
	if c.Passphrase != "" {
		pass = "[redacted]"
	}
	return fmt.Sprintf("keyring.Config{Backend:%q MasterKeyFile:%q Passphrase:%q TransitMount:%q TransitKey:%q AWSKMSKeyID:%q PKCS11Module:%q PKCS11TokenLabel:%q PKCS11PINFile:%q PKCS11KeyLabel:%q PreviousKEKs:%q}",
		c.Backend, c.MasterKeyFile, pass, c.TransitMount, c.TransitKey, c.AWSKMSKeyID, c.PKCS11Module, c.PKCS11TokenLabel, c.PKCS11PINFile, c.PKCS11KeyLabel, c.PreviousKEKs)
}

// GoString redacts like String, so %#v does not print the passphrase.
func (c Config) GoString() string { return c.String() }

// Validate checks that the fields the chosen backend needs are set.
func (c Config) Validate() error {
	switch c.Backend {
	case "local":
		if (c.MasterKeyFile == "") == (c.Passphrase == "") {
			return fmt.Errorf("keyring: backend local needs exactly one of KEYRING_MASTER_KEY_FILE and KEYRING_PASSPHRASE")
		}
	case "vault":
		if c.TransitMount == "" || c.TransitKey == "" {
			return fmt.Errorf("keyring: backend vault needs VAULT_TRANSIT_MOUNT and VAULT_TRANSIT_KEY")
		}
	case "awskms":
		if c.AWSKMSKeyID == "" {
			return fmt.Errorf("keyring: backend awskms needs AWS_KMS_KEY_ID")
		}
	case "pkcs11":
		if c.PKCS11Module == "" || c.PKCS11TokenLabel == "" || c.PKCS11PINFile == "" || c.PKCS11KeyLabel == "" {
			return fmt.Errorf("keyring: backend pkcs11 needs PKCS11_MODULE, PKCS11_TOKEN_LABEL, PKCS11_PIN_FILE and PKCS11_KEY_LABEL")
		}
	default:
		return fmt.Errorf("keyring: unknown KEYRING_BACKEND %q (want local, vault, awskms or pkcs11)", c.Backend)
	}
	return nil
}

// MetaPassphraseSalt is the keyring_meta name of the passphrase salt.
const MetaPassphraseSalt = "passphrase_salt"

// PassphraseSalt returns the salt for deriving the local KEK from a
// passphrase, creating a random 32-byte salt on first use. Instances
// starting at once on an empty database all get the same salt.
func PassphraseSalt(ctx context.Context, st Store) ([]byte, error) {
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("keyring: passphrase salt: %w", err)
	}
	got, err := st.GetOrCreateMeta(ctx, MetaPassphraseSalt, salt)
	if err != nil {
		return nil, fmt.Errorf("keyring: passphrase salt: %w", err)
	}
	if len(got) < 16 {
		return nil, fmt.Errorf("keyring: passphrase salt in the database is %d bytes, want at least 16", len(got))
	}
	return got, nil
}
