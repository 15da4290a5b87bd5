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

-- Every column of policies/sensitive_columns.json accepts only what the
-- keyring writes: Tink's 0x01 key-id prefix, a 12-byte IV and a 16-byte tag
-- at least (33 bytes for an empty value). A plaintext write, or a write that
-- bypassed the keyring, fails here. Blind indexes are 32-byte HMAC outputs.
-- store's TestSensitiveColumnsRefusePlaintext keeps this list in step with
-- the policy file.
ALTER TABLE profiles ADD CONSTRAINT profiles_stripe_customer_id_is_ciphertext
  CHECK (stripe_customer_id IS NULL OR (length(stripe_customer_id) >= 33 AND substring(stripe_customer_id FROM 1 FOR 1) = '\x01'::bytea));
ALTER TABLE stores ADD CONSTRAINT stores_stripe_account_id_is_ciphertext
  CHECK (stripe_account_id IS NULL OR (length(stripe_account_id) >= 33 AND substring(stripe_account_id FROM 1 FOR 1) = '\x01'::bytea));
ALTER TABLE products ADD CONSTRAINT products_download_url_is_ciphertext
  CHECK (download_url IS NULL OR (length(download_url) >= 33 AND substring(download_url FROM 1 FOR 1) = '\x01'::bytea));
ALTER TABLE sales ADD CONSTRAINT sales_stripe_payment_intent_id_is_ciphertext
  CHECK (stripe_payment_intent_id IS NULL OR (length(stripe_payment_intent_id) >= 33 AND substring(stripe_payment_intent_id FROM 1 FOR 1) = '\x01'::bytea));
ALTER TABLE payment_transactions ADD CONSTRAINT payment_transactions_stripe_session_id_is_ciphertext
  CHECK (stripe_session_id IS NULL OR (length(stripe_session_id) >= 33 AND substring(stripe_session_id FROM 1 FOR 1) = '\x01'::bytea));
ALTER TABLE payment_transactions ADD CONSTRAINT payment_transactions_stripe_payment_intent_id_is_ciphertext
  CHECK (stripe_payment_intent_id IS NULL OR (length(stripe_payment_intent_id) >= 33 AND substring(stripe_payment_intent_id FROM 1 FOR 1) = '\x01'::bytea));
ALTER TABLE whitelist_users ADD CONSTRAINT whitelist_users_license_key_is_ciphertext
  CHECK (license_key IS NULL OR (length(license_key) >= 33 AND substring(license_key FROM 1 FOR 1) = '\x01'::bytea));
ALTER TABLE whitelist_users ADD CONSTRAINT whitelist_users_license_key_bidx_is_blind_index
  CHECK (length(license_key_bidx) = 32);
ALTER TABLE whitelist_users ADD CONSTRAINT whitelist_users_hwid_is_ciphertext
  CHECK (hwid IS NULL OR (length(hwid) >= 33 AND substring(hwid FROM 1 FOR 1) = '\x01'::bytea));
ALTER TABLE discord_servers ADD CONSTRAINT discord_servers_webhook_url_is_ciphertext
  CHECK (webhook_url IS NULL OR (length(webhook_url) >= 33 AND substring(webhook_url FROM 1 FOR 1) = '\x01'::bytea));
ALTER TABLE developer_subscriptions ADD CONSTRAINT developer_subscriptions_stripe_customer_id_is_ciphertext
  CHECK (stripe_customer_id IS NULL OR (length(stripe_customer_id) >= 33 AND substring(stripe_customer_id FROM 1 FOR 1) = '\x01'::bytea));
ALTER TABLE developer_subscriptions ADD CONSTRAINT developer_subscriptions_stripe_subscription_id_is_ciphertext
  CHECK (stripe_subscription_id IS NULL OR (length(stripe_subscription_id) >= 33 AND substring(stripe_subscription_id FROM 1 FOR 1) = '\x01'::bytea));
ALTER TABLE whitelist_entries ADD CONSTRAINT whitelist_entries_license_key_is_ciphertext
  CHECK (license_key IS NULL OR (length(license_key) >= 33 AND substring(license_key FROM 1 FOR 1) = '\x01'::bytea));
ALTER TABLE whitelist_entries ADD CONSTRAINT whitelist_entries_license_key_bidx_is_blind_index
  CHECK (length(license_key_bidx) = 32);
ALTER TABLE whitelist_entries ADD CONSTRAINT whitelist_entries_hwid_is_ciphertext
  CHECK (hwid IS NULL OR (length(hwid) >= 33 AND substring(hwid FROM 1 FOR 1) = '\x01'::bytea));
ALTER TABLE secret_versions ADD CONSTRAINT secret_versions_value_is_ciphertext
  CHECK (value IS NULL OR (length(value) >= 33 AND substring(value FROM 1 FOR 1) = '\x01'::bytea));

-- +goose Down
ALTER TABLE secret_versions DROP CONSTRAINT secret_versions_value_is_ciphertext;
ALTER TABLE whitelist_entries DROP CONSTRAINT whitelist_entries_hwid_is_ciphertext;
ALTER TABLE whitelist_entries DROP CONSTRAINT whitelist_entries_license_key_bidx_is_blind_index;
ALTER TABLE whitelist_entries DROP CONSTRAINT whitelist_entries_license_key_is_ciphertext;
ALTER TABLE developer_subscriptions DROP CONSTRAINT developer_subscriptions_stripe_subscription_id_is_ciphertext;
ALTER TABLE developer_subscriptions DROP CONSTRAINT developer_subscriptions_stripe_customer_id_is_ciphertext;
ALTER TABLE discord_servers DROP CONSTRAINT discord_servers_webhook_url_is_ciphertext;
ALTER TABLE whitelist_users DROP CONSTRAINT whitelist_users_hwid_is_ciphertext;
ALTER TABLE whitelist_users DROP CONSTRAINT whitelist_users_license_key_bidx_is_blind_index;
ALTER TABLE whitelist_users DROP CONSTRAINT whitelist_users_license_key_is_ciphertext;
ALTER TABLE payment_transactions DROP CONSTRAINT payment_transactions_stripe_payment_intent_id_is_ciphertext;
ALTER TABLE payment_transactions DROP CONSTRAINT payment_transactions_stripe_session_id_is_ciphertext;
ALTER TABLE sales DROP CONSTRAINT sales_stripe_payment_intent_id_is_ciphertext;
ALTER TABLE products DROP CONSTRAINT products_download_url_is_ciphertext;
ALTER TABLE stores DROP CONSTRAINT stores_stripe_account_id_is_ciphertext;
ALTER TABLE profiles DROP CONSTRAINT profiles_stripe_customer_id_is_ciphertext;
DROP TABLE keyring_meta;
DROP TABLE keyring_keysets;
