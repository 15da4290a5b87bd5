package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Alert is a row of alerts_outbox.
type Alert struct {
	ID       int64
	EventKey string
	Kind     string
	Message  string
	Attempts int
}

// EnqueueAlert adds an alert to the outbox unless one with the same event
// key is there already (several instances seeing one event); added says
// whether this call added it.
func (db *DB) EnqueueAlert(ctx context.Context, a Alert) (added bool, err error) {
	tag, err := db.Pool.Exec(ctx, `INSERT INTO alerts_outbox (event_key, kind, message) VALUES ($1, $2, $3)
		ON CONFLICT (event_key) DO NOTHING`, a.EventKey, a.Kind, a.Message)
	if err != nil {
		return false, MapError(err)
	}
	return tag.RowsAffected() == 1, nil
}

// ClaimAlerts takes up to n due, unsent alerts for lease: they are skipped
// by other instances (SKIP LOCKED while claiming, then the lease) until it
// runs out, and their attempts are counted.
func (db *DB) ClaimAlerts(ctx context.Context, n int, lease time.Duration) ([]Alert, error) {
	rows, err := db.Pool.Query(ctx, `WITH due AS (
			SELECT id FROM alerts_outbox WHERE sent_at IS NULL AND next_attempt_at <= now()
			ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
		)
		UPDATE alerts_outbox a SET attempts = a.attempts + 1, next_attempt_at = now() + $2::interval
		FROM due WHERE a.id = due.id
		RETURNING a.id, a.event_key, a.kind, a.message, a.attempts`, n, lease)
	if err != nil {
		return nil, MapError(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Alert, error) {
		var a Alert
		err := r.Scan(&a.ID, &a.EventKey, &a.Kind, &a.Message, &a.Attempts)
		return a, err
	})
	return out, MapError(err)
}

// AlertSent marks an alert delivered.
func (db *DB) AlertSent(ctx context.Context, id int64) error {
	_, err := db.Pool.Exec(ctx, `UPDATE alerts_outbox SET sent_at = now(), last_error = NULL WHERE id = $1`, id)
	return MapError(err)
}

// AlertFailed records a failed delivery; the alert is due again at retry.
func (db *DB) AlertFailed(ctx context.Context, id int64, reason string, retry time.Time) error {
	_, err := db.Pool.Exec(ctx, `UPDATE alerts_outbox SET last_error = $2, next_attempt_at = $3 WHERE id = $1`, id, reason, retry)
	return MapError(err)
}
