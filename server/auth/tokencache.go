package auth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// verifiedCacheSize bounds the verified-token cache: at about 200 bytes an
// entry, 10,000 entries stay near 2 MB however many tokens are presented.
const verifiedCacheSize = 10_000

// verifiedCache remembers access tokens whose signature and claims were
// verified, keyed by the SHA-256 of the token (the token itself is never
// kept), until the token expires. It saves the JOSE parsing and the
// Ed25519 verification on every request after the first; it answers only
// "this exact token was signed by key kid and says these claims". The
// time checks, the key still being published and the session and role
// checks still run on every request, so logout, refresh-token reuse and
// role changes take effect on the very next request.
type verifiedCache struct {
	mu      sync.Mutex
	max     int
	entries map[[sha256.Size]byte]verifiedEntry
}

type verifiedEntry struct {
	kid    string
	claims Claims
	expiry time.Time
}

func newVerifiedCache(max int) *verifiedCache {
	return &verifiedCache{max: max, entries: make(map[[sha256.Size]byte]verifiedEntry)}
}

func tokenHash(raw string) [sha256.Size]byte { return sha256.Sum256([]byte(raw)) }

// get returns the entry for the token hash h, dropping it when it has
// expired by now.
func (vc *verifiedCache) get(h [sha256.Size]byte, now time.Time) (verifiedEntry, bool) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	e, ok := vc.entries[h]
	if ok && !now.Before(e.expiry) {
		delete(vc.entries, h)
		return verifiedEntry{}, false
	}
	return e, ok
}

// put stores an entry. When the cache is full it first drops expired
// entries, then, if still full, an arbitrary one (Go's map order), so the
// size never passes max.
func (vc *verifiedCache) put(h [sha256.Size]byte, e verifiedEntry, now time.Time) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if _, ok := vc.entries[h]; !ok && len(vc.entries) >= vc.max {
		for k, old := range vc.entries {
			if !now.Before(old.expiry) {
				delete(vc.entries, k)
			}
		}
		for k := range vc.entries {
			if len(vc.entries) < vc.max {
				break
			}
			delete(vc.entries, k)
		}
	}
	vc.entries[h] = e
}

func (vc *verifiedCache) len() int {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	return len(vc.entries)
}
