package store

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// APIKey is a row of developer_api_keys without its hash: the key itself is
// never stored, only shown once when it is made.
type APIKey struct {
	ID                 string
	DeveloperID        string
	Name               string
	Prefix             string
	Scopes             []string
	RateLimitPerMinute int
	LastUsedAt         *time.Time
	RevokedAt          *time.Time
	CreatedAt          time.Time
}

// NewAPIKey is what CreateAPIKey stores: Hash is Keyring.MAC("api_key", key).
type NewAPIKey struct {
	DeveloperID        string
	Name               string
	Hash               []byte
	Prefix             string
	Scopes             []string
	RateLimitPerMinute int
}

const apiKeyColumns = `k.id, k.developer_id, k.name, k.key_prefix, k.scopes, k.rate_limit_per_minute, k.last_used_at, k.revoked_at, k.created_at`

func scanAPIKey(row pgx.Row) (APIKey, error) {
	var k APIKey
	err := row.Scan(&k.ID, &k.DeveloperID, &k.Name, &k.Prefix, &k.Scopes, &k.RateLimitPerMinute, &k.LastUsedAt, &k.RevokedAt, &k.CreatedAt)
	return k, err
}

func apiKeyCursor(k APIKey) Cursor { return Cursor{CreatedAt: k.CreatedAt, ID: uuid.MustParse(k.ID)} }

// CreateAPIKey stores a new developer API key.
func (m *Marketplace) CreateAPIKey(ctx context.Context, nk NewAPIKey) (APIKey, error) {
	scopes := nk.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	k, err := scanAPIKey(m.db.Pool.QueryRow(ctx, `INSERT INTO developer_api_keys AS k (developer_id, name, key_hash, key_prefix, scopes, rate_limit_per_minute)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+apiKeyColumns,
		nk.DeveloperID, nk.Name, nk.Hash, nk.Prefix, scopes, nk.RateLimitPerMinute))
	return k, MapError(err)
}

// GetAPIKey returns developerID's key id (revoked ones included).
func (m *Marketplace) GetAPIKey(ctx context.Context, developerID, id string) (APIKey, error) {
	k, err := scanAPIKey(m.db.Pool.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM developer_api_keys k WHERE k.id = $1 AND k.developer_id = $2`, id, developerID))
	return k, MapError(err)
}

// ListAPIKeys returns a page of developerID's keys that are not revoked,
// newest first.
func (m *Marketplace) ListAPIKeys(ctx context.Context, developerID string, p Page) ([]APIKey, *Cursor, error) {
	t, id := pageArgs(p)
	rows, err := m.db.Pool.Query(ctx, `SELECT `+apiKeyColumns+` FROM developer_api_keys k
		WHERE k.developer_id = $1 AND k.revoked_at IS NULL`+pageClause("k", 2), developerID, t, id, p.Limit+1)
	if err != nil {
		return nil, nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIKey, error) { return scanAPIKey(r) })
	if err != nil {
		return nil, nil, err
	}
	items, next := trimPage(out, p.Limit, apiKeyCursor)
	return items, next, nil
}

// UpdateAPIKey renames developerID's live key id or changes its scopes or
// limit (nil: unchanged).
func (m *Marketplace) UpdateAPIKey(ctx context.Context, developerID, id string, name *string, scopes []string, limit *int) (APIKey, error) {
	k, err := scanAPIKey(m.db.Pool.QueryRow(ctx, `UPDATE developer_api_keys AS k SET
			name = coalesce($3, k.name), scopes = coalesce($4, k.scopes),
			rate_limit_per_minute = coalesce($5, k.rate_limit_per_minute)
		WHERE k.id = $1 AND k.developer_id = $2 AND k.revoked_at IS NULL RETURNING `+apiKeyColumns,
		id, developerID, name, scopes, limit))
	return k, MapError(err)
}

// RevokeAPIKey revokes developerID's key id at once: every look-up checks
// revoked_at, and nothing caches keys. A key already revoked is ErrNotFound.
func (m *Marketplace) RevokeAPIKey(ctx context.Context, developerID, id string) error {
	tag, err := m.db.Pool.Exec(ctx, `UPDATE developer_api_keys SET revoked_at = now()
		WHERE id = $1 AND developer_id = $2 AND revoked_at IS NULL`, id, developerID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
