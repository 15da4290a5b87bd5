-- Scheduled backups across instances: every serve instance runs the
-- schedule, but one backup per period is made. The instance that holds the
-- session advisory lock (on the direct connection) looks here for a run in
-- the current period before it dumps, and records its own when done. The
-- row says when and which file; the file itself is in BACKUP_DIR.

-- +goose Up
CREATE TABLE backup_schedule_runs (
    backup_id   text PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    instance    text NOT NULL DEFAULT ''
);
CREATE INDEX backup_schedule_runs_started_idx ON backup_schedule_runs (started_at DESC);

-- +goose Down
DROP TABLE backup_schedule_runs;
