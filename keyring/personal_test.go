package keyring_test

import (
	"context"
	"testing"
	"time"

	"github.com/vectabase/vectabase/keyring"
)

// The personal-key cache keeps at most its bound of keysets, each for its
// TTL; ForgetPersonal drops one ("" all), Reload drops all, and a TTL of 0
// caches nothing.
func TestPersonalKeyCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, st, kek := openKeyring(t)
	ks, err := keyring.NewPersonalKeyset()
	if err != nil {
		t.Fatal(err)
	}
	p, err := keyring.OpenPersonalKeyset(ks)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.Open(ctx, st, kek, keyring.WithPersonalKeyCache(time.Hour, 3))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		kr.CachePersonal(id, p)
	}
	held := 0
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		if kr.CachedPersonal(id) != nil {
			held++
		}
	}
	if held != 3 || kr.CachedPersonal("e") != p {
		t.Errorf("cache holds %d of 5 (the last: %v), want its bound of 3 with the newest", held, kr.CachedPersonal("e") != nil)
	}
	kr.ForgetPersonal("e")
	if kr.CachedPersonal("e") != nil {
		t.Error("ForgetPersonal(e): still cached")
	}
	kr.CachePersonal("e", p)
	if err := kr.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if kr.CachedPersonal("e") != nil {
		t.Error("after Reload: still cached")
	}

	short, err := keyring.Open(ctx, st, kek, keyring.WithPersonalKeyCache(20*time.Millisecond, 3))
	if err != nil {
		t.Fatal(err)
	}
	short.CachePersonal("a", p)
	time.Sleep(40 * time.Millisecond) // past the TTL however busy the machine
	if short.CachedPersonal("a") != nil {
		t.Error("a key cached past its TTL is still returned")
	}
	off, err := keyring.Open(ctx, st, kek, keyring.WithPersonalKeyCache(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	off.CachePersonal("a", p)
	if off.CachedPersonal("a") != nil {
		t.Error("a TTL of 0 cached a key")
	}
	if got := kr.PersonalKeyTTL(); got != time.Hour {
		t.Errorf("PersonalKeyTTL = %v, want 1h", got)
	}
}
