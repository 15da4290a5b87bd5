-- Discord whitelist bot: every command looks a member's whitelist entry up
-- by (system, Discord id), so that is an index scan rather than a scan of
-- the whole system.

-- +goose Up
CREATE INDEX whitelist_users_system_discord_idx ON whitelist_users (system_id, discord_id) WHERE discord_id IS NOT NULL;

-- +goose Down
DROP INDEX whitelist_users_system_discord_idx;
