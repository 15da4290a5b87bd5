package keyring

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

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

// Personal key cache. Opening a personal value needs the user's keyset:
// one row read, one keyring decryption and a keyset parse. The keyring
// keeps parsed keysets for a short while so a burst of reads of one user's
// values (a page of licenses, secret reads) pays that once. The cache is
// bounded and its entries expire: a key destroyed by another instance (an
// account deleted there) stays usable here for at most the TTL, after which
// the next load finds the user_keys row gone. The instance that deletes an
// account forgets the key at once (ForgetPersonal), and Reload (a restore,
// a rotation picked up) forgets every key.

// Defaults of the personal key cache (WithPersonalKeyCache).
const (
	DefaultPersonalKeyTTL     = 5 * time.Second
	DefaultPersonalKeyEntries = 4096
)

type personalEntry struct {
	p       *PersonalAEAD
	expires time.Time
}

type personalCache struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	entries map[string]personalEntry
	now     func() time.Time
}

func newPersonalCache(ttl time.Duration, max int) *personalCache {
	return &personalCache{ttl: ttl, max: max, entries: map[string]personalEntry{}, now: time.Now}
}

func (c *personalCache) get(userID string) *PersonalAEAD {
	if c.ttl <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[userID]
	if !ok {
		return nil
	}
	if !c.now().Before(e.expires) {
		delete(c.entries, userID)
		return nil
	}
	return e.p
}

func (c *personalCache) put(userID string, p *PersonalAEAD) {
	if c.ttl <= 0 || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.entries) >= c.max {
		// Expired entries go first; if none has, an arbitrary one does
		// (map order), which bounds memory without an LRU's bookkeeping.
		for id, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, id)
			}
		}
		for id := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, id)
		}
	}
	c.entries[userID] = personalEntry{p: p, expires: now.Add(c.ttl)}
}

func (c *personalCache) forget(userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if userID == "" {
		clear(c.entries)
		return
	}
	delete(c.entries, userID)
}

// WithPersonalKeyCache sets how long a user's parsed personal keyset is
// kept (ttl; 0 turns the cache off) and how many are kept at most.
func WithPersonalKeyCache(ttl time.Duration, entries int) Option {
	return func(o *options) { o.personalTTL, o.personalMax = ttl, entries }
}

// CachedPersonal returns userID's personal keyset if this keyring loaded
// it within the cache's TTL, else nil.
func (k *Keyring) CachedPersonal(userID string) *PersonalAEAD { return k.personal.get(userID) }

// CachePersonal keeps userID's parsed personal keyset for the cache's TTL.
func (k *Keyring) CachePersonal(userID string, p *PersonalAEAD) { k.personal.put(userID, p) }

// ForgetPersonal drops userID's cached personal keyset ("" drops all).
func (k *Keyring) ForgetPersonal(userID string) { k.personal.forget(userID) }

// PersonalKeyTTL is how long a cached personal keyset may outlive its
// destruction by another instance.
func (k *Keyring) PersonalKeyTTL() time.Duration { return k.personal.ttl }
