package awskms_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/vectabase/vectabase/keyring/awskms/localkms"
)

// FuzzDecrypt feeds any bytes to Decrypt, seeded with real wraps: it never
// panics, and it never returns a plaintext other than the one wrapped.
func FuzzDecrypt(f *testing.F) {
	srv := localkms.Start(f)
	k := newKEK(f, srv.Client(), "alias/vectabase")
	ctx := context.Background()
	want := []byte("keyset material")
	for _, ad := range []string{"vectabase/keyring/keyset/data", ""} {
		ct, err := k.Encrypt(ctx, want, []byte(ad))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ct, ad)
	}
	f.Add([]byte{1, 0, 0}, "x")
	f.Add([]byte{1, 0xff, 0xff, 0}, "x")
	f.Fuzz(func(t *testing.T, ct []byte, ad string) {
		pt, err := k.Decrypt(ctx, ct, []byte(ad))
		if err == nil && !bytes.Equal(pt, want) {
			t.Fatalf("Decrypt(%x) = %q, nil: a plaintext that was never wrapped", ct, pt)
		}
	})
}
