package keyring_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"testing"
)

// The benchmarks compare the keyring's field encryption with plain
// crypto/cipher AES-256-GCM (random 96-bit nonce, same associated data) on
// the same value sizes. Goal: at most 1.5x the baseline at 64 bytes.

var benchSizes = []int{64, 4096}

func BenchmarkEncrypt(b *testing.B) {
	ctx := context.Background()
	kr, _, _ := openKeyring(b)
	for _, n := range benchSizes {
		pt := make([]byte, n)
		b.Run(fmt.Sprintf("keyring/%dB", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := kr.Encrypt(ctx, loc, pt); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("baseline/%dB", n), func(b *testing.B) {
			a := baselineAEAD(b)
			ad := []byte(loc.Table + "/" + loc.Column + "/" + loc.RowID)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				baselineSeal(b, a, pt, ad)
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	ctx := context.Background()
	kr, _, _ := openKeyring(b)
	for _, n := range benchSizes {
		pt := make([]byte, n)
		b.Run(fmt.Sprintf("keyring/%dB", n), func(b *testing.B) {
			ct, err := kr.Encrypt(ctx, loc, pt)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := kr.Decrypt(ctx, loc, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("baseline/%dB", n), func(b *testing.B) {
			a := baselineAEAD(b)
			ad := []byte(loc.Table + "/" + loc.Column + "/" + loc.RowID)
			ct := baselineSeal(b, a, pt, ad)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				ns := a.NonceSize()
				if _, err := a.Open(nil, ct[:ns], ct[ns:], ad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func baselineAEAD(b *testing.B) cipher.AEAD {
	key := make([]byte, 32)
	rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// baselineSeal is what a hand-rolled field encryption would do: a fresh
// random nonce, prepended to the sealed value.
func baselineSeal(b *testing.B, a cipher.AEAD, pt, ad []byte) []byte {
	out := make([]byte, a.NonceSize(), a.NonceSize()+len(pt)+a.Overhead())
	if _, err := rand.Read(out); err != nil {
		b.Fatal(err)
	}
	return a.Seal(out, out, pt, ad)
}
