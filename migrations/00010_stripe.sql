-- Stripe: the ledger of webhook events already processed, and blind indexes
-- beside the encrypted Stripe ids the webhook has to find rows by (the ids
-- themselves are ciphertext with random nonces, so they cannot be compared
-- in SQL).

-- +goose Up

-- One row per Stripe event id, inserted in the same transaction as the
-- event's effects: a redelivered event (even one arriving concurrently)
-- conflicts on the primary key and changes nothing.
CREATE TABLE stripe_events (
  id            text PRIMARY KEY,
  type          text NOT NULL,
  result        text NOT NULL,
  processed_at  timestamptz NOT NULL DEFAULT now()
);

-- Keyring.BlindIndex("stores", "stripe_account_id", id): account.updated
-- names the account, not the store.
ALTER TABLE stores ADD COLUMN stripe_account_bidx bytea;
CREATE INDEX stores_stripe_account_bidx_idx ON stores (stripe_account_bidx) WHERE stripe_account_bidx IS NOT NULL;

-- Keyring.BlindIndex("sales", "stripe_payment_intent_id", id): a refund
-- names the payment intent, not the sale. Not UNIQUE: sales imported from
-- Supabase may share a payment intent; the webhook checks before it records
-- a sale for one.
ALTER TABLE sales ADD COLUMN stripe_payment_intent_bidx bytea;
CREATE INDEX sales_stripe_payment_intent_bidx_idx ON sales (stripe_payment_intent_bidx) WHERE stripe_payment_intent_bidx IS NOT NULL;

-- +goose Down
DROP INDEX sales_stripe_payment_intent_bidx_idx;
ALTER TABLE sales DROP COLUMN stripe_payment_intent_bidx;
DROP INDEX stores_stripe_account_bidx_idx;
ALTER TABLE stores DROP COLUMN stripe_account_bidx;
DROP TABLE stripe_events;
