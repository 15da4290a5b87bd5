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
// private key is made by seal once the row id is known, so its ciphertext
// can be bound to the row. When onlyIfNone is set the key is added only if
// the table is empty (first start; instances starting at once add one key),
// and added reports whether it was.
func (db *DB) AddSigningKey(ctx context.Context, id string, publicKey []byte, sealed []byte, onlyIfNone bool) (added bool, err error) {
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		if onlyIfNone {
			// A transaction-scoped lock, which PgBouncer's transaction mode carries.
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('vectabase.jwt_signing_keys'))`); err != nil {
				return err
			}
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM jwt_signing_keys)`).Scan(&exists); err != nil {
				return err
			}
			if exists {
				return nil
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO jwt_signing_keys (id, public_key, private_key, created_at)
			VALUES ($1, $2, $3, clock_timestamp())`, id, publicKey, sealed)
		if err == nil {
			added = true
		}
		return err
	})
	return added, MapError(err)
}
