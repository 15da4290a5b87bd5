-- Discord bot set-up and delivery: a guild belongs to one store; each
-- interaction id is handled once (Discord may deliver one twice); role
-- changes are an outbox of intents committed with the change they belong
-- to, so the Discord call runs after the commit and can be retried.

-- +goose Up
ALTER TABLE discord_servers ADD COLUMN store_id uuid REFERENCES stores(id) ON DELETE CASCADE;
CREATE INDEX discord_servers_store_id_idx ON discord_servers (store_id);

-- Interaction ids already handled. Discord signs a timestamp that we accept
-- for five minutes, so rows older than that can go.
CREATE TABLE discord_interactions (
  id           text PRIMARY KEY,
  received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX discord_interactions_received_at_idx ON discord_interactions (received_at);

-- A role change the bot owes Discord. pending: not yet confirmed by
-- Discord; done: Discord confirmed; failed: given up and the change it
-- belonged to was rolled back (or, for a removal, left to the operator).
CREATE TABLE bot_role_grants (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  discord_server_id  uuid NOT NULL REFERENCES discord_servers(id) ON DELETE CASCADE,
  guild_id           text NOT NULL,
  discord_user_id    text NOT NULL,
  role_id            text NOT NULL,
  action             text NOT NULL CHECK (action IN ('add', 'remove')),
  state              text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
  attempts           integer NOT NULL DEFAULT 0,
  last_status        integer,
  command            text NOT NULL,
  interaction_id     text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bot_role_grants_pending_idx ON bot_role_grants (updated_at) WHERE state = 'pending';

-- +goose Down
DROP TABLE bot_role_grants;
DROP TABLE discord_interactions;
DROP INDEX discord_servers_store_id_idx;
ALTER TABLE discord_servers DROP COLUMN store_id;
