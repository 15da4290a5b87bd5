package awskms_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/awskms/localkms"
	"github.com/vectabase/vectabase/keyring/local"
)

// BenchmarkWrapUnwrap wraps and unwraps a keyset-sized value (600 bytes)
// with AWS KMS (local-kms over loopback HTTP) and, as the baseline measured
// in the same run, with a local key.
func BenchmarkWrapUnwrap(b *testing.B) {
	srv := localkms.Start(b)
	path := filepath.Join(b.TempDir(), "k")
	if err := local.GenerateKeyFile(path); err != nil {
		b.Fatal(err)
	}
	lk, err := local.NewFromFile(path)
	if err != nil {
		b.Fatal(err)
	}
	pt, ad := make([]byte, 600), []byte("vectabase/keyring/keyset/data")
	for _, c := range []struct {
		name string
		kek  keyring.KEK
	}{{"local", lk}, {"awskms", newKEK(b, srv.Client(), "alias/vectabase")}} {
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
