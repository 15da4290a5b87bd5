package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring"
)

// Secret is a row of secrets: metadata only, never a value.
type Secret struct {
	ID             string
	Name           string
	Description    string
	OwnerID        string // empty: none
	CurrentVersion int    // 0: created in this transaction, no version yet
	CreatedBy      string
	UpdatedBy      string
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// SecretVersion is the metadata of one stored version of a secret.
type SecretVersion struct {
	Version   int
	CreatedBy string
	CreatedAt time.Time
}

// SecretValueLocation is where a secret version's ciphertext lives: bound to
// the secret's name and version, so a value copied to another secret or
// version does not decrypt.
func SecretValueLocation(name string, version int) keyring.Location {
	return keyring.Location{Table: "secret_versions", Column: "value", RowID: name + "@" + strconv.Itoa(version)}
}

const secretColumns = `id, name, description, COALESCE(owner_id::text, ''), current_version,
	created_by, updated_by, created_at, updated_at`

func scanSecret(row pgx.Row) (Secret, error) {
	var s Secret
	err := row.Scan(&s.ID, &s.Name, &s.Description, &s.OwnerID, &s.CurrentVersion,
		&s.CreatedBy, &s.UpdatedBy, &s.CreatedAt, &s.UpdatedAt)
	return s, err
}

// LockSecretForWrite returns the secret called name locked FOR UPDATE until
// tx ends, creating it with no version (CurrentVersion 0) when it does not
// exist. Concurrent writers of a new name queue on the same row instead of
// failing on the unique name.
func LockSecretForWrite(ctx context.Context, tx pgx.Tx, name, actor, ownerID string) (Secret, error) {
	var owner any
	if ownerID != "" {
		owner = ownerID
	}
	if _, err := tx.Exec(ctx, `INSERT INTO secrets (name, owner_id, created_by, updated_by)
		VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO NOTHING`, name, owner, actor); err != nil {
		return Secret{}, MapError(err)
	}
	s, err := scanSecret(tx.QueryRow(ctx, `SELECT `+secretColumns+` FROM secrets WHERE name = $1 FOR UPDATE`, name))
	return s, MapError(err)
}

// WriteSecretVersion stores value, encrypted by kr, as the next version of
// the locked secret s, then deletes versions beyond the newest keep. It
// returns the secret as updated.
func WriteSecretVersion(ctx context.Context, tx pgx.Tx, kr *keyring.Keyring, s Secret, value []byte, actor string, keep int) (Secret, error) {
	next := s.CurrentVersion + 1
	// A secret a user owns is their personal value: sealed under their key.
	ct, err := sealOwned(ctx, tx, kr, &s.OwnerID, SecretValueLocation(s.Name, next), value)
	if err != nil {
		return Secret{}, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO secret_versions (secret_id, version, value, created_by)
		VALUES ($1, $2, $3, $4)`, s.ID, next, ct, actor); err != nil {
		return Secret{}, MapError(err)
	}
	if keep > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM secret_versions WHERE secret_id = $1 AND version <= $2`,
			s.ID, next-keep); err != nil {
			return Secret{}, err
		}
	}
	s, err = scanSecret(tx.QueryRow(ctx, `UPDATE secrets SET current_version = $2, updated_by = $3, updated_at = now()
		WHERE id = $1 RETURNING `+secretColumns, s.ID, next, actor))
	return s, MapError(err)
}

// SecretValue is a decrypted secret version. String redacts the value.
type SecretValue struct {
	Secret  Secret
	Version int
	Value   []byte
	// CreatedAt is when this version was written.
	CreatedAt time.Time
	// Honeytoken is set on a secret that exists only to be a tripwire.
	Honeytoken bool
}

// String never shows the value.
func (v SecretValue) String() string {
	return fmt.Sprintf("SecretValue{%s@%d [redacted]}", v.Secret.Name, v.Version)
}

// GoString redacts like String.
func (v SecretValue) GoString() string { return v.String() }

// ReadSecret returns version (0: the current one) of the secret called name,
// decrypted by kr. A missing secret or version is ErrNotFound.
func (db *DB) ReadSecret(ctx context.Context, kr *keyring.Keyring, name string, version int) (SecretValue, error) {
	var out SecretValue
	var ct []byte
	err := db.Pool.QueryRow(ctx, `SELECT s.id, s.name, s.description, COALESCE(s.owner_id::text, ''),
			s.current_version, s.created_by, s.updated_by, s.created_at, s.updated_at,
			v.version, v.value, v.created_at, s.honeytoken
		FROM secrets s JOIN secret_versions v ON v.secret_id = s.id
		WHERE s.name = $1 AND v.version = CASE WHEN $2 = 0 THEN s.current_version ELSE $2 END`, name, version).
		Scan(&out.Secret.ID, &out.Secret.Name, &out.Secret.Description, &out.Secret.OwnerID,
			&out.Secret.CurrentVersion, &out.Secret.CreatedBy, &out.Secret.UpdatedBy,
			&out.Secret.CreatedAt, &out.Secret.UpdatedAt, &out.Version, &ct, &out.CreatedAt, &out.Honeytoken)
	if err != nil {
		return SecretValue{}, MapError(err)
	}
	if out.Value, err = openOwned(ctx, db.Pool, kr, &out.Secret.OwnerID, SecretValueLocation(out.Secret.Name, out.Version), ct); err != nil {
		return SecretValue{}, err
	}
	return out, nil
}

// FindSecret returns the metadata of the secret called name (ErrNotFound).
func (db *DB) FindSecret(ctx context.Context, name string) (Secret, error) {
	s, err := scanSecret(db.Pool.QueryRow(ctx, `SELECT `+secretColumns+` FROM secrets WHERE name = $1 AND current_version > 0`, name))
	return s, MapError(err)
}

// ListSecrets returns up to limit secrets with a version, by name, after
// the name after (exclusive; empty: from the start).
func (db *DB) ListSecrets(ctx context.Context, after string, limit int) ([]Secret, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+secretColumns+` FROM secrets
		WHERE name > $1 AND current_version > 0 ORDER BY name LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Secret, error) { return scanSecret(r) })
}

// ListSecretVersions returns the stored versions of secret id, newest first.
func (db *DB) ListSecretVersions(ctx context.Context, secretID string) ([]SecretVersion, error) {
	rows, err := db.Pool.Query(ctx, `SELECT version, created_by, created_at FROM secret_versions
		WHERE secret_id = $1 ORDER BY version DESC`, secretID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (SecretVersion, error) {
		var v SecretVersion
		err := r.Scan(&v.Version, &v.CreatedBy, &v.CreatedAt)
		return v, err
	})
}

// LockSecret returns the secret called name locked FOR UPDATE until tx ends
// (ErrNotFound when there is none).
func LockSecret(ctx context.Context, tx pgx.Tx, name string) (Secret, error) {
	s, err := scanSecret(tx.QueryRow(ctx, `SELECT `+secretColumns+` FROM secrets WHERE name = $1 AND current_version > 0 FOR UPDATE`, name))
	return s, MapError(err)
}

// DeleteSecret removes secret id and all its versions.
func DeleteSecret(ctx context.Context, tx pgx.Tx, id string) error {
	_, err := tx.Exec(ctx, `DELETE FROM secrets WHERE id = $1`, id)
	return err
}

// UserRole returns profiles.role of user id; a user without a profile has
// role "user". A malformed or unknown id is ErrNotFound.
func (db *DB) UserRole(ctx context.Context, userID string) (string, error) {
	if _, err := uuid.Parse(userID); err != nil {
		return "", ErrNotFound
	}
	var role string
	err := db.Pool.QueryRow(ctx, `SELECT COALESCE(p.role, 'user') FROM users u LEFT JOIN profiles p ON p.id = u.id
		WHERE u.id = $1::uuid`, userID).Scan(&role)
	return role, MapError(err)
}

// SetHoneytoken marks the secret called name as a honeytoken, or clears
// the mark, in tx. A missing secret is ErrNotFound.
func SetHoneytoken(ctx context.Context, tx pgx.Tx, name string, on bool) error {
	tag, err := tx.Exec(ctx, `UPDATE secrets SET honeytoken = $2 WHERE name = $1 AND current_version > 0`, name, on)
	if err != nil {
		return MapError(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
