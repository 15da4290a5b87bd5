package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// RateLimitWindow is the length of a rate-limit window.
const RateLimitWindow = time.Minute

// KeyUse is the result of presenting an API key: the live key it belongs to
// and the state of its rate-limit window after counting this request.
type KeyUse struct {
	KeyID       string
	DeveloperID string
	Scopes      []string
	Limit       int
	Count       int       // requests in this window, this one included
	ResetAt     time.Time // end of the window
	Now         time.Time // the database's clock, shared by every instance

	// Sub is the key's developer's newest subscription (nil: none), read
	// in the same statement as the key, so plan limits cost no round trip.
	// Limit above is the key's own; the caller caps it by the plan.
	Sub *Subscription
}

// Allowed reports whether this request is within the key's limit.
func (u KeyUse) Allowed() bool { return u.Count <= u.Limit }

// Remaining is how many more requests the window allows.
func (u KeyUse) Remaining() int { return max(u.Limit-u.Count, 0) }

// UseAPIKey finds the live (not revoked) key whose hash is keyHash and
// counts one request against its current window, in one statement and one
// round trip: the counter row is upserted atomically, so every server
// instance on the database shares it, and the window is taken from the
// database's clock. An unknown or revoked key is ErrNotFound.
//
// Concurrent uses of one key share one statement (keyUseBatcher): under
// load a busy key costs one counter update per batch, not per request.
func (m *Marketplace) UseAPIKey(ctx context.Context, keyHash []byte) (KeyUse, error) {
	u, _, err := m.uses.use(ctx, keyHash, nil)
	return u, err
}

// useAPIKeyBatch counts len(checks) uses of the key at once (Count is the
// counter after all of them) and answers the whitelist checks among them,
// in one statement. checks holds either no check at all (nil entries) or
// one per use.
func (m *Marketplace) useAPIKeyBatch(ctx context.Context, keyHash []byte, checks []*CheckQuery) (KeyUse, []CheckResult, error) {
	n := len(checks)
	if checks[0] == nil {
		u, err := scanKeyUse(m.db.Pool.QueryRow(ctx, `WITH `+useKeyCTEsN+` SELECT `+useKeyColumns+` FROM k, c`, keyHash, n))
		return u, nil, err
	}
	a := newCheckArrays(n)
	for i, q := range checks {
		a.set(i, q)
	}
	// The arrays go in through scalar subqueries so that the planner
	// cannot see their length: otherwise each call's custom plan (sized to
	// its batch) looks cheaper than the generic one and PostgreSQL plans
	// the statement anew on every call, which cost about 200µs against 45µs
	// to run it (TestCheckStatementKeepsAGenericPlan).
	rows, err := m.db.Pool.Query(ctx, checkStatement, append([]any{keyHash, n}, a.args()...)...)
	if err != nil {
		return KeyUse{}, nil, err
	}
	defer rows.Close()
	var u KeyUse
	out := make([]CheckResult, 0, n)
	for rows.Next() {
		var r CheckResult
		if u, err = scanKeyUse(rows, &r.ExpiresAt, &r.Whitelisted, &r.Reason); err != nil {
			return KeyUse{}, nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return KeyUse{}, nil, err
	}
	if len(out) == 0 {
		return KeyUse{}, nil, ErrNotFound
	}
	return u, out, nil
}

const useKeyCTEsN = `k AS (
			SELECT a.id, a.developer_id, a.scopes, a.rate_limit_per_minute, a.developer_product_id, s.plan, s.status, s.current_period_end
			FROM developer_api_keys a LEFT JOIN LATERAL (
				SELECT d.plan, d.status, d.current_period_end FROM developer_subscriptions d
				WHERE d.developer_id = a.developer_id ORDER BY d.updated_at DESC, d.id DESC LIMIT 1
			) s ON true
			WHERE a.key_hash = $1 AND a.revoked_at IS NULL
		), c AS (
			INSERT INTO api_rate_limits AS r (api_key_id, window_start, count)
			SELECT id, date_trunc('minute', now()), $2::int FROM k
			ON CONFLICT (api_key_id, window_start) DO UPDATE SET count = r.count + $2::int
			RETURNING count, window_start
		)`

const useKeyColumns = `k.id, k.developer_id, k.scopes, k.rate_limit_per_minute, c.count, c.window_start, now(), k.plan, k.status, k.current_period_end`

// scanKeyUse scans useKeyColumns and then extra.
func scanKeyUse(row pgx.Row, extra ...any) (KeyUse, error) {
	var u KeyUse
	var start time.Time
	var plan, status *string
	var periodEnd *time.Time
	err := row.Scan(append([]any{&u.KeyID, &u.DeveloperID, &u.Scopes, &u.Limit, &u.Count, &start, &u.Now, &plan, &status, &periodEnd}, extra...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, ErrNotFound
	}
	if err != nil {
		return u, err
	}
	u.ResetAt = start.Add(RateLimitWindow)
	if plan != nil && status != nil {
		u.Sub = &Subscription{Plan: *plan, Status: *status, CurrentPeriodEnd: periodEnd}
	}
	return u, nil
}

// PruneRateLimits deletes the counters of windows that have ended.
func (m *Marketplace) PruneRateLimits(ctx context.Context) error {
	_, err := m.db.Pool.Exec(ctx, `DELETE FROM api_rate_limits WHERE window_start < now() - interval '2 minutes'`)
	return err
}
