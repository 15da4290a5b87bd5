package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring"
)

// Personal values: a user's personal encrypted values are sealed twice.
// The inner layer is the user's own key (user_keys, one Tink keyset per
// user), the outer the keyring's usual ciphertext, so rotation, the KEK and
// the sensitive-column machinery see an ordinary sensitive value. Deleting
// the user's user_keys row (ShredUser) leaves every such value, wherever a
// copy of it went, impossible to open.

func userKeyLoc(userID string) keyring.Location {
	return keyring.Location{Table: "user_keys", Column: "keyset", RowID: userID}
}

// personalKey loads the user's key; with create, it makes one when the user
// has none (ErrNotFound without create, or for a user that does not exist).
func personalKey(ctx context.Context, tx pgx.Tx, kr *keyring.Keyring, userID string, create bool) (*keyring.PersonalAEAD, error) {
	if !isUUID(userID) {
		return nil, ErrNotFound
	}
	var wrapped []byte
	err := tx.QueryRow(ctx, `SELECT keyset FROM user_keys WHERE id = $1`, userID).Scan(&wrapped)
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
		if _, err := tx.Exec(ctx, `INSERT INTO user_keys (id, keyset) SELECT $1, $2
			WHERE EXISTS (SELECT 1 FROM users WHERE id = $1) ON CONFLICT (id) DO NOTHING`, userID, ct); err != nil {
			return nil, err
		}
		err = tx.QueryRow(ctx, `SELECT keyset FROM user_keys WHERE id = $1`, userID).Scan(&wrapped)
	}
	if err != nil {
		return nil, MapError(err)
	}
	ks, err := kr.Decrypt(ctx, userKeyLoc(userID), wrapped)
	if err != nil {
		return nil, err
	}
	return keyring.OpenPersonalKeyset(ks)
}

// SealPersonal encrypts a personal value of userID for loc: under the
// user's key (made now if the user has none), then through the keyring.
// ErrNotFound when the user does not exist.
func SealPersonal(ctx context.Context, tx pgx.Tx, kr *keyring.Keyring, userID string, loc keyring.Location, plaintext []byte) ([]byte, error) {
	p, err := personalKey(ctx, tx, kr, userID, true)
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
// encrypted (imported before personal keys) is returned as it is. An error
// wrapping keyring.ErrPersonalKeyGone means the user's key was destroyed.
func OpenPersonal(ctx context.Context, tx pgx.Tx, kr *keyring.Keyring, userID string, loc keyring.Location, ciphertext []byte) ([]byte, error) {
	inner, err := kr.Decrypt(ctx, loc, ciphertext)
	if err != nil || !keyring.IsPersonallySealed(inner) {
		return inner, err
	}
	p, err := personalKey(ctx, tx, kr, userID, false)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("store: open %s: %w", loc, keyring.ErrPersonalKeyGone)
	}
	if err != nil {
		return nil, err
	}
	return p.Open(loc, inner)
}
