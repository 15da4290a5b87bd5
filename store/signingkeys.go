package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// SigningKey is a row of jwt_signing_keys. PrivateKey is keyring
// ciphertext bound to (jwt_signing_keys, private_key, ID); only the auth
// service decrypts it.
type SigningKey struct {
	ID         string // also the JWT kid
	Algorithm  string
	PublicKey  []byte
	PrivateKey []byte `json:"-"`
	CreatedAt  time.Time
}

// SigningKeys returns the newest n signing keys, newest first.
func (db *DB) SigningKeys(ctx context.Context, n int) ([]SigningKey, error) {
	rows, err := db.Pool.Query(ctx, `SELECT id, algorithm, public_key, private_key, created_at
		FROM jwt_signing_keys ORDER BY created_at DESC, id DESC LIMIT $1`, n)
	if err != nil {
		return nil, MapError(err)
	}
	defer rows.Close()
	var out []SigningKey
	for rows.Next() {
		var k SigningKey
		if err := rows.Scan(&k.ID, &k.Algorithm, &k.PublicKey, &k.PrivateKey, &k.CreatedAt); err != nil {
			return nil, MapError(err)
		}
		out = append(out, k)
	}
	return out, MapError(rows.Err())
}

// AddSigningKey stores a new signing key, which becomes the newest. The
// private key is sealed by the caller, bound to the row id it chose. When onlyIfNone is set the key is added only if
// the table is empty (first start; instances starting at once add one key),
// and added reports whether it was.
func (db *DB) AddSigningKey(ctx context.Context, id string, publicKey []byte, sealed []byte, createdAt time.Time, onlyIfNone bool) (added bool, err error) {
	if onlyIfNone {
		return db.addSigningKey(ctx, id, publicKey, sealed, createdAt, `SELECT EXISTS (SELECT 1 FROM jwt_signing_keys)`)
	}
	return db.addSigningKey(ctx, id, publicKey, sealed, createdAt, "")
}

// AddSigningKeyIfNewestBefore stores a new signing key only if the newest
// one was created before cutoff (scheduled rotation: instances checking at
// once add one key between them). added reports whether it did.
func (db *DB) AddSigningKeyIfNewestBefore(ctx context.Context, id string, publicKey, sealed []byte, createdAt, cutoff time.Time) (bool, error) {
	return db.addSigningKey(ctx, id, publicKey, sealed, createdAt,
		`SELECT EXISTS (SELECT 1 FROM jwt_signing_keys WHERE created_at >= $1)`, cutoff)
}

// addSigningKey inserts the key unless skipIf (a query answering one
// boolean) says true, both under one transaction-scoped lock, which
// PgBouncer's transaction mode carries.
func (db *DB) addSigningKey(ctx context.Context, id string, publicKey, sealed []byte, createdAt time.Time, skipIf string, args ...any) (added bool, err error) {
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		if skipIf != "" {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('vectabase.jwt_signing_keys'))`); err != nil {
				return err
			}
			var skip bool
			if err := tx.QueryRow(ctx, skipIf, args...).Scan(&skip); err != nil {
				return err
			}
			if skip {
				return nil
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO jwt_signing_keys (id, public_key, private_key, created_at)
			VALUES ($1, $2, $3, $4)`, id, publicKey, sealed, createdAt)
		if err == nil {
			added = true
		}
		return err
	})
	return added, MapError(err)
}
