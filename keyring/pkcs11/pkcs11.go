// Package pkcs11 is the keyring's KEK inside a hardware security module: an
// AES-256 key that never leaves the token wraps and unwraps the serialized
// keysets with AES-GCM computed by the token (CKM_AES_GCM, the associated
// data as GCM's additional authenticated data). The module is any PKCS#11
// library (an HSM vendor's, a cloud HSM client, SoftHSM2 in tests); it is
// loaded with cgo.
//
// The PIN is read from a file (PKCS11_PIN_FILE) and kept only for the
// login; it never appears in errors, logs or String.
package pkcs11

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/vectabase/vectabase/keyring"
)

var _ keyring.KEK = (*KEK)(nil)
var _ keyring.KEKDescriber = (*KEK)(nil)

// ErrNoCgo: PKCS#11 modules are C libraries loaded with cgo, so a build
// without cgo (CGO_ENABLED=0, as the static release binary and the
// container image are built) has no PKCS#11 backend. New and GenerateKey
// return it there.
var ErrNoCgo = errors.New("pkcs11: this vectabase was built without cgo (CGO_ENABLED=0), and PKCS#11 modules are loaded with cgo: use a build with CGO_ENABLED=1 for KEYRING_BACKEND=pkcs11")

// Config names the module, the token and the key.
type Config struct {
	// Module is the path of the PKCS#11 library (PKCS11_MODULE).
	Module string
	// TokenLabel is the token's label (PKCS11_TOKEN_LABEL).
	TokenLabel string
	// PIN is the user PIN. PINFile, when PIN is empty, is a file holding
	// it (PKCS11_PIN_FILE; one line, surrounding whitespace ignored).
	PIN     string
	PINFile string
	// KeyLabel is the AES key's CKA_LABEL (PKCS11_KEY_LABEL).
	KeyLabel string
}

// String describes c without its PIN.
func (c Config) String() string {
	return fmt.Sprintf("pkcs11.Config{Module:%q TokenLabel:%q PINFile:%q KeyLabel:%q}", c.Module, c.TokenLabel, c.PINFile, c.KeyLabel)
}

// GoString redacts like String.
func (c Config) GoString() string { return c.String() }

// authError is a decrypt the token refused for the ciphertext itself.
type authError struct{ msg string }

func (e authError) Error() string   { return e.msg }
func (authError) AuthFailure() bool { return true }

func (c Config) pin() (string, error) {
	if c.PIN != "" {
		return c.PIN, nil
	}
	if c.PINFile == "" {
		return "", errors.New("pkcs11: no PIN (set PKCS11_PIN_FILE)")
	}
	b, err := os.ReadFile(c.PINFile)
	if err != nil {
		return "", fmt.Errorf("pkcs11: read PIN file %s: %w", c.PINFile, errors.Unwrap(err))
	}
	pin := strings.TrimSpace(string(b))
	if pin == "" {
		return "", fmt.Errorf("pkcs11: PIN file %s is empty", c.PINFile)
	}
	return pin, nil
}
