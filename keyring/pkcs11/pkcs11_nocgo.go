//go:build !cgo

package pkcs11

import "context"

// KEK is the PKCS#11 KEK; without cgo none can be made (ErrNoCgo).
type KEK struct{}

// New returns ErrNoCgo: this build cannot load a PKCS#11 module.
func New(context.Context, Config) (*KEK, error) { return nil, ErrNoCgo }

// GenerateKey returns ErrNoCgo: this build cannot load a PKCS#11 module.
func GenerateKey(Config) (bool, error) { return false, ErrNoCgo }

// Encrypt is never reached: New makes no KEK without cgo.
func (*KEK) Encrypt(context.Context, []byte, []byte) ([]byte, error) { return nil, ErrNoCgo }

// Decrypt is never reached: New makes no KEK without cgo.
func (*KEK) Decrypt(context.Context, []byte, []byte) ([]byte, error) { return nil, ErrNoCgo }

// CheckHealth reports ErrNoCgo.
func (*KEK) CheckHealth(context.Context) error { return ErrNoCgo }

// Close does nothing.
func (*KEK) Close() error { return nil }

// KEKBackend names the backend.
func (*KEK) KEKBackend() string { return "pkcs11" }

// KEKKeyID is empty: there is no key.
func (*KEK) KEKKeyID() string { return "" }
