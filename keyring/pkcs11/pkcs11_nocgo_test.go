//go:build !cgo

package pkcs11_test

import (
	"context"
	"errors"
	"testing"

	"github.com/vectabase/vectabase/keyring/pkcs11"
)

// A static build (CGO_ENABLED=0) has no PKCS#11 backend and says so,
// naming what to do, instead of failing to build.
func TestWithoutCgoThePKCS11BackendSaysWhy(t *testing.T) {
	cfg := pkcs11.Config{Module: "/usr/lib/softhsm/libsofthsm2.so", TokenLabel: "t", PIN: "1234", KeyLabel: "k"}
	if _, err := pkcs11.New(context.Background(), cfg); !errors.Is(err, pkcs11.ErrNoCgo) {
		t.Fatalf("New = %v, want ErrNoCgo", err)
	}
	if _, err := pkcs11.GenerateKey(cfg); !errors.Is(err, pkcs11.ErrNoCgo) {
		t.Fatalf("GenerateKey = %v, want ErrNoCgo", err)
	}
}
