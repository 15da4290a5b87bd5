// Package auth is authentication: password hashing, sessions with rotating
// refresh tokens, JWT access tokens and their middleware, Discord OAuth.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/vectabase/vectabase"
)

// Argon2Params are argon2id's cost parameters.
type Argon2Params struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
	SaltLen   int
	KeyLen    uint32
}

// OWASPArgon2 is the OWASP Password Storage Cheat Sheet's first argon2id
// configuration: 19 MiB of memory, 2 iterations, 1 degree of parallelism.
var OWASPArgon2 = Argon2Params{MemoryKiB: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// ErrMismatch is returned by VerifyPassword when the password is wrong.
var ErrMismatch = errors.New("auth: password does not match")

// HashPassword returns the argon2id hash of password in the PHC string
// format ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
func HashPassword(password string, p Argon2Params) (string, error) {
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword checks password against an argon2id PHC hash or a bcrypt
// hash ($2a$, $2b$, $2y$: what Supabase's GoTrue stores). It returns
// ErrMismatch for a wrong password, and whether the hash should be replaced
// by a fresh argon2id hash with the current parameters (true for bcrypt and
// for argon2id with other parameters).
func VerifyPassword(hash, password string, current Argon2Params) (rehash bool, err error) {
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		p, salt, key, err := parseArgon2(hash)
		if err != nil {
			return false, err
		}
		got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(key)))
		if subtle.ConstantTimeCompare(got, key) != 1 {
			return false, ErrMismatch
		}
		return p.MemoryKiB != current.MemoryKiB || p.Time != current.Time || p.Threads != current.Threads, nil
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, ErrMismatch
		}
		if err != nil {
			return false, fmt.Errorf("auth: unusable bcrypt hash: %w", err)
		}
		return true, nil
	}
	return false, errors.New("auth: unknown password hash format")
}

func parseArgon2(hash string) (Argon2Params, []byte, []byte, error) {
	var p Argon2Params
	parts := strings.Split(hash, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 {
		return p, nil, nil, errors.New("auth: malformed argon2id hash")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, errors.New("auth: unsupported argon2id version")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, errors.New("auth: malformed argon2id parameters")
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return p, nil, nil, errors.New("auth: malformed argon2id salt")
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || len(key) == 0 {
		return p, nil, nil, errors.New("auth: malformed argon2id key")
	}
	return p, salt, key, nil
}

// RandomPassword returns a password of n random URL-safe characters.
func RandomPassword(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b)[:n], nil
}

// errNoHashSlot: the request gave up (its context ended) while waiting for
// a hash slot.
var errNoHashSlot = vectabase.Errorf(vectabase.EUNAVAILABLE, "too many sign-ins at once; try again")

// withHashSlot runs fn once fewer than MaxConcurrentHashes hashes are being
// computed. More hashes than cores at once would not finish sooner, and
// each holds its memory while it waits for a core, so a burst of logins
// would otherwise cost hashes × Argon2.MemoryKiB at once.
func (s *Service) withHashSlot(ctx context.Context, fn func()) error {
	select {
	case s.hashSlots <- struct{}{}:
	case <-ctx.Done():
		return errNoHashSlot
	}
	defer func() { <-s.hashSlots }()
	fn()
	return nil
}

func (s *Service) hashPassword(ctx context.Context, password string) (hash string, err error) {
	if serr := s.withHashSlot(ctx, func() { hash, err = HashPassword(password, s.cfg.Argon2) }); serr != nil {
		return "", serr
	}
	return hash, err
}

// verifyPassword is VerifyPassword in a hash slot; took is how long the
// verification itself took (not the wait for the slot).
func (s *Service) verifyPassword(ctx context.Context, hash, password string) (rehash bool, took time.Duration, err error) {
	serr := s.withHashSlot(ctx, func() {
		start := time.Now()
		rehash, err = VerifyPassword(hash, password, s.cfg.Argon2)
		took = time.Since(start)
	})
	if serr != nil {
		return false, 0, serr
	}
	s.verifyTimes.observe(isBcrypt(hash), took)
	return rehash, took, err
}

func isBcrypt(hash string) bool {
	return strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")
}

// dummyBcrypt is a bcrypt hash at GoTrue's cost (10) of a password nobody
// uses; verifying it once tells how long an imported user's verification
// takes before any has been seen.
const dummyBcrypt = "$2a$10$Tqpwg/jNOJtjU0wWI4zjMup0RmHoQb62It75Rt1M.tQU.kmhuWVwK"

// verifyTimes follows how long verifications of each kind take (moving
// averages), so that a failed login can be made to last as long as the
// slowest kind. Unknown emails are verified against an argon2id hash, and
// so are users who signed up here; users imported from Supabase keep their
// bcrypt hash until their first login, and bcrypt at cost 10 takes about
// three times as long. Without this, the time of a failed login would tell
// which emails belong to imported users: right after a migration, all of
// them.
type verifyTimes struct {
	seed   sync.Once
	mu     sync.Mutex
	argon  time.Duration
	bcrypt time.Duration
}

func (v *verifyTimes) observe(bcrypt bool, d time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	avg := &v.argon
	if bcrypt {
		avg = &v.bcrypt
	}
	if *avg == 0 {
		*avg = d
	} else {
		*avg += (d - *avg) / 8
	}
}

// slowest is the longer of the two averages; the first call measures
// bcrypt once if no bcrypt verification has been seen yet.
func (v *verifyTimes) slowest() time.Duration {
	v.seed.Do(func() {
		v.mu.Lock()
		seen := v.bcrypt != 0
		v.mu.Unlock()
		if !seen {
			start := time.Now()
			_ = bcrypt.CompareHashAndPassword([]byte(dummyBcrypt), []byte("not the password"))
			v.observe(true, time.Since(start))
		}
	})
	v.mu.Lock()
	defer v.mu.Unlock()
	return max(v.argon, v.bcrypt)
}

// padFailure waits until a failed verification that took took has lasted
// as long as the slowest kind of verification (see verifyTimes).
func (s *Service) padFailure(ctx context.Context, took time.Duration) {
	wait := s.verifyTimes.slowest() - took
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
