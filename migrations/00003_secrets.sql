-- The audit chain's head and the indexes the secrets vault and the admin
-- audit listing need (contract sections 3 and 5).
--
-- audit_chain_head holds one row: the id, hash and count of the last audit
-- row, MACed with a keyring key. It is updated in the same transaction as
-- the rows it covers, so deleting the newest audit rows (which leaves an
-- intact shorter chain) no longer matches the head, and the head cannot be
-- rewritten without the MAC key.

-- +goose Up
CREATE TABLE audit_chain_head (
  id          smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  last_id     bigint NOT NULL,
  row_count   bigint NOT NULL,
  last_hash   bytea NOT NULL,
  mac         bytea NOT NULL,       -- keyring MAC("audit_head", last_id || row_count || last_hash)
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_logs_action_idx ON audit_logs (action, id);
CREATE INDEX audit_logs_resource_idx ON audit_logs (resource_type, resource_id, id);

-- Secrets are listed by name, and owners' secrets found by owner.
CREATE INDEX secrets_owner_id_idx ON secrets (owner_id);

-- +goose Down
DROP INDEX secrets_owner_id_idx;
DROP INDEX audit_logs_resource_idx;
DROP INDEX audit_logs_action_idx;
DROP TABLE audit_chain_head;
