-- Authentication's own tables: the JWT signing keys (private keys only as
-- keyring ciphertext), database-backed throttling counters that hold across
-- server instances, and the Discord OAuth states already used (one-time use).

-- +goose Up
-- A signing key's id is also its JWT kid. The newest key signs; the two
-- newest are published in the JWKS and accepted, so a rotation overlaps.
CREATE TABLE jwt_signing_keys (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  algorithm    text NOT NULL DEFAULT 'EdDSA' CHECK (algorithm = 'EdDSA'),
  public_key   bytea NOT NULL CHECK (length(public_key) = 32),  -- raw Ed25519 public key: public by design
  -- Keyring ciphertext of the Ed25519 seed, bound to (jwt_signing_keys,
  -- private_key, id); like every sensitive column it refuses anything
  -- without Tink's prefix (0x01, key id) and room for nonce and tag.
  private_key  bytea NOT NULL CONSTRAINT jwt_signing_keys_private_key_is_ciphertext
                 CHECK (length(private_key) >= 33 AND substring(private_key FROM 1 FOR 1) = '\x01'::bytea),
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jwt_signing_keys_created_at_idx ON jwt_signing_keys (created_at DESC);

-- Fixed-window counters: bucket names a limit and its subject (an IP, or a
-- keyed hash of an email, never the email itself).
CREATE TABLE auth_throttle (
  bucket        text PRIMARY KEY,
  window_start  timestamptz NOT NULL,
  hits          integer NOT NULL
);
CREATE INDEX auth_throttle_window_start_idx ON auth_throttle (window_start);

-- Nonces of Discord OAuth states that have been consumed; a state is
-- accepted once. Rows may be deleted once expired.
CREATE TABLE oauth_used_states (
  nonce       text PRIMARY KEY,
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE oauth_used_states;
DROP TABLE auth_throttle;
DROP TABLE jwt_signing_keys;
