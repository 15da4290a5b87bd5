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
	"time"

	"github.com/vectabase/vectabase/keyring"
)

// Backend describes a KEK backend for RunBackend. New is required; each
// optional hook left nil makes its case skip, saying the backend has no such
// state (a key file cannot be disabled or go down).
type Backend struct {
	// New returns a KEK over the backend's key, as a restarted server
	// would get it.
	New func() keyring.KEK
	// Other returns a KEK over a different key of the same backend: it
	// must refuse New's ciphertexts as a wrong key (AuthFailure), and
	// keyring.RotateKEK from New to Other must move the keysets to it.
	Other func() keyring.KEK
	// Disable disables New's key in the backend and returns the function
	// that enables it again. While disabled, Encrypt and Decrypt fail, and
	// not as a wrong key (the KEK is unusable, not wrong).
	Disable func(t *testing.T) (enable func())
	// Down returns a KEK whose backend is unreachable (stopped, closed).
	// Its calls fail within seconds, not as a wrong key.
	Down func(t *testing.T) keyring.KEK
	// RotateKey rotates New's key in place (a new key version); earlier
	// ciphertexts keep decrypting.
	RotateKey func(t *testing.T)
}

// Run runs the KEK suite against the KEKs newKEK returns (RunBackend with
// no optional hooks).
func Run(t *testing.T, newKEK func() keyring.KEK) {
	t.Helper()
	RunBackend(t, Backend{New: newKEK})
}

// RunBackend runs the whole KEK suite: the cases of Run, and wrong key, key
// disabled, backend down and rotate through b's hooks.
func RunBackend(t *testing.T, b Backend) {
	t.Helper()
	ctx := context.Background()
	newKEK := b.New

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

	t.Run("WrongKey", func(t *testing.T) {
		if b.Other == nil {
			t.Skip("the backend has no second key to try")
		}
		ct, err := newKEK().Encrypt(ctx, []byte("keyset bytes"), []byte("ad"))
		if err != nil {
			t.Fatalf("Encrypt err = %v, want nil", err)
		}
		_, err = b.Other().Decrypt(ctx, ct, []byte("ad"))
		var ae keyring.AuthError
		if err == nil || !errors.As(err, &ae) || !ae.AuthFailure() {
			t.Fatalf("Decrypt with another key err = %v, want an AuthFailure error", err)
		}
		st := NewMemStore()
		if _, err := keyring.Open(ctx, st, newKEK()); err != nil {
			t.Fatalf("keyring.Open err = %v, want nil", err)
		}
		if _, err := keyring.Open(ctx, st, b.Other()); !errors.Is(err, keyring.ErrUnwrap) {
			t.Fatalf("keyring.Open with another key err = %v, want ErrUnwrap", err)
		}
	})

	t.Run("KeyDisabled", func(t *testing.T) {
		if b.Disable == nil {
			t.Skip("the backend's key cannot be disabled")
		}
		kek := newKEK()
		ct, err := kek.Encrypt(ctx, []byte("keyset bytes"), []byte("ad"))
		if err != nil {
			t.Fatalf("Encrypt err = %v, want nil", err)
		}
		enable := b.Disable(t)
		_, encErr := kek.Encrypt(ctx, []byte("keyset bytes"), []byte("ad"))
		_, decErr := kek.Decrypt(ctx, ct, []byte("ad"))
		enable()
		for what, err := range map[string]error{"Encrypt": encErr, "Decrypt": decErr} {
			var ae keyring.AuthError
			if err == nil {
				t.Errorf("%s with the key disabled err = nil, want an error", what)
			} else if errors.As(err, &ae) && ae.AuthFailure() {
				t.Errorf("%s with the key disabled err = %v, an AuthFailure; want an unusable-KEK error", what, err)
			}
		}
		if got, err := kek.Decrypt(ctx, ct, []byte("ad")); err != nil || string(got) != "keyset bytes" {
			t.Fatalf("Decrypt after enabling the key again = %q, %v, want %q, nil", got, err, "keyset bytes")
		}
	})

	t.Run("BackendDown", func(t *testing.T) {
		if b.Down == nil {
			t.Skip("the backend has no remote part to lose")
		}
		ct, err := newKEK().Encrypt(ctx, []byte("keyset bytes"), []byte("ad"))
		if err != nil {
			t.Fatalf("Encrypt err = %v, want nil", err)
		}
		down := b.Down(t)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, encErr := down.Encrypt(cctx, []byte("keyset bytes"), []byte("ad"))
		_, decErr := down.Decrypt(cctx, ct, []byte("ad"))
		for what, err := range map[string]error{"Encrypt": encErr, "Decrypt": decErr} {
			var ae keyring.AuthError
			if err == nil {
				t.Errorf("%s with the backend down err = nil, want an error", what)
			} else if errors.As(err, &ae) && ae.AuthFailure() {
				t.Errorf("%s with the backend down err = %v, an AuthFailure; want an unreachable-KEK error", what, err)
			}
		}
		// A keyring whose KEK went down keeps serving from memory; only
		// its KEK check fails.
		st := NewMemStore()
		kr, err := keyring.Open(ctx, st, newKEK())
		if err != nil {
			t.Fatalf("keyring.Open err = %v, want nil", err)
		}
		if err := kr.RotateKEK(ctx, down); err == nil {
			t.Error("RotateKEK to a KEK that is down err = nil, want an error")
		}
		if _, err := keyring.Open(ctx, st, newKEK()); err != nil {
			t.Fatalf("keyring.Open after a failed RotateKEK err = %v, want nil", err)
		}
	})

	t.Run("Rotate", func(t *testing.T) {
		kek := newKEK()
		old, err := kek.Encrypt(ctx, []byte("before"), []byte("ad"))
		if err != nil {
			t.Fatalf("Encrypt err = %v, want nil", err)
		}
		if b.RotateKey != nil {
			b.RotateKey(t)
			if got, err := newKEK().Decrypt(ctx, old, []byte("ad")); err != nil || string(got) != "before" {
				t.Fatalf("Decrypt of a pre-rotation ciphertext = %q, %v, want %q, nil", got, err, "before")
			}
		}
		if b.Other == nil {
			return
		}
		st := NewMemStore()
		kr, err := keyring.Open(ctx, st, newKEK())
		if err != nil {
			t.Fatalf("keyring.Open err = %v, want nil", err)
		}
		loc := keyring.Location{Table: "t", Column: "c", RowID: "1"}
		ct, err := kr.Encrypt(ctx, loc, []byte("value"))
		if err != nil {
			t.Fatal(err)
		}
		other := b.Other()
		if err := kr.RotateKEK(ctx, other); err != nil {
			t.Fatalf("RotateKEK to another key err = %v, want nil", err)
		}
		kr2, err := keyring.Open(ctx, st, b.Other())
		if err != nil {
			t.Fatalf("keyring.Open with the new key err = %v, want nil", err)
		}
		if got, err := kr2.Decrypt(ctx, loc, ct); err != nil || string(got) != "value" {
			t.Fatalf("Decrypt after RotateKEK = %q, %v, want %q, nil", got, err, "value")
		}
		if _, err := keyring.Open(ctx, st, newKEK()); !errors.Is(err, keyring.ErrUnwrap) {
			t.Fatalf("keyring.Open with the old key after RotateKEK err = %v, want ErrUnwrap", err)
		}
		kss, err := st.Keysets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, ks := range kss {
			d, _ := other.(keyring.KEKDescriber)
			if d != nil && (ks.KEKBackend != d.KEKBackend() || ks.KEKKeyID != d.KEKKeyID()) {
				t.Errorf("keyset %s wrapped by %s %s, want %s %s", ks.Name, ks.KEKBackend, ks.KEKKeyID, d.KEKBackend(), d.KEKKeyID())
			}
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
