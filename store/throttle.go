package store

import (
	"context"
	"time"
)

// ThrottleHit is a fixed-window counter's state after a hit or a peek.
type ThrottleHit struct {
	Bucket      string
	Hits        int
	WindowStart time.Time
}

// ThrottleInc is one counter to bump (Inc 0: just read it) in the fixed
// window starting at WindowStart.
type ThrottleInc struct {
	Bucket      string
	Inc         int32
	WindowStart time.Time
}

// ThrottleHit adds n (0: just read) to each bucket's counter for the window
// starting at windowStart and returns the counters, in the order of
// buckets. See ThrottleAdd.
func (db *DB) ThrottleHit(ctx context.Context, buckets []string, windowStart time.Time, n int) ([]ThrottleHit, error) {
	incs := make([]ThrottleInc, len(buckets))
	for i, b := range buckets {
		incs[i] = ThrottleInc{Bucket: b, Inc: int32(n), WindowStart: windowStart}
	}
	return db.ThrottleAdd(ctx, incs)
}

// ThrottleAdd bumps each counter in its window (fixed windows: a counter
// from an older window starts over) and returns the counters in the order
// given. Buckets must be distinct. One statement, so every server instance
// sharing the database sees the same counts.
func (db *DB) ThrottleAdd(ctx context.Context, incs []ThrottleInc) ([]ThrottleHit, error) {
	buckets, ns, windows := throttleArgs(incs)
	var names []string
	var hits []int32
	err := db.Pool.QueryRow(ctx, `WITH t AS (`+throttleUpsert+`)
		SELECT coalesce(array_agg(bucket), '{}'), coalesce(array_agg(hits), '{}') FROM t`,
		buckets, ns, windows).Scan(&names, &hits)
	if err != nil {
		return nil, MapError(err)
	}
	return throttleHits(incs, names, hits), nil
}

// ThrottleAddUserByEmail is ThrottleAdd and UserByEmail in one statement
// (one round trip for a login's throttle check and user look-up). found is
// false for an unknown email. The counters are bumped whether or not the
// user exists.
func (db *DB) ThrottleAddUserByEmail(ctx context.Context, incs []ThrottleInc, email string) (hits []ThrottleHit, u User, found bool, err error) {
	buckets, ns, windows := throttleArgs(incs)
	var names []string
	var counts []int32
	var id *string
	var createdAt, updatedAt *time.Time
	err = db.Pool.QueryRow(ctx, `WITH t AS (`+throttleUpsert+`)
		SELECT coalesce((SELECT array_agg(bucket) FROM t), '{}'), coalesce((SELECT array_agg(hits) FROM t), '{}'),
			`+userColumns+`
		FROM (VALUES (1)) AS one(x)
		LEFT JOIN users u ON lower(u.email) = lower($4)
		LEFT JOIN profiles p ON p.id = u.id
		LIMIT 1`, buckets, ns, windows, email).Scan(&names, &counts,
		&id, &u.Email, &u.PasswordHash, &u.DiscordID, &u.DiscordUsername,
		&u.Role, &u.LastSignInAt, &createdAt, &updatedAt)
	if err != nil {
		return nil, User{}, false, MapError(err)
	}
	hits = throttleHits(incs, names, counts)
	if id == nil {
		return hits, User{}, false, nil
	}
	u.ID, u.CreatedAt, u.UpdatedAt = *id, *createdAt, *updatedAt
	return hits, u, true, nil
}

// throttleUpsert bumps the counters $1 (bucket), $2 (increment) and $3
// (window start) and returns each one's hits in its window. Counters only
// read still get a row (with 0 hits) so that one statement serves all; a
// row from an older window is left as it is.
const throttleUpsert = `INSERT INTO auth_throttle AS t (bucket, window_start, hits)
		SELECT b, w, n FROM unnest($1::text[], $2::int[], $3::timestamptz[]) AS x(b, n, w)
		ON CONFLICT (bucket) DO UPDATE SET
			hits = CASE WHEN t.window_start = EXCLUDED.window_start THEN t.hits + EXCLUDED.hits
				WHEN EXCLUDED.hits = 0 THEN t.hits ELSE EXCLUDED.hits END,
			window_start = CASE WHEN EXCLUDED.hits = 0 THEN t.window_start ELSE EXCLUDED.window_start END
		RETURNING bucket, CASE WHEN t.window_start = (SELECT w FROM unnest($1::text[], $3::timestamptz[]) AS y(b, w) WHERE y.b = t.bucket)
			THEN t.hits ELSE 0 END AS hits`

func throttleArgs(incs []ThrottleInc) (buckets []string, ns []int32, windows []time.Time) {
	buckets, ns, windows = make([]string, len(incs)), make([]int32, len(incs)), make([]time.Time, len(incs))
	for i, in := range incs {
		buckets[i], ns[i], windows[i] = in.Bucket, in.Inc, in.WindowStart
	}
	return buckets, ns, windows
}

// throttleHits puts the returned counters back in the caller's order
// (RETURNING order is not guaranteed).
func throttleHits(incs []ThrottleInc, names []string, hits []int32) []ThrottleHit {
	byName := make(map[string]int, len(names))
	for i, b := range names {
		if i < len(hits) {
			byName[b] = int(hits[i])
		}
	}
	out := make([]ThrottleHit, len(incs))
	for i, in := range incs {
		out[i] = ThrottleHit{Bucket: in.Bucket, Hits: byName[in.Bucket], WindowStart: in.WindowStart}
	}
	return out
}

// ThrottleReset forgets a bucket (an account's failures after a successful login).
func (db *DB) ThrottleReset(ctx context.Context, bucket string) error {
	_, err := db.Pool.Exec(ctx, `DELETE FROM auth_throttle WHERE bucket = $1`, bucket)
	return MapError(err)
}

// UseOAuthState records a state nonce as used. A nonce used before is
// ErrConflict: the state is being replayed.
func (db *DB) UseOAuthState(ctx context.Context, nonce string, expiresAt time.Time) error {
	tag, err := db.Pool.Exec(ctx, `INSERT INTO oauth_used_states (nonce, expires_at) VALUES ($1, $2)
		ON CONFLICT (nonce) DO NOTHING`, nonce, expiresAt)
	if err != nil {
		return MapError(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrConflict
	}
	return nil
}
