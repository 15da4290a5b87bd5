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

// ThrottleHit adds n (0: just read) to each bucket's counter for the window
// starting at windowStart (fixed windows: a counter from an older window
// starts over) and returns the counters, in the order of buckets. One
// statement, so every server instance sharing the database sees the same
// counts.
func (db *DB) ThrottleHit(ctx context.Context, buckets []string, windowStart time.Time, n int) ([]ThrottleHit, error) {
	if n == 0 {
		rows, err := db.Pool.Query(ctx, `SELECT b.bucket,
				CASE WHEN t.window_start = $2 THEN t.hits ELSE 0 END
			FROM unnest($1::text[]) WITH ORDINALITY AS b(bucket, ord)
			LEFT JOIN auth_throttle t ON t.bucket = b.bucket ORDER BY b.ord`, buckets, windowStart)
		return collectHits(rows, err, windowStart)
	}
	rows, err := db.Pool.Query(ctx, `INSERT INTO auth_throttle AS t (bucket, window_start, hits)
		SELECT b, $2, $3 FROM unnest($1::text[]) AS b
		ON CONFLICT (bucket) DO UPDATE SET
			hits = CASE WHEN t.window_start = EXCLUDED.window_start THEN t.hits + EXCLUDED.hits ELSE EXCLUDED.hits END,
			window_start = EXCLUDED.window_start
		RETURNING bucket, hits`, buckets, windowStart, n)
	hits, err := collectHits(rows, err, windowStart)
	if err != nil {
		return nil, err
	}
	// RETURNING order is not guaranteed: put them back in the caller's order.
	byName := make(map[string]ThrottleHit, len(hits))
	for _, h := range hits {
		byName[h.Bucket] = h
	}
	out := make([]ThrottleHit, len(buckets))
	for i, b := range buckets {
		out[i] = byName[b]
		out[i].Bucket = b
	}
	return out, nil
}

type rowsLike interface {
	Next() bool
	Scan(...any) error
	Err() error
	Close()
}

func collectHits[R rowsLike](rows R, err error, windowStart time.Time) ([]ThrottleHit, error) {
	if err != nil {
		return nil, MapError(err)
	}
	defer rows.Close()
	var out []ThrottleHit
	for rows.Next() {
		h := ThrottleHit{WindowStart: windowStart}
		if err := rows.Scan(&h.Bucket, &h.Hits); err != nil {
			return nil, MapError(err)
		}
		out = append(out, h)
	}
	return out, MapError(rows.Err())
}

// ThrottleReset forgets a bucket (an account's failures after a successful login).
func (db *DB) ThrottleReset(ctx context.Context, bucket string) error {
	_, err := db.Pool.Exec(ctx, `DELETE FROM auth_throttle WHERE bucket = $1`, bucket)
	return MapError(err)
}

// ThrottlePrune deletes counters whose window started before cutoff.
func (db *DB) ThrottlePrune(ctx context.Context, cutoff time.Time) error {
	_, err := db.Pool.Exec(ctx, `DELETE FROM auth_throttle WHERE window_start < $1`, cutoff)
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

// PruneOAuthStates deletes used states that have expired anyway.
func (db *DB) PruneOAuthStates(ctx context.Context, now time.Time) error {
	_, err := db.Pool.Exec(ctx, `DELETE FROM oauth_used_states WHERE expires_at < $1`, now)
	return MapError(err)
}
