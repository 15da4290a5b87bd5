-- Account deletion with crypto-shredding (issue 17).
--
-- user_keys holds one Tink AES-256-GCM keyset per user, serialised and
-- encrypted through the main keyring as a sensitive column (associated data
-- user_keys, keyset, user id), so DEK rotation and the KEK protect it like
-- every other sensitive value. A user's personal encrypted values carry an
-- inner layer under this keyset inside the keyring's ciphertext
-- (store/personal.go). Deleting the account deletes the row: what the inner
-- layer sealed can no longer be opened anywhere the row is gone.
--
-- shredded_users is the shredding ledger: the ids of deleted accounts and
-- when. It holds no personal data (a random id). A restore re-applies it
-- in the restore's own transaction (store/backup WithRestoreEpilogue), and
-- since it is a table every later backup carries it too. IF NOT EXISTS:
-- that epilogue creates both tables when it restores a backup older than
-- this migration, which then finds them in place.

-- +goose Up
CREATE TABLE IF NOT EXISTS user_keys (
  id          uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  keyset      bytea NOT NULL CONSTRAINT user_keys_keyset_is_ciphertext
                CHECK (length(keyset) >= 33 AND substring(keyset FROM 1 FOR 1) = '\x01'::bytea),
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS shredded_users (
  user_id      uuid PRIMARY KEY,
  shredded_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE shredded_users;
DROP TABLE user_keys;
