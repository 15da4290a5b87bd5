-- Marketplace and developer API: the shared per-key rate-limit counters and
-- the indexes that keep cursor paging (created_at DESC, id DESC) an index
-- scan for every list the API serves.

-- +goose Up

-- One row per API key and fixed one-minute window, bumped atomically with
-- INSERT ... ON CONFLICT DO UPDATE by every server instance, so a limit holds
-- across all of them. UNLOGGED: the counters are worth losing in a crash
-- (a window lasts a minute), and a transaction that writes only unlogged
-- tables writes no WAL, so the hot path never waits for a WAL flush.
CREATE UNLOGGED TABLE api_rate_limits (
  api_key_id    uuid NOT NULL,
  window_start  timestamptz NOT NULL,
  count         integer NOT NULL,
  PRIMARY KEY (api_key_id, window_start)
);

CREATE INDEX stores_owner_page_idx ON stores (owner_id, created_at DESC, id DESC);
CREATE INDEX products_store_page_idx ON products (store_id, created_at DESC, id DESC);
CREATE INDEX products_active_page_idx ON products (created_at DESC, id DESC) WHERE is_active;
CREATE INDEX sales_store_page_idx ON sales (store_id, created_at DESC, id DESC);
CREATE INDEX whitelist_systems_owner_page_idx ON whitelist_systems (owner_id, created_at DESC, id DESC);
CREATE INDEX whitelist_users_system_page_idx ON whitelist_users (system_id, created_at DESC, id DESC);
CREATE INDEX developer_api_keys_developer_page_idx ON developer_api_keys (developer_id, created_at DESC, id DESC);

-- +goose Down
DROP INDEX developer_api_keys_developer_page_idx;
DROP INDEX whitelist_users_system_page_idx;
DROP INDEX whitelist_systems_owner_page_idx;
DROP INDEX sales_store_page_idx;
DROP INDEX products_active_page_idx;
DROP INDEX products_store_page_idx;
DROP INDEX stores_owner_page_idx;
DROP TABLE api_rate_limits;
