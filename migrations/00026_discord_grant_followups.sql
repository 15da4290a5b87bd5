-- Discord role grants a seller can see and retry, and that tell the member
-- when the grant worker finishes them later: the interaction a grant was
-- owed to is kept with it (application id and token, the token a secret
-- encrypted by the keyring and bound to this row) until the grant is
-- finished or the token expires (Discord keeps it valid for 15 minutes).

-- +goose Up
ALTER TABLE bot_role_grants
  ADD COLUMN application_id    text,
  ADD COLUMN interaction_token bytea
    CONSTRAINT bot_role_grants_interaction_token_is_ciphertext
    CHECK (interaction_token IS NULL OR (length(interaction_token) >= 33 AND substring(interaction_token FROM 1 FOR 1) = '\x01'::bytea)),
  ADD COLUMN token_expires_at  timestamptz;

-- GET /api/discord/servers/:guildId/grants[?status]: newest first, paged.
CREATE INDEX bot_role_grants_server_page_idx ON bot_role_grants (discord_server_id, state, created_at DESC, id DESC);

-- +goose Down
DROP INDEX bot_role_grants_server_page_idx;
ALTER TABLE bot_role_grants
  DROP COLUMN token_expires_at,
  DROP COLUMN interaction_token,
  DROP COLUMN application_id;
