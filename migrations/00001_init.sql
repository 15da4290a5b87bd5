-- The platform's own tables (users, sessions, secrets, audit) and the
-- application tables carried over from Supabase with the same structure.
-- Columns that Supabase held in plaintext and that are listed in
-- policies/sensitive_columns.json are bytea here: Tink ciphertext whose
-- associated data is (table, column, row id). License keys also carry a keyed
-- blind index (<column>_bidx) for equality look-ups; developer API keys are
-- stored only as a keyed hash with a visible prefix.

-- +goose Up
CREATE TABLE users (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email               text,
  password_hash       text,                 -- argon2id (PHC string) or an imported bcrypt hash; NULL: OAuth only
  discord_id          text UNIQUE,
  discord_username    text,
  email_confirmed_at  timestamptz,
  last_sign_in_at     timestamptz,
  raw_user_meta_data  jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- A session is one link in a refresh-token chain: every refresh makes a new
-- row with the same family_id; presenting a used token revokes the family.
CREATE TABLE sessions (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id             uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  family_id           uuid NOT NULL,
  parent_id           uuid REFERENCES sessions(id) ON DELETE SET NULL,
  refresh_token_hash  bytea NOT NULL UNIQUE,  -- keyed hash of the 256-bit token; the token itself is never stored
  ip_address          inet,
  user_agent          text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  expires_at          timestamptz NOT NULL,
  used_at             timestamptz,            -- when this token was exchanged for its successor
  revoked_at          timestamptz,
  revoked_reason      text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_family_id_idx ON sessions (family_id);

-- The secrets vault: a secret is a name with versions; each version's value is
-- ciphertext bound to (secret_versions, value, "<name>@<version>").
CREATE TABLE secrets (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name             text NOT NULL UNIQUE,
  description      text NOT NULL DEFAULT '',
  owner_id         uuid REFERENCES users(id) ON DELETE SET NULL,
  current_version  integer NOT NULL DEFAULT 0,
  created_by       text NOT NULL,
  updated_by       text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE secret_versions (
  secret_id   uuid NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
  version     integer NOT NULL CHECK (version > 0),
  value       bytea NOT NULL,
  created_by  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (secret_id, version)
);

-- The audit trail. Rows form a hash chain: hash = MAC(prev_hash || row), the
-- MAC keyed by the keyring, so rewriting or deleting a row breaks the chain.
CREATE TABLE audit_logs (
  id             bigserial PRIMARY KEY,
  occurred_at    timestamptz NOT NULL DEFAULT now(),
  actor_type     text NOT NULL,           -- user | api_key | local-operator | anonymous | system
  actor_id       text,
  action         text NOT NULL,           -- e.g. secret.read, auth.login_failed, keys.rotate_dek
  resource_type  text,
  resource_id    text,
  result         text NOT NULL,           -- allowed | denied | success | failure
  ip_address     inet,
  request_id     text,
  details        jsonb NOT NULL DEFAULT '{}'::jsonb,
  prev_hash      bytea,
  hash           bytea
);
CREATE INDEX audit_logs_occurred_at_idx ON audit_logs (occurred_at);
CREATE INDEX audit_logs_actor_idx ON audit_logs (actor_type, actor_id);

-- Application tables ---------------------------------------------------------
CREATE TABLE profiles (
  id                 uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  username           text UNIQUE,
  display_name       text,
  avatar_url         text,
  bio                text,
  roblox_user_id     bigint,
  role               text NOT NULL DEFAULT 'user',
  stripe_customer_id bytea,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stores (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  owner_id           uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name               text NOT NULL,
  slug               text NOT NULL UNIQUE,
  description        text,
  logo_url           text,
  stripe_account_id  bytea,
  stripe_onboarded   boolean NOT NULL DEFAULT false,
  commission_bps     integer NOT NULL DEFAULT 500,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stores_owner_id_idx ON stores (owner_id);

CREATE TABLE products (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  store_id           uuid NOT NULL REFERENCES stores(id) ON DELETE CASCADE,
  name               text NOT NULL,
  description        text,
  price_cents        integer NOT NULL CHECK (price_cents >= 0),
  currency           text NOT NULL DEFAULT 'usd',
  roblox_asset_id    bigint,
  download_url       bytea,
  is_active          boolean NOT NULL DEFAULT true,
  metadata           jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_store_id_idx ON products (store_id);

CREATE TABLE sales (
  id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  product_id               uuid NOT NULL REFERENCES products(id),
  store_id                 uuid NOT NULL REFERENCES stores(id),
  buyer_id                 uuid REFERENCES users(id) ON DELETE SET NULL,
  buyer_email              text,
  roblox_user_id           bigint,
  amount_cents             integer NOT NULL,
  platform_fee_cents       integer NOT NULL DEFAULT 0,
  currency                 text NOT NULL DEFAULT 'usd',
  status                   text NOT NULL DEFAULT 'completed',
  stripe_payment_intent_id bytea,
  created_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sales_store_id_created_at_idx ON sales (store_id, created_at DESC, id);

CREATE TABLE payment_transactions (
  id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  sale_id                  uuid REFERENCES sales(id) ON DELETE SET NULL,
  store_id                 uuid REFERENCES stores(id) ON DELETE SET NULL,
  stripe_event_id          text UNIQUE,
  stripe_session_id        bytea,
  stripe_payment_intent_id bytea,
  type                     text NOT NULL,
  amount_cents             integer NOT NULL,
  currency                 text NOT NULL DEFAULT 'usd',
  status                   text NOT NULL,
  raw_event                jsonb,
  created_at               timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE whitelist_systems (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  owner_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  store_id     uuid REFERENCES stores(id) ON DELETE SET NULL,
  name         text NOT NULL,
  description  text,
  max_users    integer,
  is_active    boolean NOT NULL DEFAULT true,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX whitelist_systems_owner_id_idx ON whitelist_systems (owner_id);

CREATE TABLE whitelist_users (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  system_id           uuid NOT NULL REFERENCES whitelist_systems(id) ON DELETE CASCADE,
  roblox_user_id      bigint NOT NULL,
  roblox_username     text,
  discord_id          text,
  license_key         bytea NOT NULL,
  license_key_bidx    bytea NOT NULL,
  hwid                bytea,
  expires_at          timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (system_id, roblox_user_id)
);
CREATE INDEX whitelist_users_license_key_bidx_idx ON whitelist_users (license_key_bidx);

CREATE TABLE discord_servers (
  id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  guild_id             text NOT NULL UNIQUE,
  owner_id             uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  whitelist_system_id  uuid REFERENCES whitelist_systems(id) ON DELETE SET NULL,
  guild_name           text,
  log_channel_id       text,
  webhook_url          bytea,
  settings             jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bot_products (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  discord_server_id  uuid NOT NULL REFERENCES discord_servers(id) ON DELETE CASCADE,
  product_id         uuid NOT NULL REFERENCES products(id) ON DELETE CASCADE,
  role_id            text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  UNIQUE (discord_server_id, product_id)
);

CREATE TABLE bot_whitelisted_users (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  discord_server_id  uuid NOT NULL REFERENCES discord_servers(id) ON DELETE CASCADE,
  bot_product_id     uuid REFERENCES bot_products(id) ON DELETE SET NULL,
  discord_user_id    text NOT NULL,
  roblox_user_id     bigint,
  whitelisted_by     text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  UNIQUE (discord_server_id, discord_user_id, bot_product_id)
);

CREATE TABLE bot_command_permissions (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  discord_server_id  uuid NOT NULL REFERENCES discord_servers(id) ON DELETE CASCADE,
  command            text NOT NULL,
  role_id            text NOT NULL,
  allowed            boolean NOT NULL DEFAULT true,
  UNIQUE (discord_server_id, command, role_id)
);

CREATE TABLE developer_products (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  developer_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name         text NOT NULL,
  description  text,
  created_at   timestamptz NOT NULL DEFAULT now()
);

-- api_key of the Supabase table becomes key_hash (keyed hash of the whole
-- key) and key_prefix (the first characters, shown in lists).
CREATE TABLE developer_api_keys (
  id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  developer_id           uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  developer_product_id   uuid REFERENCES developer_products(id) ON DELETE SET NULL,
  name                   text NOT NULL,
  key_hash               bytea NOT NULL UNIQUE,
  key_prefix             text NOT NULL,
  scopes                 text[] NOT NULL DEFAULT '{}',
  rate_limit_per_minute  integer NOT NULL DEFAULT 60 CHECK (rate_limit_per_minute > 0),
  last_used_at           timestamptz,
  revoked_at             timestamptz,
  created_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX developer_api_keys_developer_id_idx ON developer_api_keys (developer_id);

CREATE TABLE developer_subscriptions (
  id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  developer_id            uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  plan                    text NOT NULL,
  status                  text NOT NULL,
  stripe_customer_id      bytea,
  stripe_subscription_id  bytea,
  current_period_end      timestamptz,
  created_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE obfuscation_credits (
  developer_id  uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  balance       integer NOT NULL DEFAULT 0 CHECK (balance >= 0),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE obfuscation_usage (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  developer_id  uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  api_key_id    uuid REFERENCES developer_api_keys(id) ON DELETE SET NULL,
  credits_used  integer NOT NULL,
  script_sha256 text,
  bytes_in      integer,
  created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE whitelist_entries (
  id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  developer_product_id  uuid NOT NULL REFERENCES developer_products(id) ON DELETE CASCADE,
  roblox_user_id        bigint NOT NULL,
  license_key           bytea NOT NULL,
  license_key_bidx      bytea NOT NULL,
  hwid                  bytea,
  status                text NOT NULL DEFAULT 'active',
  expires_at            timestamptz,
  created_at            timestamptz NOT NULL DEFAULT now(),
  UNIQUE (developer_product_id, roblox_user_id)
);
CREATE INDEX whitelist_entries_license_key_bidx_idx ON whitelist_entries (license_key_bidx);

CREATE TABLE api_request_logs (
  id            bigserial PRIMARY KEY,
  request_id    uuid NOT NULL,
  api_key_id    uuid REFERENCES developer_api_keys(id) ON DELETE SET NULL,
  method        text NOT NULL,
  path          text NOT NULL,
  status_code   integer NOT NULL,
  latency_ms    integer NOT NULL,
  ip_address    inet,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_request_logs_api_key_id_created_at_idx ON api_request_logs (api_key_id, created_at DESC);
CREATE INDEX api_request_logs_request_id_idx ON api_request_logs (request_id);

-- +goose Down
DROP TABLE api_request_logs;
DROP TABLE whitelist_entries;
DROP TABLE obfuscation_usage;
DROP TABLE obfuscation_credits;
DROP TABLE developer_subscriptions;
DROP TABLE developer_api_keys;
DROP TABLE developer_products;
DROP TABLE bot_command_permissions;
DROP TABLE bot_whitelisted_users;
DROP TABLE bot_products;
DROP TABLE discord_servers;
DROP TABLE whitelist_users;
DROP TABLE whitelist_systems;
DROP TABLE payment_transactions;
DROP TABLE sales;
DROP TABLE products;
DROP TABLE stores;
DROP TABLE profiles;
DROP TABLE audit_logs;
DROP TABLE secret_versions;
DROP TABLE secrets;
DROP TABLE sessions;
DROP TABLE users;
