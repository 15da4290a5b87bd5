// Package kektest is the one test suite every keyring.KEK backend runs:
// kektest.Run(t, func() keyring.KEK { ... }). Each call of the factory must
// return a KEK over the same key, as a restarted server would get.
package kektest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vectabase/vectabase/keyring"
)

// Run runs the KEK suite against the KEKs newKEK returns.
func Run(t *testing.T, newKEK func() keyring.KEK) {
	t.Helper()
	ctx := context.Background()

	t.Run("RoundTrip", func(t *testing.T) {
		kek := newKEK()
		for _, size := range []int{0, 1, 16, 100, 4096, 64 << 10} {
			pt := pattern(size)
			ad := []byte(fmt.Sprintf("ad-%d", size))
			ct, err := kek.Encrypt(ctx, pt, ad)
			if err != nil {
				t.Fatalf("Encrypt(%d bytes, %q) err = %v, want nil", size, ad, err)
			}
			if size >= 16 && bytes.Contains(ct, pt) {
				t.Errorf("Encrypt(%d bytes) ciphertext contains the plaintext", size)
			}
			got, err := kek.Decrypt(ctx, ct, ad)
			if err != nil {
				t.Fatalf("Decrypt(Encrypt(%d bytes), %q) err = %v, want nil", size, ad, err)
			}
			if !bytes.Equal(got, pt) {
				t.Errorf("Decrypt(Encrypt(%d bytes)) = %d bytes, want the plaintext back", size, len(got))
			}
		}
	})

	t.Run("NotDeterministic", func(t *testing.T) {
		kek := newKEK()
		a, err1 := kek.Encrypt(ctx, []byte("same"), nil)
		b, err2 := kek.Encrypt(ctx, []byte("same"), nil)
		if err1 != nil || err2 != nil {
			t.Fatalf("Encrypt err = %v, %v, want nil", err1, err2)
		}
		if bytes.Equal(a, b) {
			t.Error("two Encrypt calls of the same plaintext gave the same ciphertext")
		}
	})

	t.Run("AnotherInstanceDecrypts", func(t *testing.T) {
		ct, err := newKEK().Encrypt(ctx, []byte("keyset bytes"), []byte("ad"))
		if err != nil {
			t.Fatalf("Encrypt err = %v, want nil", err)
		}
		got, err := newKEK().Decrypt(ctx, ct, []byte("ad"))
		if err != nil || string(got) != "keyset bytes" {
			t.Fatalf("Decrypt by a second instance = %q, %v, want %q, nil", got, err, "keyset bytes")
		}
	})

	t.Run("WrongAssociatedDataFails", func(t *testing.T) {
		kek := newKEK()
		ct, err := kek.Encrypt(ctx, []byte("keyset bytes"), []byte("keyset data"))
		if err != nil {
			t.Fatalf("Encrypt err = %v, want nil", err)
		}
		for _, ad := range [][]byte{[]byte("keyset index"), nil, []byte("keyset data ")} {
			if _, err := kek.Decrypt(ctx, ct, ad); err == nil {
				t.Errorf("Decrypt(ct, %q) err = nil, want an error (made with %q)", ad, "keyset data")
			}
		}
	})

	t.Run("TamperedCiphertextFails", func(t *testing.T) {
		kek := newKEK()
		pt := []byte("secret keyset material 0123456789")
		ct, err := kek.Encrypt(ctx, pt, []byte("ad"))
		if err != nil {
			t.Fatalf("Encrypt err = %v, want nil", err)
		}
		for i := range ct {
			bad := bytes.Clone(ct)
			bad[i] ^= 0x01
			got, err := kek.Decrypt(ctx, bad, []byte("ad"))
			if err == nil && bytes.Equal(got, pt) {
				// Some encodings (e.g. Vault's base64 text) can absorb a
				// flipped bit without changing the decoded bytes; what must
				// never happen is a different plaintext.
				continue
			}
			if err == nil {
				t.Fatalf("Decrypt(ct with byte %d flipped) = %d bytes, nil; want an error", i, len(got))
			}
			if strings.Contains(err.Error(), string(pt)) {
				t.Fatalf("Decrypt error %q contains the plaintext", err)
			}
		}
		for _, bad := range [][]byte{nil, {}, ct[:len(ct)/2], ct[:1]} {
			if _, err := kek.Decrypt(ctx, bad, []byte("ad")); err == nil {
				t.Errorf("Decrypt(%d-byte truncation) err = nil, want an error", len(bad))
			}
		}
	})

	t.Run("Keyring", func(t *testing.T) {
		st := NewMemStore()
		kr, err := keyring.Open(ctx, st, newKEK())
		if err != nil {
			t.Fatalf("keyring.Open on an empty store err = %v, want nil", err)
		}
		loc := keyring.Location{Table: "stores", Column: "stripe_account_id", RowID: "42"}
		ct, err := kr.Encrypt(ctx, loc, []byte("acct_123"))
		if err != nil {
			t.Fatalf("Encrypt err = %v, want nil", err)
		}
		if _, err := kr.RotateDEK(ctx); err != nil {
			t.Fatalf("RotateDEK err = %v, want nil", err)
		}
		// A restarted server: a fresh KEK over the same key, the same store.
		kr2, err := keyring.Open(ctx, st, newKEK())
		if err != nil {
			t.Fatalf("keyring.Open again err = %v, want nil", err)
		}
		got, err := kr2.Decrypt(ctx, loc, ct)
		if err != nil || string(got) != "acct_123" {
			t.Fatalf("Decrypt after reopen = %q, %v, want %q, nil", got, err, "acct_123")
		}
		if err := kr2.RotateKEK(ctx, newKEK()); err != nil {
			t.Fatalf("RotateKEK(same key) err = %v, want nil", err)
		}
		kr3, err := keyring.Open(ctx, st, newKEK())
		if err != nil {
			t.Fatalf("keyring.Open after RotateKEK err = %v, want nil", err)
		}
		if got, err := kr3.Decrypt(ctx, loc, ct); err != nil || string(got) != "acct_123" {
			t.Fatalf("Decrypt after RotateKEK = %q, %v, want %q, nil", got, err, "acct_123")
		}
		st.FailUpdate = errors.New("store down")
		if err := kr3.RotateKEK(ctx, newKEK()); err == nil {
			t.Fatal("RotateKEK with a failing store err = nil, want an error")
		}
		st.FailUpdate = nil
		if _, err := keyring.Open(ctx, st, newKEK()); err != nil {
			t.Fatalf("keyring.Open after a failed RotateKEK err = %v, want nil", err)
		}
	})
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}
