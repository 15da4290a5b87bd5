-- Durable API-key request logs (store/requestlogspool.go): each serve
-- instance appends every request-log row to a local spool segment before
-- the request is answered. A segment's rows are numbered 1, 2, 3, ...; the
-- rows committed to api_request_logs are always a prefix of them, and this
-- table says how long that prefix is, updated in the same transaction as
-- the rows. A segment replayed after a crash inserts only the rows past
-- it, so replaying one twice inserts nothing the second time. A row is
-- deleted once its segment's file is gone.

-- +goose Up
CREATE TABLE api_request_log_segments (
  segment_id     uuid PRIMARY KEY,
  committed_seq  bigint NOT NULL CHECK (committed_seq >= 0),
  updated_at     timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE api_request_log_segments;
