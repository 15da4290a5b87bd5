package keyring

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// KEKRotator is implemented by KEKs whose backend can make a new version of
// the key in place (Vault transit). The keyring then re-wraps its keysets
// with the same KEK to move them to the new version.
type KEKRotator interface {
	RotateKey(ctx context.Context) error
}

// HealthChecker is implemented by KEKs that can tell whether their backend
// and key are usable without wrapping anything (a decrypt-only previous KEK
// may not be allowed to encrypt). /readyz calls it.
type HealthChecker interface {
	CheckHealth(ctx context.Context) error
}

// CheckHealth reports whether kek is usable: its own CheckHealth when it
// has one, otherwise a wrap and unwrap of a probe value.
func CheckHealth(ctx context.Context, kek KEK) error {
	if h, ok := kek.(HealthChecker); ok {
		return h.CheckHealth(ctx)
	}
	ct, err := kek.Encrypt(ctx, []byte("ping"), pingAAD)
	if err == nil {
		_, err = kek.Decrypt(ctx, ct, pingAAD)
	}
	return err
}

// Chain is the KEK in use followed by previous KEKs that only decrypt
// (KEYRING_PREVIOUS_KEKS): it wraps with the first, and unwraps with the
// first that authenticates the ciphertext, so keysets and backups wrapped
// before a move between backends stay readable. It describes itself as the
// KEK in use.
type Chain struct {
	Current  KEK
	Previous []KEK
}

var _ KEK = (*Chain)(nil)
var _ KEKDescriber = (*Chain)(nil)

// NewChain returns current alone when there are no previous KEKs.
func NewChain(current KEK, previous ...KEK) KEK {
	if len(previous) == 0 {
		return current
	}
	return &Chain{Current: current, Previous: previous}
}

// Encrypt wraps with the current KEK.
func (c *Chain) Encrypt(ctx context.Context, pt, ad []byte) ([]byte, error) {
	return c.Current.Encrypt(ctx, pt, ad)
}

// chainAuthError is every KEK of a chain refusing a ciphertext as not
// theirs.
type chainAuthError struct{ n int }

func (e chainAuthError) Error() string {
	return fmt.Sprintf("none of the %d KEKs (current and KEYRING_PREVIOUS_KEKS) authenticates the ciphertext", e.n)
}
func (chainAuthError) AuthFailure() bool { return true }

// Decrypt tries the current KEK, then each previous one. When all refuse
// the ciphertext as not theirs, the error is an AuthFailure; when one could
// not be asked (backend down), the error names that.
func (c *Chain) Decrypt(ctx context.Context, ct, ad []byte) ([]byte, error) {
	var unusable []error
	for _, k := range c.All() {
		pt, err := k.Decrypt(ctx, ct, ad)
		if err == nil {
			return pt, nil
		}
		if !isAuthFailure(err) {
			unusable = append(unusable, err)
		}
	}
	if len(unusable) > 0 {
		return nil, fmt.Errorf("no KEK authenticates the ciphertext, and some could not be asked: %w", errors.Join(unusable...))
	}
	return nil, chainAuthError{n: 1 + len(c.Previous)}
}

// All returns the current KEK and then the previous ones.
func (c *Chain) All() []KEK { return append([]KEK{c.Current}, c.Previous...) }

// KEKBackend is the current KEK's.
func (c *Chain) KEKBackend() string { b, _ := describe(c.Current); return b }

// KEKKeyID is the current KEK's.
func (c *Chain) KEKKeyID() string { _, id := describe(c.Current); return id }

// RotateKey rotates the current KEK in place when its backend can.
func (c *Chain) RotateKey(ctx context.Context) error {
	r, ok := RotatorOf(c.Current)
	if !ok {
		return errors.New("keyring: the current KEK cannot rotate in place")
	}
	return r.RotateKey(ctx)
}

// Close closes every KEK of the chain that holds resources.
func (c *Chain) Close() error {
	var errs []error
	for _, k := range c.All() {
		if cl, ok := k.(io.Closer); ok {
			errs = append(errs, cl.Close())
		}
	}
	return errors.Join(errs...)
}

// KEKsOf lists the KEKs of a chain, current first, or kek itself.
func KEKsOf(kek KEK) []KEK {
	switch k := kek.(type) {
	case *Chain:
		var out []KEK
		for _, c := range k.All() {
			out = append(out, KEKsOf(c)...)
		}
		return out
	}
	return []KEK{kek}
}

// Describe names kek's backend and key id ("" when it cannot say).
func Describe(kek KEK) (backend, keyID string) { return describe(kek) }

// RotatorOf returns what rotates kek's key in place — kek itself, the KEK
// inside an Instrumented, or a chain's current KEK — and false when its
// backend cannot (a local key is replaced, not rotated).
func RotatorOf(kek KEK) (KEKRotator, bool) {
	switch k := kek.(type) {
	case *Chain:
		return RotatorOf(k.Current)
	case *Instrumented:
		if k.CanRotateKey() {
			return k, true
		}
		return nil, false
	}
	r, ok := kek.(KEKRotator)
	return r, ok
}
