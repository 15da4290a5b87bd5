package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// KeyUsage is one developer API key's traffic over a window, for the
// console's API-key page: how many requests it made and how many of them
// were refused with 429 because the key was over its per-minute limit.
type KeyUsage struct {
	KeyID              string     `json:"keyId"`
	DeveloperID        string     `json:"developerId"`
	Name               string     `json:"name"`
	Prefix             string     `json:"prefix"`
	RateLimitPerMinute int        `json:"rateLimitPerMinute"`
	Requests           int64      `json:"requests"`
	RateLimited        int64      `json:"rateLimited"`
	LastUsedAt         *time.Time `json:"lastUsedAt"`
	Revoked            bool       `json:"revoked"`
}

// TopAPIKeys returns at most limit keys by requests logged in
// api_request_logs since since, most used first (ties by key id).
func (m *Marketplace) TopAPIKeys(ctx context.Context, since time.Time, limit int) ([]KeyUsage, error) {
	rows, err := m.db.Pool.Query(ctx, `
		SELECT k.id, k.developer_id, k.name, k.key_prefix, k.rate_limit_per_minute,
		       count(*), count(*) FILTER (WHERE l.status_code = 429), k.last_used_at, k.revoked_at IS NOT NULL
		FROM api_request_logs l JOIN developer_api_keys k ON k.id = l.api_key_id
		WHERE l.created_at >= $1
		GROUP BY k.id
		ORDER BY count(*) DESC, k.id
		LIMIT $2`, since, limit)
	if err != nil {
		return nil, MapError(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (KeyUsage, error) {
		var u KeyUsage
		err := r.Scan(&u.KeyID, &u.DeveloperID, &u.Name, &u.Prefix, &u.RateLimitPerMinute,
			&u.Requests, &u.RateLimited, &u.LastUsedAt, &u.Revoked)
		return u, err
	})
	return out, MapError(err)
}

// ListUsers returns at most limit users ordered by creation (then id),
// starting after the user whose id is after ("" for the first page).
// Password hashes are not read.
func (db *DB) ListUsers(ctx context.Context, after string, limit int) ([]User, error) {
	if after != "" && !isUUID(after) {
		return nil, ErrNotFound
	}
	rows, err := db.Pool.Query(ctx, `SELECT u.id, u.email, NULL::text, u.discord_id, u.discord_username,
			coalesce(p.role, 'user'), u.last_sign_in_at, u.created_at, u.updated_at
		FROM users u LEFT JOIN profiles p ON p.id = u.id
		WHERE $1 = '' OR (u.created_at, u.id) > (SELECT created_at, id FROM users WHERE id::text = $1)
		ORDER BY u.created_at, u.id
		LIMIT $2`, after, limit)
	if err != nil {
		return nil, MapError(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) { return scanUser(r) })
	return out, MapError(err)
}

// SetRoleByID is SetRoleByEmail for a user id: it sets profiles.role and
// returns the user with the role it had before. An unknown id is
// ErrNotFound.
func (db *DB) SetRoleByID(ctx context.Context, id, role string) (u User, previous string, err error) {
	if !isUUID(id) {
		return User{}, "", ErrNotFound
	}
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT coalesce(p.role, 'user') FROM users u LEFT JOIN profiles p ON p.id = u.id
			WHERE u.id = $1 FOR UPDATE OF u`, id).Scan(&previous); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO profiles (id, role) VALUES ($1, $2)
			ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role, updated_at = now()`, id, role); err != nil {
			return err
		}
		u, err = scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+`
			FROM users u LEFT JOIN profiles p ON p.id = u.id WHERE u.id = $1`, id))
		return err
	})
	return u, previous, MapError(err)
}
