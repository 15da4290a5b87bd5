package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// User is a row of users. PasswordHash is never serialised.
type User struct {
	ID              string
	Email           *string
	PasswordHash    *string `json:"-"`
	DiscordID       *string
	DiscordUsername *string
	Role            string // from profiles.role
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// NewUser is what CreateUser needs.
type NewUser struct {
	Email        string
	PasswordHash string
	Role         string // profiles.role: user | developer | admin
}

// CountUsers returns how many users exist.
func (db *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n)
	return n, err
}

// CreateUser inserts a user and its profile in one transaction. A taken
// email is ErrConflict.
func (db *DB) CreateUser(ctx context.Context, nu NewUser) (User, error) {
	var u User
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		var err error
		u, err = createUser(ctx, tx, nu)
		return err
	})
	return u, MapError(err)
}

func createUser(ctx context.Context, tx pgx.Tx, nu NewUser) (User, error) {
	role := nu.Role
	if role == "" {
		role = "user"
	}
	var hash *string
	if nu.PasswordHash != "" {
		hash = &nu.PasswordHash
	}
	u := User{Role: role}
	err := tx.QueryRow(ctx, `INSERT INTO users (email, password_hash) VALUES ($1, $2)
		RETURNING id, email, created_at, updated_at`, nu.Email, hash).
		Scan(&u.ID, &u.Email, &u.CreatedAt, &u.UpdatedAt)
	if err != nil {
		return u, err
	}
	_, err = tx.Exec(ctx, `INSERT INTO profiles (id, role) VALUES ($1, $2)`, u.ID, role)
	return u, err
}

// CreateFirstAdmin creates an admin user only when the users table is empty,
// atomically (two instances starting at once create one). It reports
// whether it created the user.
func (db *DB) CreateFirstAdmin(ctx context.Context, email, passwordHash string) (bool, error) {
	created := false
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		// Serialise concurrent first starts on a transaction-scoped lock,
		// which PgBouncer's transaction mode carries.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('vectabase.first_admin'))`); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users)`).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return nil
		}
		if _, err := createUser(ctx, tx, NewUser{Email: email, PasswordHash: passwordHash, Role: "admin"}); err != nil {
			return err
		}
		created = true
		return nil
	})
	return created, MapError(err)
}
