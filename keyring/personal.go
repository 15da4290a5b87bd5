package keyring

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Personal keys: one AES-256-GCM keyset per user, under which the user's
// personal values get an inner layer before the keyring's own encryption.
// The serialised keyset is never stored as it is: the caller encrypts it
// with Keyring.Encrypt (a sensitive column, user_keys.keyset), so the KEK
// and DEK rotation protect it like any other value. Destroying that one
// row shreds every value sealed under it.

// personalMagic starts every inner ciphertext, so a reader tells a value
// sealed under a personal key from one encrypted by the keyring alone
// (rows imported or written before personal keys existed).
var personalMagic = []byte("vbp1")

// ErrPersonalKeyGone is returned when a value sealed under a personal key
// is opened after that key was destroyed (the account was deleted).
var ErrPersonalKeyGone = errors.New("keyring: the personal key that sealed this value was destroyed")

// NewPersonalKeyset returns a fresh personal keyset, serialised. The bytes
// are key material: encrypt them with Keyring.Encrypt before storing.
func NewPersonalKeyset() ([]byte, error) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("keyring: new personal keyset: %w", err)
	}
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewBinaryWriter(&buf)); err != nil {
		return nil, fmt.Errorf("keyring: serialise personal keyset: %w", err)
	}
	return buf.Bytes(), nil
}

// PersonalAEAD is the AEAD of a serialised personal keyset.
type PersonalAEAD struct{ a tink.AEAD }

// OpenPersonalKeyset parses a keyset made by NewPersonalKeyset.
func OpenPersonalKeyset(serialised []byte) (*PersonalAEAD, error) {
	h, err := insecurecleartextkeyset.Read(keyset.NewBinaryReader(bytes.NewReader(serialised)))
	if err != nil {
		return nil, fmt.Errorf("keyring: personal keyset is corrupt: %w", err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("keyring: personal keyset: %w", err)
	}
	return &PersonalAEAD{a: a}, nil
}

// Seal encrypts plaintext bound to loc; the result starts with "vbp1".
func (p *PersonalAEAD) Seal(loc Location, plaintext []byte) ([]byte, error) {
	aad := getAAD(loc)
	ct, err := p.a.Encrypt(plaintext, *aad)
	putAAD(aad)
	if err != nil {
		return nil, fmt.Errorf("keyring: seal %s: %w", loc, err)
	}
	return append(append([]byte{}, personalMagic...), ct...), nil
}

// Open decrypts what Seal made for the same loc (ErrDecrypt otherwise).
func (p *PersonalAEAD) Open(loc Location, sealed []byte) ([]byte, error) {
	if !IsPersonallySealed(sealed) {
		return nil, fmt.Errorf("keyring: open %s: not sealed under a personal key: %w", loc, ErrDecrypt)
	}
	aad := getAAD(loc)
	pt, err := p.a.Decrypt(sealed[len(personalMagic):], *aad)
	putAAD(aad)
	if err != nil {
		return nil, fmt.Errorf("keyring: open %s: %w", loc, ErrDecrypt)
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

// IsPersonallySealed reports whether b (a keyring plaintext) is the inner
// layer of a value sealed under a personal key.
func IsPersonallySealed(b []byte) bool { return bytes.HasPrefix(b, personalMagic) }
