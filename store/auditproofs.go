package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuditSigningKey is the row of audit_signing_key: the Ed25519 note key
// that signs audit checkpoints. PrivateKey is keyring ciphertext bound to
// (audit_signing_key, private_key, 1); only vault/audit decrypts it.
type AuditSigningKey struct {
	Origin      string
	VerifierKey string
	PrivateKey  []byte `json:"-"`
	CreatedAt   time.Time
}

// AuditSigningKey returns the checkpoint signing key, or ErrNotFound.
func (db *DB) AuditSigningKey(ctx context.Context) (AuditSigningKey, error) {
	var k AuditSigningKey
	err := db.Pool.QueryRow(ctx, `SELECT origin, verifier_key, private_key, created_at FROM audit_signing_key WHERE id = 1`).
		Scan(&k.Origin, &k.VerifierKey, &k.PrivateKey, &k.CreatedAt)
	return k, MapError(err)
}

// AddAuditSigningKey stores k unless a key exists already (instances
// starting at once); either way it returns the key that is stored.
func (db *DB) AddAuditSigningKey(ctx context.Context, k AuditSigningKey) (AuditSigningKey, error) {
	if _, err := db.Pool.Exec(ctx, `INSERT INTO audit_signing_key (id, origin, verifier_key, private_key)
		VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING`, k.Origin, k.VerifierKey, k.PrivateKey); err != nil {
		return AuditSigningKey{}, MapError(err)
	}
	return db.AuditSigningKey(ctx)
}

// AuditTree is the Merkle tree's size and root as the chain head has them.
func (db *DB) AuditTree(ctx context.Context) (size int64, root []byte, err error) {
	err = db.Pool.QueryRow(ctx, `SELECT tree_size, tree_root FROM audit_chain_head WHERE id = 1`).Scan(&size, &root)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	return size, root, MapError(err)
}

// AuditCheckpoint is a row of audit_checkpoints.
type AuditCheckpoint struct {
	TreeSize  int64
	Root      []byte
	Note      string
	CreatedAt time.Time
}

// AddAuditCheckpoint stores a signed checkpoint; added is false when one
// for that tree size exists already (another instance signed it).
func (db *DB) AddAuditCheckpoint(ctx context.Context, c AuditCheckpoint) (added bool, err error) {
	tag, err := db.Pool.Exec(ctx, `INSERT INTO audit_checkpoints (tree_size, root, note) VALUES ($1, $2, $3)
		ON CONFLICT (tree_size) DO NOTHING`, c.TreeSize, c.Root, c.Note)
	if err != nil {
		return false, MapError(err)
	}
	return tag.RowsAffected() == 1, nil
}

// LatestAuditCheckpoint returns the checkpoint of the largest tree, or
// ErrNotFound.
func (db *DB) LatestAuditCheckpoint(ctx context.Context) (AuditCheckpoint, error) {
	var c AuditCheckpoint
	err := db.Pool.QueryRow(ctx, `SELECT tree_size, root, note, created_at FROM audit_checkpoints
		ORDER BY tree_size DESC LIMIT 1`).Scan(&c.TreeSize, &c.Root, &c.Note, &c.CreatedAt)
	return c, MapError(err)
}

// AuditCheckpointAt returns the stored checkpoint of a tree of size
// leaves, or ErrNotFound.
func (db *DB) AuditCheckpointAt(ctx context.Context, size int64) (AuditCheckpoint, error) {
	var c AuditCheckpoint
	err := db.Pool.QueryRow(ctx, `SELECT tree_size, root, note, created_at FROM audit_checkpoints
		WHERE tree_size = $1`, size).Scan(&c.TreeSize, &c.Root, &c.Note, &c.CreatedAt)
	return c, MapError(err)
}
