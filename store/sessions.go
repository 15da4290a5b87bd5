package store

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Session is one link of a refresh-token chain (a row of sessions). The
// refresh token itself is never stored, only its keyed hash.
type Session struct {
	ID            string
	UserID        string
	FamilyID      string
	ParentID      *string
	IP            *netip.Addr
	UserAgent     *string
	CreatedAt     time.Time
	ExpiresAt     time.Time
	UsedAt        *time.Time
	RevokedAt     *time.Time
	RevokedReason *string
}

// NewSession is what CreateSession needs. FamilyID empty starts a new chain
// (a login); ParentID names the session this one succeeds (a refresh).
type NewSession struct {
	UserID    string
	FamilyID  string
	TokenHash []byte
	IP        string // invalid or empty: NULL
	UserAgent string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// SessionWithUser is a session together with its user (what a token and
// the refresh answer need).
type SessionWithUser struct {
	Session
	Email *string
	User  User
}

func ipArg(ip string) *string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil
	}
	s := a.Unmap().String()
	return &s
}

const sessionColumns = `s.id, s.user_id, s.family_id, s.parent_id, s.ip_address, s.user_agent,
	s.created_at, s.expires_at, s.used_at, s.revoked_at, s.revoked_reason`

func scanSession(row pgx.Row, extra ...any) (Session, error) {
	var s Session
	dest := append([]any{&s.ID, &s.UserID, &s.FamilyID, &s.ParentID, &s.IP, &s.UserAgent,
		&s.CreatedAt, &s.ExpiresAt, &s.UsedAt, &s.RevokedAt, &s.RevokedReason}, extra...)
	err := row.Scan(dest...)
	return s, MapError(err)
}

// SignIn is what a login records beside its new session: last_sign_in_at,
// a replacement password hash (NewHash, only if the stored one is still
// OldHash: the re-hash of an imported bcrypt hash), and a throttle counter
// to zero (the account's failures; updated rather than deleted, so the
// row is rewritten in place instead of deleted and inserted again at the
// next login).
type SignIn struct {
	NewHash, OldHash string
	ResetBucket      string
}

// CreateSession inserts the first session of a new chain (a login): its
// family id is its own id. With si, it also records the sign-in, in the same
// statement.
func (db *DB) CreateSession(ctx context.Context, ns NewSession, si *SignIn) (Session, error) {
	ua := truncateUA(ns.UserAgent)
	record := si != nil
	if si == nil {
		si = &SignIn{}
	}
	// Data-modifying CTEs run whether or not the outer query reads them.
	return scanSession(db.Pool.QueryRow(ctx, `WITH ids AS (SELECT gen_random_uuid() AS id),
		signin AS (
			UPDATE users SET last_sign_in_at = now(),
				password_hash = CASE WHEN $8 <> '' AND password_hash = $9 THEN $8 ELSE password_hash END,
				updated_at = CASE WHEN $8 <> '' THEN now() ELSE updated_at END
			WHERE id = $1 AND $7
		),
		reset AS (UPDATE auth_throttle SET hits = 0 WHERE bucket = $10 AND $7)
		INSERT INTO sessions AS s (id, user_id, family_id, refresh_token_hash, ip_address, user_agent, created_at, expires_at)
		SELECT ids.id, $1, ids.id, $2, $3::inet, $4, $5, $6 FROM ids
		RETURNING `+sessionColumns, ns.UserID, ns.TokenHash, ipArg(ns.IP), ua, ns.CreatedAt, ns.ExpiresAt,
		record, si.NewHash, si.OldHash, si.ResetBucket))
}

// truncateUA keeps user agents to a sane length: the column is free text
// from the client.
func truncateUA(ua string) *string {
	if ua == "" {
		return nil
	}
	if len(ua) > 512 {
		ua = ua[:512]
	}
	// PostgreSQL text holds neither NUL nor invalid UTF-8 (a cut may split a rune).
	ua = strings.ToValidUTF8(strings.ReplaceAll(ua, "\x00", ""), "")
	return &ua
}

// RotateSession is the fast path of a refresh: if the session whose token
// hash is oldHash is unused, unrevoked and unexpired at now, it marks it used
// and inserts its successor (same family, parent = old) with newHash, in one
// statement. It returns the successor and its user's email, or ErrNotFound
// when there is no such usable session (unknown, used, revoked or expired:
// the caller then looks closer with SessionForRefresh).
func (db *DB) RotateSession(ctx context.Context, oldHash []byte, ns NewSession) (SessionWithUser, error) {
	var out SessionWithUser
	u := &out.User
	// One statement, so the common refresh is one round trip.
	s, err := scanSession(db.Pool.QueryRow(ctx, `WITH old AS (
			UPDATE sessions SET used_at = $3
			WHERE refresh_token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $3
			RETURNING id, user_id, family_id
		), s AS (
			INSERT INTO sessions (user_id, family_id, parent_id, refresh_token_hash, ip_address, user_agent, created_at, expires_at)
			SELECT user_id, family_id, id, $2, $4::inet, $5, $3, $6 FROM old
			RETURNING *
		)
		SELECT `+sessionColumns+`, `+userColumns+`
		FROM s JOIN users u ON u.id = s.user_id LEFT JOIN profiles p ON p.id = u.id`,
		oldHash, ns.TokenHash, ns.CreatedAt, ipArg(ns.IP), truncateUA(ns.UserAgent), ns.ExpiresAt),
		&u.ID, &u.Email, &u.PasswordHash, &u.DiscordID, &u.DiscordUsername, &u.Role, &u.LastSignInAt, &u.CreatedAt, &u.UpdatedAt)
	out.Session = s
	out.Email = u.Email
	u.PasswordHash = nil // not needed beyond this layer
	return out, err
}

// RefreshOutcome is what SessionForRefresh found for a presented token.
type RefreshOutcome struct {
	Session   Session // the presented token's session
	Successor *SessionWithUser
	// Revoked reports that this call revoked the session's family.
	Revoked bool
}

// ErrSessionRevoked, ErrSessionExpired: the presented token's session can
// no longer be refreshed.
var (
	ErrSessionRevoked = errors.New("store: session revoked")
	ErrSessionExpired = errors.New("store: session expired")
)

// SessionForRefresh is the slow path of a refresh, for a token RotateSession
// did not accept. Under a row lock it looks at the session with tokenHash:
// unknown is ErrNotFound, revoked ErrSessionRevoked, expired
// ErrSessionExpired. A used session is either a tolerated concurrent
// refresh, when graceOK(usedAt) holds and its successor (found by
// successorHash) is still unused and unrevoked: the successor is returned;
// or a reuse: the whole family is revoked with reason and Revoked is set.
func (db *DB) SessionForRefresh(ctx context.Context, tokenHash, successorHash []byte, now time.Time,
	graceOK func(usedAt time.Time) bool, reason string) (RefreshOutcome, error) {
	var out RefreshOutcome
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		s, err := scanSession(tx.QueryRow(ctx, `SELECT `+sessionColumns+` FROM sessions s
			WHERE refresh_token_hash = $1 FOR UPDATE`, tokenHash))
		if err != nil {
			return err
		}
		out.Session = s
		switch {
		case s.RevokedAt != nil:
			return ErrSessionRevoked
		case s.UsedAt == nil && !s.ExpiresAt.After(now):
			return ErrSessionExpired
		case s.UsedAt == nil:
			// RotateSession raced with another refresh that has since
			// rolled back; let the caller retry the fast path.
			return nil
		}
		if graceOK(*s.UsedAt) {
			var succ SessionWithUser
			succ.Session, err = scanSession(tx.QueryRow(ctx, `SELECT `+sessionColumns+`, u.email
				FROM sessions s JOIN users u ON u.id = s.user_id
				WHERE s.refresh_token_hash = $1 AND s.parent_id = $2`, successorHash, s.ID), &succ.Email)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if err == nil && succ.UsedAt == nil && succ.RevokedAt == nil && succ.ExpiresAt.After(now) {
				out.Successor = &succ
				return nil
			}
		}
		if _, err := revokeFamily(ctx, tx, s.FamilyID, "", reason); err != nil {
			return err
		}
		out.Revoked = true
		return nil
	})
	return out, MapError(err)
}

func revokeFamily(ctx context.Context, tx pgx.Tx, familyID, userID, reason string) (int64, error) {
	q := `UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE family_id = $1 AND revoked_at IS NULL`
	args := []any{familyID, reason}
	if userID != "" {
		q += ` AND user_id = $3`
		args = append(args, userID)
	}
	tag, err := tx.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

// RevokeFamily revokes every session of the chain familyID that belongs to
// userID (logout of one session). It returns how many rows it revoked.
func (db *DB) RevokeFamily(ctx context.Context, userID, familyID, reason string) (int64, error) {
	if !isUUID(userID) || !isUUID(familyID) {
		return 0, nil
	}
	var n int64
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		var err error
		n, err = revokeFamily(ctx, tx, familyID, userID, reason)
		return err
	})
	return n, MapError(err)
}

// RevokeUserSessions revokes every session of a user (logout everywhere).
func (db *DB) RevokeUserSessions(ctx context.Context, userID, reason string) (int64, error) {
	if !isUUID(userID) {
		return 0, nil
	}
	tag, err := db.Pool.Exec(ctx, `UPDATE sessions SET revoked_at = now(), revoked_reason = $2
		WHERE user_id = $1 AND revoked_at IS NULL`, userID, reason)
	return tag.RowsAffected(), MapError(err)
}

// SessionState is what the auth middleware checks on each request: whether
// the access token's session still stands, and the user's current role.
type SessionState struct {
	UserID  string
	Active  bool // not revoked
	Role    string
	Expires time.Time
}

// SessionStateByID reads a session's revocation state and its user's role
// in one primary-key look-up. An unknown id is ErrNotFound.
func (db *DB) SessionStateByID(ctx context.Context, sessionID string) (SessionState, error) {
	var st SessionState
	if !isUUID(sessionID) {
		return st, ErrNotFound
	}
	err := db.Pool.QueryRow(ctx, `SELECT s.user_id, s.revoked_at IS NULL, coalesce(p.role, 'user'), s.expires_at
		FROM sessions s LEFT JOIN profiles p ON p.id = s.user_id WHERE s.id = $1`, sessionID).
		Scan(&st.UserID, &st.Active, &st.Role, &st.Expires)
	return st, MapError(err)
}

// SessionByID returns one session, or ErrNotFound.
func (db *DB) SessionByID(ctx context.Context, id string) (Session, error) {
	if !isUUID(id) {
		return Session{}, ErrNotFound
	}
	return scanSession(db.Pool.QueryRow(ctx, `SELECT `+sessionColumns+` FROM sessions s WHERE s.id = $1`, id))
}

// SessionsOfUser lists a user's sessions, oldest first (for tests and admin views).
func (db *DB) SessionsOfUser(ctx context.Context, userID string) ([]Session, error) {
	rows, err := db.Pool.Query(ctx, `SELECT `+sessionColumns+` FROM sessions s WHERE s.user_id = $1 ORDER BY s.created_at, s.id`, userID)
	if err != nil {
		return nil, MapError(err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, MapError(rows.Err())
}

// SignedInAt is when the sign-in behind session id happened: the creation
// of the first session of its refresh chain. ErrNotFound for an unknown id.
func (db *DB) SignedInAt(ctx context.Context, sessionID string) (time.Time, error) {
	var at *time.Time
	if !isUUID(sessionID) {
		return time.Time{}, ErrNotFound
	}
	err := db.Pool.QueryRow(ctx, `SELECT min(f.created_at) FROM sessions s JOIN sessions f ON f.family_id = s.family_id
		WHERE s.id = $1`, sessionID).Scan(&at)
	if err == nil && at == nil {
		return time.Time{}, ErrNotFound
	}
	if err != nil {
		return time.Time{}, MapError(err)
	}
	return *at, nil
}
