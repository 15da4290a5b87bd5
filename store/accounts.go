package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Kinds of auth_tokens rows.
const (
	TokenPasswordReset = "password_reset"
	TokenEmailConfirm  = "email_confirm"
	TokenEmailChange   = "email_change"
)

// ErrTokenUnusable is a token that is unknown, already used, expired, or
// of another kind: callers answer all of them alike.
var ErrTokenUnusable = errors.New("store: token unknown, used or expired")

// AuthToken is a row of auth_tokens: what a single-use token is for. The
// token string itself is never stored.
type AuthToken struct {
	ID        string
	UserID    string
	Kind      string
	NewEmail  *string
	ExpiresAt time.Time
}

// CreateAuthToken inserts a token row in tx and returns its id. Older
// unused tokens of the same user and kind are spent, so only the newest
// link works.
func CreateAuthToken(ctx context.Context, tx pgx.Tx, userID, kind, newEmail string, expiresAt time.Time) (string, error) {
	if _, err := tx.Exec(ctx, `UPDATE auth_tokens SET used_at = now()
		WHERE user_id = $1 AND kind = $2 AND used_at IS NULL`, userID, kind); err != nil {
		return "", err
	}
	var ne *string
	if newEmail != "" {
		ne = &newEmail
	}
	var id string
	err := tx.QueryRow(ctx, `INSERT INTO auth_tokens (user_id, kind, new_email, expires_at)
		VALUES ($1, $2, $3, $4) RETURNING id`, userID, kind, ne, expiresAt).Scan(&id)
	return id, err
}

// UseAuthToken spends the token id of one of kinds, if it is unused and
// unexpired at now (the service's clock, which also set its expiry), and
// runs fn with it in the same transaction: the token is spent only if fn
// succeeds. Anything else is ErrTokenUnusable.
func (db *DB) UseAuthToken(ctx context.Context, id string, kinds []string, now time.Time, fn func(pgx.Tx, AuthToken) error) error {
	if !isUUID(id) {
		return ErrTokenUnusable
	}
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		var t AuthToken
		err := tx.QueryRow(ctx, `UPDATE auth_tokens SET used_at = now()
			WHERE id = $1 AND kind = ANY($2) AND used_at IS NULL AND expires_at > $3
			RETURNING id, user_id, kind, new_email, expires_at`, id, kinds, now).
			Scan(&t.ID, &t.UserID, &t.Kind, &t.NewEmail, &t.ExpiresAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrTokenUnusable
		}
		if err != nil {
			return err
		}
		return fn(tx, t)
	})
	if errors.Is(err, ErrTokenUnusable) {
		return err
	}
	return MapError(err)
}

// PruneAuthTokens deletes tokens that expired before cutoff, in a bounded
// batch.
func (db *DB) PruneAuthTokens(ctx context.Context, cutoff time.Time) (int64, error) {
	tag, err := db.Pool.Exec(ctx, `DELETE FROM auth_tokens WHERE id IN (
		SELECT id FROM auth_tokens WHERE expires_at < $1 LIMIT 1000)`, cutoff)
	return tag.RowsAffected(), MapError(err)
}

// NewMail is a mail to put in the outbox: a template and its data. The data
// is stored as it is (jsonb): never put a secret in it.
type NewMail struct {
	To       string
	Template string
	Data     map[string]any
}

// OutboxMail is a mail of the outbox being sent.
type OutboxMail struct {
	ID        string
	To        string
	Template  string
	Data      map[string]any
	Attempts  int
	CreatedAt time.Time
}

// EnqueueMail puts m in the outbox inside tx, so the mail exists if and only
// if the change that causes it commits.
func EnqueueMail(ctx context.Context, tx pgx.Tx, m NewMail) error {
	if m.Data == nil {
		m.Data = map[string]any{}
	}
	_, err := tx.Exec(ctx, `INSERT INTO mail_outbox (to_address, template, data) VALUES ($1, $2, $3)`, m.To, m.Template, m.Data)
	return err
}

// EnqueueMail puts m in the outbox on its own.
func (db *DB) EnqueueMail(ctx context.Context, m NewMail) error {
	return MapError(db.InTx(ctx, func(tx pgx.Tx) error { return EnqueueMail(ctx, tx, m) }))
}

// ClaimMail locks the outbox's next due mail in tx, skipping mails another
// instance holds. No due mail is ErrNotFound.
func ClaimMail(ctx context.Context, tx pgx.Tx) (OutboxMail, error) {
	var m OutboxMail
	err := tx.QueryRow(ctx, `SELECT id, to_address, template, data, attempts, created_at FROM mail_outbox
		WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
		ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED`).
		Scan(&m.ID, &m.To, &m.Template, &m.Data, &m.Attempts, &m.CreatedAt)
	return m, MapError(err)
}

// SetMailData replaces a claimed mail's data (a token minted on the first
// attempt is kept for the retries).
func SetMailData(ctx context.Context, tx pgx.Tx, id string, data map[string]any) error {
	_, err := tx.Exec(ctx, `UPDATE mail_outbox SET data = $2 WHERE id = $1`, id, data)
	return err
}

// MailSent marks a claimed mail sent (or, with skipped, done without
// sending: a reset asked for an address with no account).
func MailSent(ctx context.Context, tx pgx.Tx, id string, skipped bool) error {
	var note *string
	if skipped {
		s := "skipped: no account"
		note = &s
	}
	_, err := tx.Exec(ctx, `UPDATE mail_outbox SET sent_at = now(), attempts = attempts + 1, last_error = $2 WHERE id = $1`, id, note)
	return err
}

// MailAttemptFailed records a failed attempt of a claimed mail: retried at
// next, or given up (failed_at) when final.
func MailAttemptFailed(ctx context.Context, tx pgx.Tx, id, why string, next time.Time, final bool) error {
	if len(why) > 500 {
		why = why[:500]
	}
	_, err := tx.Exec(ctx, `UPDATE mail_outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3,
		failed_at = CASE WHEN $4 THEN now() END WHERE id = $1`, id, why, next, final)
	return err
}

// MailOutboxCounts is the outbox's backlog, for metrics and tests.
type MailOutboxCounts struct{ Pending, Sent, Failed int }

// MailOutboxCounts counts the outbox's mails by state.
func (db *DB) MailOutboxCounts(ctx context.Context) (MailOutboxCounts, error) {
	var c MailOutboxCounts
	err := db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE sent_at IS NULL AND failed_at IS NULL),
		count(*) FILTER (WHERE sent_at IS NOT NULL), count(*) FILTER (WHERE failed_at IS NOT NULL) FROM mail_outbox`).
		Scan(&c.Pending, &c.Sent, &c.Failed)
	return c, MapError(err)
}

// UserByEmailTx is UserByEmail inside tx.
func UserByEmailTx(ctx context.Context, tx pgx.Tx, email string) (User, error) {
	return scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+`
		FROM users u LEFT JOIN profiles p ON p.id = u.id WHERE lower(u.email) = lower($1)`, email))
}

// UserByIDTx is UserByID inside tx.
func UserByIDTx(ctx context.Context, tx pgx.Tx, id string) (User, error) {
	if !isUUID(id) {
		return User{}, ErrNotFound
	}
	return scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+`
		FROM users u LEFT JOIN profiles p ON p.id = u.id WHERE u.id = $1`, id))
}

// CreateUserThen is CreateUser followed by then in the same transaction
// (the confirmation mail of a registration).
func (db *DB) CreateUserThen(ctx context.Context, nu NewUser, then func(pgx.Tx, User) error) (User, error) {
	var u User
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		var err error
		if u, err = createUser(ctx, tx, nu); err != nil {
			return err
		}
		return then(tx, u)
	})
	return u, MapError(err)
}

// SetPassword replaces a user's password hash inside tx.
func SetPassword(ctx context.Context, tx pgx.Tx, userID, hash string) error {
	tag, err := tx.Exec(ctx, `UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1`, userID, hash)
	if err == nil && tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return err
}

// ConfirmEmail sets a user's email_confirmed_at, if not set yet.
func ConfirmEmail(ctx context.Context, tx pgx.Tx, userID string) error {
	_, err := tx.Exec(ctx, `UPDATE users SET email_confirmed_at = coalesce(email_confirmed_at, now()), updated_at = now() WHERE id = $1`, userID)
	return err
}

// ChangeEmail moves a user to a new, confirmed email inside tx. A taken
// address is ErrConflict.
func ChangeEmail(ctx context.Context, tx pgx.Tx, userID, email string) error {
	_, err := tx.Exec(ctx, `UPDATE users SET email = $2, email_confirmed_at = now(), updated_at = now() WHERE id = $1`, userID, email)
	return MapError(err)
}

// EmailConfirmed reports whether a user's email is confirmed.
func (db *DB) EmailConfirmed(ctx context.Context, userID string) (bool, error) {
	var ok bool
	err := db.Pool.QueryRow(ctx, `SELECT email_confirmed_at IS NOT NULL FROM users WHERE id = $1`, userID).Scan(&ok)
	return ok, MapError(err)
}

// RevokeUserSessionsTx revokes every active session of a user inside tx,
// except the chain keepFamily ("" keeps none).
func RevokeUserSessionsTx(ctx context.Context, tx pgx.Tx, userID, keepFamily, reason string) (int64, error) {
	q := `UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE user_id = $1 AND revoked_at IS NULL`
	args := []any{userID, reason}
	if keepFamily != "" {
		q += ` AND family_id <> $3`
		args = append(args, keepFamily)
	}
	tag, err := tx.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

// ProfileUpdate is a change of a user's own profile; nil fields stay.
type ProfileUpdate struct {
	Username  *string
	AvatarURL *string
}

// UpdateProfile applies u to userID's profile and returns it. A taken
// username is ErrConflict.
func (db *DB) UpdateProfile(ctx context.Context, userID string, u ProfileUpdate) (Profile, error) {
	if !isUUID(userID) {
		return Profile{}, ErrNotFound
	}
	var p Profile
	err := db.Pool.QueryRow(ctx, `UPDATE profiles SET
			username = CASE WHEN $2 THEN $3 ELSE username END,
			avatar_url = CASE WHEN $4 THEN $5 ELSE avatar_url END,
			updated_at = now()
		WHERE id = $1
		RETURNING id, username, display_name, avatar_url, bio, roblox_user_id, role, created_at, updated_at`,
		userID, u.Username != nil, u.Username, u.AvatarURL != nil, u.AvatarURL).
		Scan(&p.ID, &p.Username, &p.DisplayName, &p.AvatarURL, &p.Bio, &p.RobloxUserID, &p.Role, &p.CreatedAt, &p.UpdatedAt)
	return p, MapError(err)
}

// SignedInSession is one sign-in of a user as the user sees it: a refresh
// chain, named by its family id, with where it started and when it was
// last refreshed.
type SignedInSession struct {
	ID         string    `json:"id"`
	UserAgent  *string   `json:"userAgent"`
	IP         *string   `json:"ip"`
	CreatedAt  time.Time `json:"createdAt"`
	LastUsedAt time.Time `json:"lastUsedAt"`
	ExpiresAt  time.Time `json:"expiresAt"`
	Current    bool      `json:"current"`
}

// ActiveSessions lists a user's chains that are neither revoked nor
// expired, newest use first; currentSession (a session row id) marks the
// caller's own.
func (db *DB) ActiveSessions(ctx context.Context, userID, currentSession string) ([]SignedInSession, error) {
	if !isUUID(userID) {
		return nil, nil
	}
	if !isUUID(currentSession) {
		currentSession = "00000000-0000-0000-0000-000000000000"
	}
	rows, err := db.Pool.Query(ctx, `SELECT s.family_id, s.user_agent, host(s.ip_address), f.started, s.created_at, s.expires_at,
			s.family_id = (SELECT family_id FROM sessions WHERE id = $2)
		FROM sessions s
		JOIN LATERAL (SELECT min(created_at) AS started FROM sessions WHERE family_id = s.family_id) f ON true
		WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.used_at IS NULL AND s.expires_at > now()
		ORDER BY s.created_at DESC, s.id`, userID, currentSession)
	if err != nil {
		return nil, MapError(err)
	}
	defer rows.Close()
	out := []SignedInSession{}
	for rows.Next() {
		var s SignedInSession
		var current *bool
		if err := rows.Scan(&s.ID, &s.UserAgent, &s.IP, &s.CreatedAt, &s.LastUsedAt, &s.ExpiresAt, &current); err != nil {
			return nil, MapError(err)
		}
		s.Current = current != nil && *current
		out = append(out, s)
	}
	return out, MapError(rows.Err())
}
