package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Execer runs a statement: a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Retention targets: what PruneBatch can delete, by table.
const (
	PruneAPIRequestLogs = "api_request_logs" // rows older than the cutoff age
	PruneStripeEvents   = "stripe_events"    // processed (recorded) events older than the cutoff age
	PruneSessions       = "sessions"         // sessions expired or revoked longer ago than the cutoff age
	PruneAuthThrottle   = "auth_throttle"    // throttle counters whose window started longer ago than the cutoff age
	PruneOAuthStates    = "oauth_used_states"
	// PruneRequestLogSegments: committed-prefix marks of request-log spool
	// segments whose file is gone (a crash between removing the file and
	// forgetting its mark), untouched for longer than the cutoff age.
	PruneRequestLogSegments = "api_request_log_segments"
)

// pruneSQL deletes at most $2 rows older than now() - $1. Each picks its
// rows through an index (migration 00018), oldest first, and skips rows
// another transaction holds, so a batch never waits behind a request.
var pruneSQL = map[string]string{
	PruneAPIRequestLogs: `DELETE FROM api_request_logs WHERE id IN (
		SELECT id FROM api_request_logs WHERE created_at < now() - $1::interval LIMIT $2 FOR UPDATE SKIP LOCKED)`,
	PruneStripeEvents: `DELETE FROM stripe_events WHERE id IN (
		SELECT id FROM stripe_events WHERE processed_at < now() - $1::interval LIMIT $2 FOR UPDATE SKIP LOCKED)`,
	// A BitmapOr over the two indexes of migration 00018.
	PruneSessions: `DELETE FROM sessions WHERE id IN (
		SELECT id FROM sessions WHERE expires_at < now() - $1::interval OR revoked_at < now() - $1::interval
		LIMIT $2 FOR UPDATE SKIP LOCKED)`,
	PruneAuthThrottle: `DELETE FROM auth_throttle WHERE bucket IN (
		SELECT bucket FROM auth_throttle WHERE window_start < now() - $1::interval LIMIT $2 FOR UPDATE SKIP LOCKED)`,
	// A small table (one row per live spool segment): no index needed.
	PruneRequestLogSegments: `DELETE FROM api_request_log_segments WHERE segment_id IN (
		SELECT segment_id FROM api_request_log_segments WHERE updated_at < now() - $1::interval LIMIT $2 FOR UPDATE SKIP LOCKED)`,
	PruneOAuthStates: `DELETE FROM oauth_used_states WHERE nonce IN (
		SELECT nonce FROM oauth_used_states WHERE expires_at < now() - $1::interval LIMIT $2 FOR UPDATE SKIP LOCKED)`,
}

// PruneBatch deletes up to limit rows of target older than age (by the
// database's clock), in one short statement, and returns how many it
// deleted. Audit rows have no target: they are never pruned here.
func PruneBatch(ctx context.Context, q Execer, target string, age time.Duration, limit int) (int64, error) {
	sql, ok := pruneSQL[target]
	if !ok {
		return 0, fmt.Errorf("store: no retention target %q", target)
	}
	tag, err := q.Exec(ctx, sql, age, limit)
	if err != nil {
		return 0, MapError(err)
	}
	return tag.RowsAffected(), nil
}
