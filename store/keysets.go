package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/policies"
)

var _ keyring.Store = (*Keysets)(nil)

// Keysets is the PostgreSQL keyring.Store: wrapped keysets in
// keyring_keysets and keyring metadata in keyring_meta (migration
// 00002_keyring.sql). Its statements are plain, transaction-scoped SQL, so
// it works behind PgBouncer in transaction mode.
type Keysets struct {
	pool *pgxpool.Pool
}

// NewKeysets returns the keyring store on pool.
func NewKeysets(pool *pgxpool.Pool) *Keysets { return &Keysets{pool: pool} }

const keysetColumns = `name, purpose, wrapped, kek_backend, kek_key_id, version, created_at, updated_at`

func scanKeyset(row pgx.Row) (keyring.StoredKeyset, error) {
	var ks keyring.StoredKeyset
	err := row.Scan(&ks.Name, &ks.Purpose, &ks.Wrapped, &ks.KEKBackend, &ks.KEKKeyID, &ks.Version, &ks.CreatedAt, &ks.UpdatedAt)
	return ks, err
}

// Keysets returns every stored keyset, ordered by name.
func (s *Keysets) Keysets(ctx context.Context) ([]keyring.StoredKeyset, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keysetColumns+` FROM keyring_keysets ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: list keysets: %w", err)
	}
	kss, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (keyring.StoredKeyset, error) { return scanKeyset(r) })
	if err != nil {
		return nil, fmt.Errorf("store: list keysets: %w", err)
	}
	return kss, nil
}

// CreateKeyset inserts ks unless a keyset of that name exists, then returns
// the stored row. Under concurrent starts the INSERT of the loser waits for
// the winner's commit and does nothing, and the SELECT then sees the
// winner's keyset, so every instance uses the same one.
func (s *Keysets) CreateKeyset(ctx context.Context, ks keyring.StoredKeyset) (keyring.StoredKeyset, error) {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO keyring_keysets (name, purpose, wrapped, kek_backend, kek_key_id, version)
		VALUES ($1, $2, $3, $4, $5, 1)
		ON CONFLICT (name) DO NOTHING`,
		ks.Name, ks.Purpose, ks.Wrapped, ks.KEKBackend, ks.KEKKeyID)
	if err != nil {
		return keyring.StoredKeyset{}, fmt.Errorf("store: create keyset %q: %w", ks.Name, err)
	}
	got, err := scanKeyset(s.pool.QueryRow(ctx, `SELECT `+keysetColumns+` FROM keyring_keysets WHERE name = $1`, ks.Name))
	if err != nil {
		return keyring.StoredKeyset{}, fmt.Errorf("store: read keyset %q: %w", ks.Name, err)
	}
	return got, nil
}

// UpdateKeysets replaces the given keysets in one transaction when each
// stored version equals the given Version, and increments the versions.
// A version mismatch rolls everything back with an error wrapping
// keyring.ErrConflict; a missing keyset with keyring.ErrNotFound.
func (s *Keysets) UpdateKeysets(ctx context.Context, kss []keyring.StoredKeyset) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, ks := range kss {
			tag, err := tx.Exec(ctx, `
				UPDATE keyring_keysets
				SET wrapped = $2, kek_backend = $3, kek_key_id = $4, version = version + 1, updated_at = now()
				WHERE name = $1 AND version = $5`,
				ks.Name, ks.Wrapped, ks.KEKBackend, ks.KEKKeyID, ks.Version)
			if err != nil {
				return fmt.Errorf("store: update keyset %q: %w", ks.Name, err)
			}
			if tag.RowsAffected() == 1 {
				continue
			}
			var stored int64
			err = tx.QueryRow(ctx, `SELECT version FROM keyring_keysets WHERE name = $1`, ks.Name).Scan(&stored)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("store: keyset %q: %w", ks.Name, keyring.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("store: update keyset %q: %w", ks.Name, err)
			}
			return fmt.Errorf("store: keyset %q at version %d, stored %d: %w", ks.Name, ks.Version, stored, keyring.ErrConflict)
		}
		return nil
	})
	return err
}

// GetOrCreateMeta returns the keyring_meta value under name, inserting
// value first when there is none; concurrent callers all get one value.
func (s *Keysets) GetOrCreateMeta(ctx context.Context, name string, value []byte) ([]byte, error) {
	_, err := s.pool.Exec(ctx, `INSERT INTO keyring_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, value)
	if err != nil {
		return nil, fmt.Errorf("store: keyring meta %q: %w", name, err)
	}
	var got []byte
	if err := s.pool.QueryRow(ctx, `SELECT value FROM keyring_meta WHERE name = $1`, name).Scan(&got); err != nil {
		return nil, fmt.Errorf("store: keyring meta %q: %w", name, err)
	}
	return got, nil
}

// Querier is what the counting functions need: a pool, a connection or a
// transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// CiphertextCount is how many values of one column were made by one key.
type CiphertextCount struct {
	Table  string `json:"table"`
	Column string `json:"column"`
	KeyID  uint32 `json:"keyId"`
	Count  int64  `json:"count"`
}

// CountCiphertextsByColumn counts the stored ciphertexts of each listed
// column per Tink key id (bytes 2 to 5 of a value whose first byte is 0x01).
// Values without a Tink prefix are not counted: no key can decrypt them.
// The result is ordered by table, column and key id.
func CountCiphertextsByColumn(ctx context.Context, q Querier, cols []policies.Column) ([]CiphertextCount, error) {
	var out []CiphertextCount
	for _, c := range cols {
		// Table and column names come from the embedded policy file, which
		// policies checks to be plain identifiers; they are quoted anyway.
		sql := fmt.Sprintf(`
			SELECT substring(%[2]s FROM 2 FOR 4), count(*)
			FROM %[1]s
			WHERE %[2]s IS NOT NULL AND substring(%[2]s FROM 1 FOR 1) = '\x01'::bytea AND length(%[2]s) >= 5
			GROUP BY 1`, pgx.Identifier{c.Table}.Sanitize(), pgx.Identifier{c.Column}.Sanitize())
		rows, err := q.Query(ctx, sql)
		if err != nil {
			return nil, fmt.Errorf("store: count ciphertexts in %s: %w", c, err)
		}
		counts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (CiphertextCount, error) {
			var prefix []byte
			cc := CiphertextCount{Table: c.Table, Column: c.Column}
			if err := r.Scan(&prefix, &cc.Count); err != nil {
				return cc, err
			}
			cc.KeyID = uint32(prefix[0])<<24 | uint32(prefix[1])<<16 | uint32(prefix[2])<<8 | uint32(prefix[3])
			return cc, nil
		})
		if err != nil {
			return nil, fmt.Errorf("store: count ciphertexts in %s: %w", c, err)
		}
		out = append(out, counts...)
	}
	slices.SortFunc(out, func(a, b CiphertextCount) int {
		if c := strings.Compare(a.Table+"."+a.Column, b.Table+"."+b.Column); c != 0 {
			return c
		}
		return int(int64(a.KeyID) - int64(b.KeyID))
	})
	return out, nil
}

// CountCiphertextsByKeyID counts the stored ciphertexts over every listed
// column per Tink key id: what `vectabase keys status`, GET /api/admin/keys
// and `keys destroy-old` (a key with no ciphertexts left) need.
func CountCiphertextsByKeyID(ctx context.Context, q Querier, cols []policies.Column) (map[uint32]int64, error) {
	counts, err := CountCiphertextsByColumn(ctx, q, cols)
	if err != nil {
		return nil, err
	}
	out := map[uint32]int64{}
	for _, c := range counts {
		out[c.KeyID] += c.Count
	}
	return out, nil
}
