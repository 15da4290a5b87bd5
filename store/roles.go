package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// SetRoleByEmail sets profiles.role of the user whose email equals email
// (case-insensitively) and returns the user as it now is with the role it
// had before. A user without a profile row (imported ones may lack it) gets
// one. An unknown email is ErrNotFound. Callers check role; the access
// middleware reads profiles.role on every request, so the change holds from
// the user's next request on.
func (db *DB) SetRoleByEmail(ctx context.Context, email, role string) (u User, previous string, err error) {
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		// Lock the user's row so two role changes of one user queue up and
		// each sees the role the other left.
		var id string
		err := tx.QueryRow(ctx, `SELECT u.id, coalesce(p.role, 'user') FROM users u LEFT JOIN profiles p ON p.id = u.id
			WHERE lower(u.email) = lower($1) FOR UPDATE OF u`, email).Scan(&id, &previous)
		if err != nil {
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
