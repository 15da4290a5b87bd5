package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// User is a row of users with its profile's role, as the API shows it.
// PasswordHash is never serialised.
type User struct {
	ID              string     `json:"id"`
	Email           *string    `json:"email"`
	PasswordHash    *string    `json:"-"`
	DiscordID       *string    `json:"discordId"`
	DiscordUsername *string    `json:"discordUsername"`
	Role            string     `json:"role"` // from profiles.role
	LastSignInAt    *time.Time `json:"lastSignInAt"`
	CreatedAt       time.Time  `json:"createdAt"`
	UpdatedAt       time.Time  `json:"updatedAt"`
}

// NewUser is what CreateUser needs.
type NewUser struct {
	Email        string
	PasswordHash string
	Role         string // profiles.role: user | developer | admin

	// DiscordID and DiscordUsername link a Discord account (OAuth users
	// may have no email and no password).
	DiscordID       string
	DiscordUsername string
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
	var email *string
	if nu.Email != "" {
		email = &nu.Email
	}
	var discordID, discordName *string
	if nu.DiscordID != "" {
		discordID, discordName = &nu.DiscordID, &nu.DiscordUsername
	}
	err := tx.QueryRow(ctx, `INSERT INTO users (email, password_hash, discord_id, discord_username) VALUES ($1, $2, $3, $4)
		RETURNING id, email, discord_id, discord_username, created_at, updated_at`, email, hash, discordID, discordName).
		Scan(&u.ID, &u.Email, &u.DiscordID, &u.DiscordUsername, &u.CreatedAt, &u.UpdatedAt)
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

const userColumns = `u.id, u.email, u.password_hash, u.discord_id, u.discord_username,
	coalesce(p.role, 'user'), u.last_sign_in_at, u.created_at, u.updated_at`

func scanUser(row pgx.Row) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Email, &u.PasswordHash, &u.DiscordID, &u.DiscordUsername,
		&u.Role, &u.LastSignInAt, &u.CreatedAt, &u.UpdatedAt)
	return u, MapError(err)
}

// UserByEmail returns the user whose email equals email, case-insensitively.
// An unknown email is ErrNotFound.
func (db *DB) UserByEmail(ctx context.Context, email string) (User, error) {
	return scanUser(db.Pool.QueryRow(ctx, `SELECT `+userColumns+`
		FROM users u LEFT JOIN profiles p ON p.id = u.id WHERE lower(u.email) = lower($1)`, email))
}

// UserByID returns a user by id; an unknown or malformed id is ErrNotFound.
func (db *DB) UserByID(ctx context.Context, id string) (User, error) {
	if !isUUID(id) {
		return User{}, ErrNotFound
	}
	return scanUser(db.Pool.QueryRow(ctx, `SELECT `+userColumns+`
		FROM users u LEFT JOIN profiles p ON p.id = u.id WHERE u.id = $1`, id))
}

// UserByDiscordID returns the user linked to a Discord account, or ErrNotFound.
func (db *DB) UserByDiscordID(ctx context.Context, discordID string) (User, error) {
	return scanUser(db.Pool.QueryRow(ctx, `SELECT `+userColumns+`
		FROM users u LEFT JOIN profiles p ON p.id = u.id WHERE u.discord_id = $1`, discordID))
}

// LinkDiscord links a Discord account to an existing user and records the
// sign-in. A Discord id already linked to another user is ErrConflict.
func (db *DB) LinkDiscord(ctx context.Context, userID, discordID, discordUsername string) (User, error) {
	_, err := db.Pool.Exec(ctx, `UPDATE users SET discord_id = $2, discord_username = $3,
		last_sign_in_at = now(), updated_at = now() WHERE id = $1`, userID, discordID, discordUsername)
	if err != nil {
		return User{}, MapError(err)
	}
	return db.UserByID(ctx, userID)
}

// Profile is a row of profiles as the API shows it: everything but the
// encrypted Stripe customer id.
type Profile struct {
	ID           string    `json:"id"`
	Username     *string   `json:"username"`
	DisplayName  *string   `json:"displayName"`
	AvatarURL    *string   `json:"avatarUrl"`
	Bio          *string   `json:"bio"`
	RobloxUserID *int64    `json:"robloxUserId"`
	Role         string    `json:"role"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// ProfileByUserID returns a user's profile, or ErrNotFound.
func (db *DB) ProfileByUserID(ctx context.Context, userID string) (Profile, error) {
	var p Profile
	if !isUUID(userID) {
		return p, ErrNotFound
	}
	err := db.Pool.QueryRow(ctx, `SELECT id, username, display_name, avatar_url, bio, roblox_user_id,
		role, created_at, updated_at FROM profiles WHERE id = $1`, userID).
		Scan(&p.ID, &p.Username, &p.DisplayName, &p.AvatarURL, &p.Bio, &p.RobloxUserID, &p.Role, &p.CreatedAt, &p.UpdatedAt)
	return p, MapError(err)
}

// isUUID reports whether s is a canonical UUID, so that malformed ids from
// clients are "not found" rather than a PostgreSQL cast error.
func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// ErrLastSignInMethod refuses unlinking Discord from an account without a
// password: it would be left with no way to sign in.
var ErrLastSignInMethod = errors.New("store: the account would have no way to sign in")

// SetDiscord links discordID (with its username) to userID when the user
// has no Discord account or the same one. ErrConflict when the Discord id
// is linked to another user, or the user to another Discord id;
// ErrNotFound for an unknown user. It does not count as a sign-in.
func (db *DB) SetDiscord(ctx context.Context, userID, discordID, discordUsername string) (User, error) {
	if !isUUID(userID) {
		return User{}, ErrNotFound
	}
	tag, err := db.Pool.Exec(ctx, `UPDATE users SET discord_id = $2, discord_username = $3, updated_at = now()
		WHERE id = $1 AND (discord_id IS NULL OR discord_id = $2)`, userID, discordID, discordUsername)
	if err != nil {
		return User{}, MapError(err)
	}
	if tag.RowsAffected() == 0 {
		if _, err := db.UserByID(ctx, userID); err != nil {
			return User{}, err
		}
		return User{}, fmt.Errorf("%w: linked to another Discord account", ErrConflict)
	}
	return db.UserByID(ctx, userID)
}

// UnsetDiscord unlinks the user's Discord account and returns the Discord
// id it had. ErrNotFound when none is linked (or no such user),
// ErrLastSignInMethod when the user has no password.
func (db *DB) UnsetDiscord(ctx context.Context, userID string) (string, error) {
	if !isUUID(userID) {
		return "", ErrNotFound
	}
	var old *string
	var hasPassword bool
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT discord_id, password_hash IS NOT NULL FROM users WHERE id = $1 FOR UPDATE`, userID).
			Scan(&old, &hasPassword); err != nil {
			return err
		}
		switch {
		case old == nil:
			return ErrNotFound
		case !hasPassword:
			return ErrLastSignInMethod
		}
		_, err := tx.Exec(ctx, `UPDATE users SET discord_id = NULL, discord_username = NULL, updated_at = now() WHERE id = $1`, userID)
		return err
	})
	if err != nil {
		return "", MapError(err)
	}
	return *old, nil
}
