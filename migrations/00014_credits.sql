-- Developer subscriptions followed from Stripe, and obfuscation credits as a
-- ledger: grants (credit packs bought through checkout) and consumptions
-- (obfuscation_usage) beside the balance in obfuscation_credits, which
-- never goes below zero.

-- +goose Up

-- A product can be a credit pack: a completed sale of it grants this many
-- obfuscation credits to the buyer.
ALTER TABLE products ADD COLUMN credit_units integer CHECK (credit_units IS NULL OR credit_units > 0);

-- Keyring.BlindIndex("developer_subscriptions", "stripe_subscription_id", id):
-- Stripe's subscription and invoice events name the subscription, not the
-- developer. The importer fills it for imported rows (policies/sensitive_columns.json).
ALTER TABLE developer_subscriptions
  ADD COLUMN stripe_subscription_bidx bytea,
  ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX developer_subscriptions_bidx_idx ON developer_subscriptions (stripe_subscription_bidx) WHERE stripe_subscription_bidx IS NOT NULL;
-- The API-key look-up joins a key's developer to their newest subscription.
CREATE INDEX developer_subscriptions_developer_idx ON developer_subscriptions (developer_id, updated_at DESC);

-- A consumption through the API remembers its Idempotency-Key (per API
-- key), a hash of its body, the balance it left and the request it came
-- in, so a retry answers the same without consuming again.
ALTER TABLE obfuscation_usage
  ADD COLUMN idempotency_key text,
  ADD COLUMN request_hash text,
  ADD COLUMN balance_after integer,
  ADD COLUMN request_id text;
CREATE UNIQUE INDEX obfuscation_usage_idempotency_idx ON obfuscation_usage (api_key_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX obfuscation_usage_developer_idx ON obfuscation_usage (developer_id, created_at DESC, id DESC);

-- Credits granted: one row per credit-pack sale (sale_id UNIQUE: a sale
-- grants once however often its event arrives). audited_at is set once the
-- grant's audit row is committed; a redelivered event audits what is still
-- unaudited.
CREATE TABLE obfuscation_credit_grants (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  developer_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  units            integer NOT NULL CHECK (units > 0),
  source           text NOT NULL,
  sale_id          uuid UNIQUE REFERENCES sales(id) ON DELETE SET NULL,
  stripe_event_id  text,
  audited_at       timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX obfuscation_credit_grants_developer_idx ON obfuscation_credit_grants (developer_id, created_at DESC);
CREATE INDEX obfuscation_credit_grants_unaudited_idx ON obfuscation_credit_grants (stripe_event_id) WHERE audited_at IS NULL;

-- vectabase_consume_credits consumes p_units of p_developer's credits for
-- API key p_key in one call (one round trip, one short transaction):
--   * a usage row already holding (p_key, p_idem) is a retry: o_replayed,
--     with that row's usage id, balance and body hash (the caller compares
--     the hash), and nothing is consumed;
--   * otherwise the balance row is decremented only while it covers
--     p_units, re-checked on the newest row version after waiting for its
--     lock, so it never goes below zero; when it does not cover them,
--     o_usage_id is NULL (insufficient credits) unless a retry's first
--     request committed meanwhile, which is then replayed;
--   * the usage row is inserted last, with the balance it left. Every
--     consumption of a developer takes the balance row's lock before its
--     usage row, so a retry racing its first request waits for it on that
--     lock; one that still meets the first's usage row on insert (it read
--     before the first committed) gives the units back, under the same
--     lock, and replays.
-- +goose StatementBegin
CREATE FUNCTION vectabase_consume_credits(p_developer uuid, p_key uuid, p_idem text, p_hash text, p_units integer,
    p_sha text, p_request text,
    OUT o_usage_id uuid, OUT o_balance integer, OUT o_created_at timestamptz, OUT o_replayed boolean, OUT o_hash text)
LANGUAGE plpgsql AS $$
BEGIN
  o_replayed := true;
  IF p_idem IS NOT NULL THEN
    SELECT u.id, u.balance_after, u.created_at, u.request_hash INTO o_usage_id, o_balance, o_created_at, o_hash
    FROM obfuscation_usage u WHERE u.api_key_id = p_key AND u.idempotency_key = p_idem;
    IF FOUND THEN
      RETURN;
    END IF;
  END IF;
  o_replayed := false;
  o_hash := p_hash;
  UPDATE obfuscation_credits AS c SET balance = c.balance - p_units, updated_at = now()
  WHERE c.developer_id = p_developer AND c.balance >= p_units
  RETURNING c.balance INTO o_balance;
  IF NOT FOUND THEN
    IF p_idem IS NOT NULL THEN
      SELECT u.id, u.balance_after, u.created_at, u.request_hash INTO o_usage_id, o_balance, o_created_at, o_hash
      FROM obfuscation_usage u WHERE u.api_key_id = p_key AND u.idempotency_key = p_idem;
      IF FOUND THEN
        o_replayed := true;
        RETURN;
      END IF;
    END IF;
    o_usage_id := NULL;
    o_hash := p_hash;
    SELECT c.balance INTO o_balance FROM obfuscation_credits c WHERE c.developer_id = p_developer;
    o_balance := coalesce(o_balance, 0);
    RETURN;
  END IF;
  INSERT INTO obfuscation_usage AS u (developer_id, api_key_id, credits_used, script_sha256, idempotency_key, request_hash, request_id, balance_after)
  VALUES (p_developer, p_key, p_units, p_sha, p_idem, p_hash, p_request, o_balance)
  ON CONFLICT (api_key_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  RETURNING u.id, u.created_at INTO o_usage_id, o_created_at;
  IF o_usage_id IS NULL THEN
    UPDATE obfuscation_credits AS c SET balance = c.balance + p_units WHERE c.developer_id = p_developer;
    SELECT u.id, u.balance_after, u.created_at, u.request_hash INTO o_usage_id, o_balance, o_created_at, o_hash
    FROM obfuscation_usage u WHERE u.api_key_id = p_key AND u.idempotency_key = p_idem;
    o_replayed := true;
  END IF;
END
$$;
-- +goose StatementEnd

-- The realtime feed's product record carries every column but secrets
-- (00009): now creditUnits too. The trigger function is patched where its
-- record ends rather than replaced whole, so that columns other migrations
-- add to the record stay in it.
-- +goose StatementBegin
DO $$
DECLARE
  def text := pg_get_functiondef('vectabase_notify_products()'::regprocedure);
BEGIN
  IF position('''updatedAt'', r.updated_at)' IN def) = 0 THEN
    RAISE EXCEPTION 'vectabase_notify_products: the product record does not end with updatedAt';
  END IF;
  EXECUTE replace(def, '''updatedAt'', r.updated_at)', '''updatedAt'', r.updated_at, ''creditUnits'', r.credit_units)');
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
  EXECUTE replace(pg_get_functiondef('vectabase_notify_products()'::regprocedure),
    '''updatedAt'', r.updated_at, ''creditUnits'', r.credit_units)', '''updatedAt'', r.updated_at)');
END
$$;
-- +goose StatementEnd
DROP FUNCTION vectabase_consume_credits(uuid, uuid, text, text, integer, text, text);
DROP TABLE obfuscation_credit_grants;
DROP INDEX obfuscation_usage_developer_idx;
DROP INDEX obfuscation_usage_idempotency_idx;
ALTER TABLE obfuscation_usage DROP COLUMN request_id, DROP COLUMN balance_after, DROP COLUMN request_hash, DROP COLUMN idempotency_key;
DROP INDEX developer_subscriptions_developer_idx;
DROP INDEX developer_subscriptions_bidx_idx;
ALTER TABLE developer_subscriptions DROP COLUMN updated_at, DROP COLUMN stripe_subscription_bidx;
ALTER TABLE products DROP COLUMN credit_units;
