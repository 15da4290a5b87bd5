-- Retention (server/retention): the worker deletes old rows in small
-- batches, oldest first, so each batch finds its rows through an index
-- instead of scanning the table.

-- +goose Up
-- Expired sessions, oldest expiry first.
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
-- Revoked sessions (few, next to the live ones).
CREATE INDEX sessions_revoked_at_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
-- api_request_logs is append-only in time order: a BRIN index finds the
-- old pages for almost nothing on the hot insert path.
CREATE INDEX api_request_logs_created_at_brin ON api_request_logs USING brin (created_at);
CREATE INDEX stripe_events_processed_at_idx ON stripe_events (processed_at);
CREATE INDEX oauth_used_states_expires_at_idx ON oauth_used_states (expires_at);

-- +goose Down
DROP INDEX oauth_used_states_expires_at_idx;
DROP INDEX stripe_events_processed_at_idx;
DROP INDEX api_request_logs_created_at_brin;
DROP INDEX sessions_revoked_at_idx;
DROP INDEX sessions_expires_at_idx;
