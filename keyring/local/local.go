// Package local is the keyring's local KEK: an AES-256-GCM key read from a
// key file (32 random bytes, base64) or derived from a passphrase with
// PBKDF2-HMAC-SHA256.
package local

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/vectabase/vectabase/keyring"
)

var _ keyring.KEK = (*KEK)(nil)
var _ keyring.KEKDescriber = (*KEK)(nil)

// KeySize is the size of a local KEK in bytes (AES-256).
const KeySize = 32

// PBKDF2Iterations is the PBKDF2-HMAC-SHA256 work factor for passphrases,
// OWASP's 2023 advice (the seed project's 100,000 is below it).
const PBKDF2Iterations = 600_000

// MinSaltSize is the smallest passphrase salt accepted.
const MinSaltSize = 16

// KEK wraps keysets with AES-256-GCM under a local key. Its ciphertext is
// a 12-byte random nonce followed by the sealed data.
type KEK struct {
	aead   cipher.AEAD
	source string // "file" or "passphrase"
	keyID  string
}

// errAuth is returned by Decrypt when the ciphertext does not authenticate;
// the keyring reports it as "wrong master key or passphrase".
type errAuth struct{}

func (errAuth) Error() string     { return "local KEK: ciphertext does not authenticate" }
func (errAuth) AuthFailure() bool { return true }

// NewFromFile reads a key file: 32 random bytes, base64 (standard or URL
// encoding, surrounding whitespace ignored). Errors name the path and the
// cause, never the file's content.
func NewFromFile(path string) (*KEK, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("local KEK: master key file %s does not exist (create one with `vectabase keys init`)", path)
		}
		return nil, fmt.Errorf("local KEK: read master key file %s: %w", path, errors.Unwrap(err))
	}
	text := strings.TrimSpace(string(raw))
	var key []byte
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if key, err = enc.DecodeString(text); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("local KEK: master key file %s is not base64", path)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("local KEK: master key file %s holds %d bytes, want %d", path, len(key), KeySize)
	}
	return newKEK(key, "file")
}

// NewFromPassphrase derives the key from pass and salt with
// PBKDF2-HMAC-SHA256 at PBKDF2Iterations (about half a second). The salt
// lives in the database: see keyring.PassphraseSalt.
func NewFromPassphrase(pass string, salt []byte) (*KEK, error) {
	if pass == "" {
		return nil, errors.New("local KEK: empty passphrase")
	}
	if len(salt) < MinSaltSize {
		return nil, fmt.Errorf("local KEK: passphrase salt is %d bytes, want at least %d", len(salt), MinSaltSize)
	}
	key, err := pbkdf2.Key(sha256.New, pass, salt, PBKDF2Iterations, KeySize)
	if err != nil {
		return nil, fmt.Errorf("local KEK: derive key: %w", err)
	}
	return newKEK(key, "passphrase")
}

// GenerateKeyFile writes a new random key to path with mode 0600. It
// refuses to overwrite an existing file, which would orphan the keysets it
// wraps.
func GenerateKeyFile(path string) error {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("local KEK: generate key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("local KEK: master key file %s already exists; not overwriting it", path)
		}
		return fmt.Errorf("local KEK: create master key file: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("local KEK: write master key file %s: %w", path, errors.Unwrap(err))
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("local KEK: write master key file %s: %w", path, err)
	}
	return nil
}

func newKEK(key []byte, source string) (*KEK, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("local KEK: %w", err)
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("local KEK: %w", err)
	}
	// A check value: a one-way function of the key that tells keys apart
	// in status output without revealing anything about them.
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("vectabase/keyring/local/key-id"))
	id := hex.EncodeToString(mac.Sum(nil)[:8])
	return &KEK{aead: a, source: source, keyID: source + ":" + id}, nil
}

// Encrypt seals plaintext under the local key with associatedData.
func (k *KEK) Encrypt(_ context.Context, plaintext, associatedData []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("local KEK: nonce: %w", err)
	}
	return k.aead.Seal(nonce, nonce, plaintext, associatedData), nil
}

// Decrypt opens a ciphertext made by Encrypt. A wrong key, altered data or
// altered associated data gives an error whose AuthFailure method is true.
func (k *KEK) Decrypt(_ context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(ciphertext) < n+k.aead.Overhead() {
		return nil, errAuth{}
	}
	pt, err := k.aead.Open(nil, ciphertext[:n], ciphertext[n:], associatedData)
	if err != nil {
		return nil, errAuth{}
	}
	return pt, nil
}

// KEKBackend returns "local".
func (k *KEK) KEKBackend() string { return "local" }

// KEKKeyID returns "file:" or "passphrase:" and a 16-hex-digit check value
// of the key.
func (k *KEK) KEKKeyID() string { return k.keyID }

// String names the KEK without key material.
func (k *KEK) String() string { return "local KEK " + k.keyID }

// GoString is String, so %#v shows no internals either.
func (k *KEK) GoString() string { return k.String() }
