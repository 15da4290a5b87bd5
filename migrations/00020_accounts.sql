-- Accounts people run themselves: single-use tokens for password reset,
-- email confirmation and email change, and the durable outbox their mails
-- go through.
--
-- A token is never stored: its string is the keyring's MAC of the row id
-- (see server/auth/accounts.go), so the table holds only what the token is
-- for, and reading the table gives no usable link. A mail row holds the
-- template's data and, for links, the token row's id, never the token.

-- +goose Up
CREATE TABLE auth_tokens (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  kind        text NOT NULL CHECK (kind IN ('password_reset', 'email_confirm', 'email_change')),
  new_email   text,                          -- email_change: the address being confirmed
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz
);
CREATE INDEX auth_tokens_user_kind_idx ON auth_tokens (user_id, kind) WHERE used_at IS NULL;
CREATE INDEX auth_tokens_expires_at_idx ON auth_tokens (expires_at);

-- The outbox: written in the transaction of the change that causes the
-- mail, sent by one instance at a time (FOR UPDATE SKIP LOCKED), retried
-- with backoff until sent_at or failed_at is set.
CREATE TABLE mail_outbox (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  to_address       text NOT NULL,
  template         text NOT NULL,
  data             jsonb NOT NULL DEFAULT '{}'::jsonb,
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  sent_at          timestamptz,
  failed_at        timestamptz
);
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;

-- +goose Down
DROP TABLE mail_outbox;
DROP TABLE auth_tokens;
