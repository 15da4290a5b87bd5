-- Key rotation (contract section 4): a rotation job per DEK or KEK rotation,
-- and one work unit per sensitive column holding the re-encryption worker's
-- progress. Workers claim a unit with FOR UPDATE SKIP LOCKED inside the
-- transaction that re-encrypts one batch and records the new cursor, so
-- progress survives a crash and no value is processed by two workers at once.

-- +goose Up
CREATE TABLE rotation_jobs (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  kind             text NOT NULL CHECK (kind IN ('dek', 'kek')),
  -- The data key every value must end up under (dek jobs); 0 for kek jobs.
  target_key_id    bigint NOT NULL DEFAULT 0 CHECK (target_key_id >= 0 AND target_key_id <= 4294967295),
  state            text NOT NULL CHECK (state IN ('running', 'done', 'failed', 'superseded')),
  requested_by     text NOT NULL,
  -- Values not under the target key when the job started (an estimate of
  -- the work; the final pass decides when the job is done).
  pending_at_start bigint NOT NULL DEFAULT 0,
  -- A pass is one scan of every unit. The job is done only after a pass
  -- that started at or after settle_until re-encrypted nothing: by then
  -- every instance has reloaded its keysets and writes under the target.
  pass             integer NOT NULL DEFAULT 1 CHECK (pass > 0),
  pass_started_at  timestamptz NOT NULL DEFAULT now(),
  settle_until     timestamptz NOT NULL DEFAULT now(),
  error            text NOT NULL DEFAULT '',
  created_at       timestamptz NOT NULL DEFAULT now(),
  finished_at      timestamptz
);
-- At most one DEK job runs at a time; a new rotation supersedes the old job.
CREATE UNIQUE INDEX rotation_jobs_one_running ON rotation_jobs (kind) WHERE state = 'running';
CREATE INDEX rotation_jobs_created_at_idx ON rotation_jobs (created_at DESC);

-- A unit is one key range of one column: a large table is split into
-- shards by the first byte of its uuid key, so several workers can
-- re-encrypt it at once; range_lo is inclusive, range_hi exclusive, NULL
-- unbounded.
CREATE TABLE rotation_progress (
  job_id            uuid NOT NULL REFERENCES rotation_jobs(id) ON DELETE CASCADE,
  table_name        text NOT NULL,
  column_name       text NOT NULL,
  shard             integer NOT NULL DEFAULT 0,
  range_lo          uuid,
  range_hi          uuid,
  -- The key of the last row handled in this pass, as text (id, or
  -- secret_id and version for secret_versions); NULL at the start of a pass.
  last_key          text[],
  pass              integer NOT NULL DEFAULT 1,
  done              boolean NOT NULL DEFAULT false,
  pass_reencrypted  bigint NOT NULL DEFAULT 0,
  reencrypted       bigint NOT NULL DEFAULT 0,
  -- Values that did not decrypt (a key the keyring no longer holds, or
  -- corrupt data): left as they are, counted, and reported.
  failed            bigint NOT NULL DEFAULT 0,
  updated_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, table_name, column_name, shard)
);

-- +goose Down
DROP TABLE rotation_progress;
DROP TABLE rotation_jobs;
