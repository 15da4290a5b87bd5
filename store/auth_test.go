package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// Concurrent hits on one throttle bucket, from two pools as two instances
// would, all count; a new window starts over; a peek does not count.
func TestThrottleHitCountsAcrossInstances(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	a, b := pgtest.Open(t, url), pgtest.Open(t, url)
	w := time.Now().Truncate(time.Minute)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db := a
			if i%2 == 1 {
				db = b
			}
			if _, err := db.ThrottleHit(ctx, []string{"x", "y"}, w, 1); err != nil {
				t.Errorf("ThrottleHit err = %v", err)
			}
		}()
	}
	wg.Wait()
	hits, err := a.ThrottleHit(ctx, []string{"y", "x", "unknown"}, w, 0)
	if err != nil {
		t.Fatal(err)
	}
	if hits[0].Bucket != "y" || hits[0].Hits != 20 || hits[1].Bucket != "x" || hits[1].Hits != 20 || hits[2].Hits != 0 {
		t.Fatalf("peek = %+v, want y=20 x=20 unknown=0 in the asked order", hits)
	}
	next, err := b.ThrottleHit(ctx, []string{"x"}, w.Add(time.Minute), 1)
	if err != nil || next[0].Hits != 1 {
		t.Fatalf("first hit of a new window = %+v, %v, want 1", next, err)
	}
	if err := a.ThrottleReset(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if h, _ := a.ThrottleHit(ctx, []string{"x"}, w.Add(time.Minute), 0); h[0].Hits != 0 {
		t.Errorf("after reset = %d, want 0", h[0].Hits)
	}
}

// The login look-up bumps the counters and finds the user by email,
// case-insensitively, as UserByEmail would; an unknown email is counted too.
func TestThrottleAddUserByEmail(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	created, err := db.CreateUser(ctx, store.NewUser{Email: "Look@Example.com", PasswordHash: "h", Role: "developer"})
	if err != nil {
		t.Fatal(err)
	}
	w := time.Now().Truncate(time.Minute)
	incs := []store.ThrottleInc{{Bucket: "a", Inc: 1, WindowStart: w}, {Bucket: "b", Inc: 0, WindowStart: w}}
	for i := 1; i <= 2; i++ {
		hits, u, found, err := db.ThrottleAddUserByEmail(ctx, incs, "look@example.COM")
		if err != nil || !found {
			t.Fatalf("look-up %d = found %v, err %v", i, found, err)
		}
		want, err := db.UserByEmail(ctx, "look@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if u.ID != created.ID || u.Role != "developer" || *u.PasswordHash != "h" || !u.CreatedAt.Equal(want.CreatedAt) || !u.UpdatedAt.Equal(want.UpdatedAt) {
			t.Fatalf("user = %+v, want %+v", u, want)
		}
		if hits[0].Bucket != "a" || hits[0].Hits != i || hits[1].Bucket != "b" || hits[1].Hits != 0 {
			t.Fatalf("hits %d = %+v", i, hits)
		}
	}
	hits, u, found, err := db.ThrottleAddUserByEmail(ctx, incs, "nobody@example.com")
	if err != nil || found || u.ID != "" {
		t.Fatalf("unknown email = %+v, found %v, err %v", u, found, err)
	}
	if hits[0].Hits != 3 {
		t.Fatalf("unknown email's attempt not counted: %+v", hits)
	}
}

// An OAuth state nonce is accepted once.
func TestUseOAuthStateOnce(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	if err := db.UseOAuthState(ctx, "n1", exp); err != nil {
		t.Fatalf("first use err = %v, want nil", err)
	}
	if err := db.UseOAuthState(ctx, "n1", exp); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second use err = %v, want ErrConflict", err)
	}
}

// Rotation marks the old session used and links the successor; a second
// rotation of the same token finds nothing; revoking the family ends both.
func TestRotateSession(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	u, err := db.CreateUser(ctx, store.NewUser{Email: "s@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Microsecond)
	first, err := db.CreateSession(ctx, store.NewSession{UserID: u.ID, TokenHash: []byte("h1"), IP: "::ffff:192.0.2.9",
		UserAgent: "ua\x00\xff" + string(make([]byte, 600)), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, nil)
	if err != nil {
		t.Fatalf("CreateSession err = %v", err)
	}
	if first.FamilyID != first.ID || first.IP == nil || first.IP.String() != "192.0.2.9" || first.UserAgent == nil || len(*first.UserAgent) > 512 {
		t.Fatalf("first session = %+v, want its own family, the unmapped IP and a bounded user agent", first)
	}
	succ, err := db.RotateSession(ctx, []byte("h1"), store.NewSession{TokenHash: []byte("h2"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatalf("RotateSession err = %v", err)
	}
	if succ.FamilyID != first.ID || succ.ParentID == nil || *succ.ParentID != first.ID || succ.User.ID != u.ID || succ.User.PasswordHash != nil {
		t.Fatalf("successor = %+v, want same family, parent %s, user %s without hash", succ, first.ID, u.ID)
	}
	if _, err := db.RotateSession(ctx, []byte("h1"), store.NewSession{TokenHash: []byte("h3"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second RotateSession of a used token err = %v, want ErrNotFound", err)
	}
	if n, err := db.RevokeFamily(ctx, u.ID, first.ID, "test"); err != nil || n != 2 {
		t.Fatalf("RevokeFamily = %d, %v, want 2", n, err)
	}
	st, err := db.SessionStateByID(ctx, succ.ID)
	if err != nil || st.Active || st.Role != "user" {
		t.Fatalf("SessionStateByID after revoke = %+v, %v, want inactive", st, err)
	}
	if _, err := db.SessionStateByID(ctx, "not-a-uuid"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SessionStateByID(malformed) err = %v, want ErrNotFound", err)
	}
}

// A login's session records the sign-in in the same statement: the
// password hash is replaced only while it is still the old one, and the
// account's failure counter is cleared.
func TestCreateSessionRecordsSignIn(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	u, err := db.CreateUser(ctx, store.NewUser{Email: "si@example.com", PasswordHash: "$2a$old"})
	if err != nil {
		t.Fatal(err)
	}
	w := time.Now().Truncate(time.Minute)
	if _, err := db.ThrottleHit(ctx, []string{"fail:acct:si", "other"}, w, 3); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ns := func(h string) store.NewSession {
		return store.NewSession{UserID: u.ID, TokenHash: []byte(h), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	if _, err := db.CreateSession(ctx, ns("a"), &store.SignIn{OldHash: "$2a$other", NewHash: "$argon2id$new1", ResetBucket: "fail:acct:si"}); err != nil {
		t.Fatal(err)
	}
	got, _ := db.UserByID(ctx, u.ID)
	if *got.PasswordHash != "$2a$old" || got.LastSignInAt == nil {
		t.Fatalf("after a sign-in with a stale old hash: hash %q, last sign-in %v; want the hash kept and the time set", *got.PasswordHash, got.LastSignInAt)
	}
	hits, _ := db.ThrottleHit(ctx, []string{"fail:acct:si", "other"}, w, 0)
	if hits[0].Hits != 0 || hits[1].Hits != 3 {
		t.Fatalf("counters after sign-in = %+v, want the account's cleared and the other kept", hits)
	}
	if _, err := db.CreateSession(ctx, ns("b"), &store.SignIn{OldHash: "$2a$old", NewHash: "$argon2id$new2"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.UserByID(ctx, u.ID); *got.PasswordHash != "$argon2id$new2" {
		t.Fatalf("hash after re-hash = %q, want the new one", *got.PasswordHash)
	}
}
