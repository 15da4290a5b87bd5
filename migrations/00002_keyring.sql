-- The keyring's own tables (contract section 4). Keysets are stored only
-- wrapped by the KEK; keyring_meta holds non-secret keyring metadata such
-- as the salt of a passphrase-derived KEK.

-- +goose Up
CREATE TABLE keyring_keysets (
  name        text PRIMARY KEY,
  purpose     text NOT NULL CHECK (purpose IN ('aead', 'prf')),
  wrapped     bytea NOT NULL,                 -- Tink EncryptedKeyset, ciphertext made by the KEK
  kek_backend text NOT NULL,                  -- local | vault
  kek_key_id  text NOT NULL DEFAULT '',       -- check value of a local key, or the transit key path
  version     bigint NOT NULL DEFAULT 1 CHECK (version > 0),  -- optimistic concurrency
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE keyring_meta (
  name       text PRIMARY KEY,
  value      bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE keyring_meta;
DROP TABLE keyring_keysets;
