package auth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/vectabase/vectabase"
)

// Hashes from store/supabase/supabasetest/sample.sql, as GoTrue stores them.
func TestVerifySupabaseBcrypt(t *testing.T) {
	t.Parallel()
	cases := []struct{ hash, password string }{
		{"$2a$10$N7jQfO.23DgZh/HtdZy4r.pTRIBA68EnBmFeAGEVaJtTdS5wBqZ86", "correct horse battery staple"},
		{"$2a$10$6dm4uCSK.TXwvF2VrmwBOOIsAkoD6.e8Nzmv4ElNFWv4pKbiGZ7qm", "Tr0ub4dor&3"},
		{"$2a$10$iq73NFpXJp1.qZP7GQc1TuZCrTZegbXM1zExzgm0wqTueAHRWNrAa", "pässwörd-ünïcode-🔑"},
	}
	for _, tc := range cases {
		rehash, err := VerifyPassword(tc.hash, tc.password, OWASPArgon2)
		if err != nil || !rehash {
			t.Errorf("VerifyPassword(%s, right) = %v, %v; want true, nil", tc.hash[:10], rehash, err)
		}
		if _, err := VerifyPassword(tc.hash, tc.password+"x", OWASPArgon2); !errors.Is(err, ErrMismatch) {
			t.Errorf("VerifyPassword(%s, wrong) err = %v, want ErrMismatch", tc.hash[:10], err)
		}
	}
}

func TestArgon2RoundTrip(t *testing.T) {
	t.Parallel()
	h, err := HashPassword("s3cret pass", OWASPArgon2)
	if err != nil {
		t.Fatal(err)
	}
	if rehash, err := VerifyPassword(h, "s3cret pass", OWASPArgon2); err != nil || rehash {
		t.Fatalf("VerifyPassword(own hash) = %v, %v; want false, nil", rehash, err)
	}
	if _, err := VerifyPassword(h, "s3cret pasS", OWASPArgon2); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password err = %v, want ErrMismatch", err)
	}
	for _, bad := range []string{"", "$argon2id$", "$argon2id$v=19$m=1,t=1,p=1$!!$!!", "plain"} {
		if _, err := VerifyPassword(bad, "x", OWASPArgon2); err == nil || errors.Is(err, ErrMismatch) {
			t.Errorf("VerifyPassword(%q) err = %v, want a format error", bad, err)
		}
	}
}

// No more than MaxConcurrentHashes hashes run at once; a caller whose
// context ends while every slot is taken gets UNAVAILABLE without hashing.
func TestHashSlotsBoundConcurrentHashes(t *testing.T) {
	s := &Service{hashSlots: make(chan struct{}, 2)}
	var mu sync.Mutex
	running, peak, ran := 0, 0, 0
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.withHashSlot(context.Background(), func() {
				mu.Lock()
				running++
				peak = max(peak, running)
				ran++
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
				mu.Lock()
				running--
				mu.Unlock()
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ran != 16 || peak > 2 || peak < 1 {
		t.Fatalf("ran %d, peak %d at once; want 16 runs, at most 2 at once", ran, peak)
	}

	s.hashSlots <- struct{}{}
	s.hashSlots <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	called := false
	err := s.withHashSlot(ctx, func() { called = true })
	if called || vectabase.ErrorCode(err) != vectabase.EUNAVAILABLE {
		t.Fatalf("with every slot taken: called %v, err %v; want UNAVAILABLE without a call", called, err)
	}
}

// The dummy bcrypt hash is a real cost-10 hash, so verifying it costs what
// an imported user's verification costs (a malformed one would fail at
// once).
func TestDummyBcryptIsARealHash(t *testing.T) {
	cost, err := bcrypt.Cost([]byte(dummyBcrypt))
	if err != nil || cost != 10 {
		t.Fatalf("bcrypt.Cost(dummyBcrypt) = %d, %v; want 10", cost, err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(dummyBcrypt), []byte("x")); !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		t.Fatalf("verify against the dummy = %v, want a mismatch", err)
	}
}
