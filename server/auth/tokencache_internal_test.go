package auth

import (
	"crypto/sha256"
	"testing"
	"time"
)

// The verified cache never holds more than its bound, drops expired entries
// first when full, and never answers for an expired entry.
func TestVerifiedCacheBoundedAndExpiring(t *testing.T) {
	t.Parallel()
	now := time.Now()
	vc := newVerifiedCache(3)
	key := func(i int) [sha256.Size]byte { return tokenHash(string(rune('a' + i))) }
	vc.put(key(0), verifiedEntry{kid: "k", expiry: now.Add(time.Second)}, now)
	for i := 1; i < 50; i++ {
		vc.put(key(i), verifiedEntry{kid: "k", expiry: now.Add(time.Hour)}, now)
		if n := vc.len(); n > 3 {
			t.Fatalf("after %d puts the cache holds %d entries, want at most 3", i+1, n)
		}
	}
	if _, ok := vc.get(key(49), now); !ok {
		t.Errorf("get(newest) = miss, want hit")
	}
	if _, ok := vc.get(key(49), now.Add(time.Hour)); ok {
		t.Errorf("get(newest) at its expiry = hit, want miss")
	}
	// An expired entry is what goes first when the cache is full.
	vc = newVerifiedCache(2)
	vc.put(key(0), verifiedEntry{expiry: now.Add(time.Second)}, now)
	vc.put(key(1), verifiedEntry{expiry: now.Add(time.Hour)}, now)
	vc.put(key(2), verifiedEntry{expiry: now.Add(time.Hour)}, now.Add(2*time.Second))
	if _, ok := vc.get(key(1), now); !ok {
		t.Errorf("live entry evicted while an expired one was there")
	}
}
