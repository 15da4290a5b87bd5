package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/vectabase/vectabase/keyring"
)

// Personal values: a user's personal encrypted values are sealed twice.
// The inner layer is the user's own key (user_keys, one Tink keyset per
// user), the outer the keyring's usual ciphertext, so rotation, the KEK and
// the sensitive-column machinery see an ordinary sensitive value (and a
// DEK rotation rewrites only the outer layer). Deleting the user's
// user_keys row (ShredUser) leaves every such value, wherever a copy of it
// went, impossible to open.
//
// Which values are personal, and whose: PersonalColumns. Blind indexes
// beside them stay keyring-only keyed hashes, so look-ups by value (a game
// server's license check) never need the user's key.

// PersonalQuerier is a pool or a transaction: what loading a user's key
// needs (creating one writes a row).
type PersonalQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func userKeyLoc(userID string) keyring.Location {
	return keyring.Location{Table: "user_keys", Column: "keyset", RowID: userID}
}

// personalKey loads the user's key; with create, it makes one when the user
// has none (ErrNotFound without create, or for a user that does not exist).
// A key loaded here is kept by the keyring for its personal-key TTL.
func personalKey(ctx context.Context, q PersonalQuerier, kr *keyring.Keyring, userID string, create bool) (*keyring.PersonalAEAD, error) {
	if !isUUID(userID) {
		return nil, ErrNotFound
	}
	if p := kr.CachedPersonal(userID); p != nil {
		return p, nil
	}
	var wrapped []byte
	made := false
	err := q.QueryRow(ctx, `SELECT keyset FROM user_keys WHERE id = $1`, userID).Scan(&wrapped)
	if errors.Is(err, pgx.ErrNoRows) && create {
		ks, kerr := keyring.NewPersonalKeyset()
		if kerr != nil {
			return nil, kerr
		}
		ct, kerr := kr.Encrypt(ctx, userKeyLoc(userID), ks)
		if kerr != nil {
			return nil, kerr
		}
		// Two writers at once make one key: the loser reads the winner's.
		if _, err := q.Exec(ctx, `INSERT INTO user_keys (id, keyset) SELECT $1, $2
			WHERE EXISTS (SELECT 1 FROM users WHERE id = $1) ON CONFLICT (id) DO NOTHING`, userID, ct); err != nil {
			return nil, err
		}
		err = q.QueryRow(ctx, `SELECT keyset FROM user_keys WHERE id = $1`, userID).Scan(&wrapped)
		made = true
	}
	if err != nil {
		return nil, MapError(err)
	}
	ks, err := kr.Decrypt(ctx, userKeyLoc(userID), wrapped)
	if err != nil {
		return nil, err
	}
	p, err := keyring.OpenPersonalKeyset(ks)
	if err != nil {
		return nil, err
	}
	if !made {
		// A key made in this transaction is not cached: the transaction
		// may yet roll back, and the key must not outlive it.
		kr.CachePersonal(userID, p)
	}
	return p, nil
}

// SealPersonal encrypts a personal value of userID for loc: under the
// user's key (made now if the user has none), then through the keyring.
// ErrNotFound when the user does not exist.
func SealPersonal(ctx context.Context, q PersonalQuerier, kr *keyring.Keyring, userID string, loc keyring.Location, plaintext []byte) ([]byte, error) {
	p, err := personalKey(ctx, q, kr, userID, true)
	if err != nil {
		return nil, err
	}
	inner, err := p.Seal(loc, plaintext)
	if err != nil {
		return nil, err
	}
	return kr.Encrypt(ctx, loc, inner)
}

// OpenPersonal decrypts what SealPersonal made. A value the keyring alone
// encrypted (written before personal keys, or imported and not yet sealed
// by SealPersonalValues) is returned as it is. An error wrapping
// keyring.ErrPersonalKeyGone means the user's key was destroyed.
func OpenPersonal(ctx context.Context, q PersonalQuerier, kr *keyring.Keyring, userID string, loc keyring.Location, ciphertext []byte) ([]byte, error) {
	inner, err := kr.Decrypt(ctx, loc, ciphertext)
	if err != nil || !keyring.IsPersonallySealed(inner) {
		return inner, err
	}
	p, err := personalKey(ctx, q, kr, userID, false)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("store: open %s: %w", loc, keyring.ErrPersonalKeyGone)
	}
	if err != nil {
		return nil, err
	}
	return p.Open(loc, inner)
}

// sealOwned seals plaintext under owner's key when the value has an owner
// (a buyer, a secret's owner), else encrypts it through the keyring alone
// (a license a seller made by hand belongs to no account of ours).
func sealOwned(ctx context.Context, q PersonalQuerier, kr *keyring.Keyring, owner *string, loc keyring.Location, plaintext []byte) ([]byte, error) {
	if owner == nil || *owner == "" {
		return kr.Encrypt(ctx, loc, plaintext)
	}
	return SealPersonal(ctx, q, kr, *owner, loc, plaintext)
}

// openOwned opens what sealOwned made, in either form.
func openOwned(ctx context.Context, q PersonalQuerier, kr *keyring.Keyring, owner *string, loc keyring.Location, ciphertext []byte) ([]byte, error) {
	if owner == nil || *owner == "" {
		// An owner cleared by a deletion leaves a sealed value that no
		// key opens: OpenPersonal answers ErrPersonalKeyGone for it.
		none := "00000000-0000-0000-0000-000000000000"
		owner = &none
	}
	return OpenPersonal(ctx, q, kr, *owner, loc, ciphertext)
}
