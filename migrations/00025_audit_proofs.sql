-- Audit proofs (vault/audit): an RFC 6962 Merkle tree over the audit rows,
-- kept as a compact range beside the chain head and moved in the same
-- statement as the append; the Ed25519 key that signs checkpoints (C2SP
-- signed notes), wrapped by the keyring; the checkpoints signed so far;
-- honeytoken secrets; and the alerts outbox that sends each alert once
-- across instances.

-- +goose Up
ALTER TABLE audit_chain_head
  ADD COLUMN tree_size  bigint  NOT NULL DEFAULT 0,
  ADD COLUMN tree_root  bytea   NOT NULL DEFAULT '',
  ADD COLUMN tree_range bytea[] NOT NULL DEFAULT '{}';

CREATE TABLE audit_signing_key (
  id            smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  origin        text NOT NULL,        -- the checkpoints' origin line and the note key name
  verifier_key  text NOT NULL,        -- note verifier key (public)
  -- Keyring ciphertext of the note signer key, bound to (audit_signing_key,
  -- private_key, 1); like every sensitive column it refuses anything
  -- without Tink's prefix.
  private_key   bytea NOT NULL CONSTRAINT audit_signing_key_private_key_is_ciphertext
                  CHECK (length(private_key) >= 33 AND substring(private_key FROM 1 FOR 1) = '\x01'::bytea),
  created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_checkpoints (
  tree_size   bigint PRIMARY KEY,
  root        bytea NOT NULL,
  note        text NOT NULL,          -- the signed checkpoint, as published
  created_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE secrets ADD COLUMN honeytoken boolean NOT NULL DEFAULT false;

CREATE TABLE alerts_outbox (
  id               bigserial PRIMARY KEY,
  event_key        text NOT NULL UNIQUE,   -- one alert per event, however many instances raise it
  kind             text NOT NULL,
  message          text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  sent_at          timestamptz,
  last_error       text
);
CREATE INDEX alerts_outbox_due_idx ON alerts_outbox (next_attempt_at) WHERE sent_at IS NULL;

-- Archived audit rows: each segment is a signed, encrypted file of rows
-- [first_index, first_index + row_count) of the chain, removed from
-- audit_logs in the transaction that records the segment.
CREATE TABLE audit_archive_segments (
  seq          integer PRIMARY KEY,
  first_id     bigint NOT NULL,
  last_id      bigint NOT NULL,
  first_index  bigint NOT NULL,
  row_count    bigint NOT NULL,
  last_hash    bytea NOT NULL,
  file         text NOT NULL,
  file_sha256  bytea NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE audit_archive_segments;
DROP TABLE alerts_outbox;
ALTER TABLE secrets DROP COLUMN honeytoken;
DROP TABLE audit_checkpoints;
DROP TABLE audit_signing_key;
ALTER TABLE audit_chain_head DROP COLUMN tree_range, DROP COLUMN tree_root, DROP COLUMN tree_size;
