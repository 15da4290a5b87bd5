//go:build cgo

package pkcs11_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/keyring/pkcs11"
)

// BenchmarkWrapUnwrap wraps and unwraps a keyset-sized value (600 bytes)
// with AES-GCM inside a SoftHSM2 token and, as the baseline measured in the
// same run, with a local key.
func BenchmarkWrapUnwrap(b *testing.B) {
	if softhsm.skip != "" {
		b.Skip(softhsm.skip)
	}
	path := filepath.Join(b.TempDir(), "k")
	if err := local.GenerateKeyFile(path); err != nil {
		b.Fatal(err)
	}
	lk, err := local.NewFromFile(path)
	if err != nil {
		b.Fatal(err)
	}
	hk, err := pkcs11.New(context.Background(), cfg(tokenLabel, "kek"))
	if err != nil {
		b.Fatal(err)
	}
	defer hk.Close()
	pt, ad := make([]byte, 600), []byte("vectabase/keyring/keyset/data")
	for _, c := range []struct {
		name string
		kek  keyring.KEK
	}{{"local", lk}, {"pkcs11", hk}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				ct, err := c.kek.Encrypt(ctx, pt, ad)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.kek.Decrypt(ctx, ct, ad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
