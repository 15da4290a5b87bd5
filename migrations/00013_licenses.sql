-- Licenses: one model over the two tables that hold them.
--
-- whitelist_users holds the licenses of the marketplace's whitelist systems
-- (kind 'system'); whitelist_entries those developers sell through their
-- API keys, per developer product (kind 'product'; Supabase's table of the
-- same name is imported into it as it is). Both now carry the same license
-- columns: a status (active, revoked, expired; an expiry in the past is
-- expired too), an optional expiry, an optional hardware id (encrypted,
-- with a blind index so the check compares it in SQL), and, for a license a
-- purchase issued, its sale and buyer. The view licenses is the one model
-- both feed; it leaves out every sensitive column.
--
-- A purchase issues a license of its own even when the player already has
-- one in that system or product (a buyer names the Roblox user freely, so a
-- purchase must never take over or re-key somebody else's license), so the
-- one-entry-per-player rule now holds only for entries made by hand or
-- imported (sale_id IS NULL); a sale issues at most one license (UNIQUE
-- sale_id), whichever of Stripe's deliveries gets there first.

-- +goose Up
ALTER TABLE whitelist_users
  ADD COLUMN status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked', 'expired')),
  ADD COLUMN hwid_bidx       bytea,
  ADD COLUMN sale_id         uuid UNIQUE REFERENCES sales(id),
  ADD COLUMN buyer_id        uuid REFERENCES users(id) ON DELETE SET NULL,
  ADD COLUMN revoked_at      timestamptz,
  ADD COLUMN revoked_reason  text,
  ADD COLUMN key_revealed_at timestamptz;
ALTER TABLE whitelist_users DROP CONSTRAINT whitelist_users_system_id_roblox_user_id_key;
CREATE UNIQUE INDEX whitelist_users_system_player_manual_key ON whitelist_users (system_id, roblox_user_id) WHERE sale_id IS NULL;
CREATE INDEX whitelist_users_system_player_idx ON whitelist_users (system_id, roblox_user_id);
CREATE INDEX whitelist_users_buyer_idx ON whitelist_users (buyer_id) WHERE buyer_id IS NOT NULL;

-- Imported statuses are kept as Supabase had them (documented there as
-- active | revoked | expired); the check treats anything but active as
-- not whitelisted.
ALTER TABLE whitelist_entries
  ADD COLUMN discord_id      text,
  ADD COLUMN hwid_bidx       bytea,
  ADD COLUMN sale_id         uuid UNIQUE REFERENCES sales(id),
  ADD COLUMN buyer_id        uuid REFERENCES users(id) ON DELETE SET NULL,
  ADD COLUMN revoked_at      timestamptz,
  ADD COLUMN revoked_reason  text,
  ADD COLUMN key_revealed_at timestamptz;
ALTER TABLE whitelist_entries DROP CONSTRAINT whitelist_entries_developer_product_id_roblox_user_id_key;
CREATE UNIQUE INDEX whitelist_entries_product_player_manual_key ON whitelist_entries (developer_product_id, roblox_user_id) WHERE sale_id IS NULL;
CREATE INDEX whitelist_entries_product_player_idx ON whitelist_entries (developer_product_id, roblox_user_id);
CREATE INDEX whitelist_entries_buyer_idx ON whitelist_entries (buyer_id) WHERE buyer_id IS NOT NULL;

-- A product may be linked to what its purchase licenses: a whitelist
-- system or a developer product, at most one.
ALTER TABLE products
  ADD COLUMN whitelist_system_id  uuid REFERENCES whitelist_systems(id) ON DELETE SET NULL,
  ADD COLUMN developer_product_id uuid REFERENCES developer_products(id) ON DELETE SET NULL,
  ADD CONSTRAINT products_one_license_target CHECK (num_nonnulls(whitelist_system_id, developer_product_id) <= 1);

-- Keyring.MAC("checkout_session", id): the success page finds its sale by
-- the Checkout Session id, which is the buyer browser's bearer secret; a
-- session pays for one sale.
ALTER TABLE sales ADD COLUMN stripe_session_hash bytea;
CREATE UNIQUE INDEX sales_stripe_session_hash_key ON sales (stripe_session_hash) WHERE stripe_session_hash IS NOT NULL;
CREATE INDEX sales_store_id_created_at_day_idx ON sales (store_id, created_at);

CREATE VIEW licenses AS
  SELECT u.id, 'system'::text AS kind, u.system_id, NULL::uuid AS developer_product_id, w.owner_id,
    u.roblox_user_id, u.discord_id,
    CASE WHEN u.status = 'active' AND u.expires_at <= now() THEN 'expired' ELSE u.status END AS status,
    u.expires_at, u.hwid IS NOT NULL AS hwid_bound, u.sale_id, u.buyer_id, u.revoked_at, u.revoked_reason,
    u.key_revealed_at, u.created_at
  FROM whitelist_users u JOIN whitelist_systems w ON w.id = u.system_id
  UNION ALL
  SELECT e.id, 'product'::text, NULL::uuid, e.developer_product_id, d.developer_id,
    e.roblox_user_id, e.discord_id,
    CASE WHEN e.status = 'active' AND e.expires_at <= now() THEN 'expired'
         WHEN e.status IN ('active', 'expired') THEN e.status ELSE 'revoked' END,
    e.expires_at, e.hwid IS NOT NULL, e.sale_id, e.buyer_id, e.revoked_at, e.revoked_reason,
    e.key_revealed_at, e.created_at
  FROM whitelist_entries e JOIN developer_products d ON d.id = e.developer_product_id;

-- Realtime: a license's buyer follows it on the whitelist topic (buyerId
-- routes it to them); developer products' licenses are announced too. The
-- hardware id's blind index joins the columns a re-encryption may change
-- without an announcement.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION vectabase_notify_whitelist_users() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  r whitelist_users;
  owner uuid;
  store uuid;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  SELECT w.owner_id, w.store_id INTO owner, store FROM whitelist_systems w WHERE w.id = r.system_id;
  IF NOT FOUND THEN
    owner := (vectabase_deleted_parent(r.system_id) ->> 'ownerId')::uuid;
    store := (vectabase_deleted_parent(r.system_id) ->> 'storeId')::uuid;
  END IF;
  PERFORM vectabase_notify_change(jsonb_build_object(
    'topic', 'whitelist', 'table', TG_TABLE_NAME, 'action', lower(TG_OP), 'id', r.id,
    'systemId', r.system_id, 'storeId', store, 'ownerId', owner, 'buyerId', r.buyer_id,
    'record', jsonb_build_object('id', r.id, 'systemId', r.system_id, 'robloxUserId', r.roblox_user_id,
      'robloxUsername', r.roblox_username, 'discordId', r.discord_id, 'expiresAt', r.expires_at,
      'status', r.status, 'saleId', r.sale_id, 'buyerId', r.buyer_id, 'revokedAt', r.revoked_at,
      'revokedReason', r.revoked_reason, 'keyRevealedAt', r.key_revealed_at, 'createdAt', r.created_at)));
  RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION vectabase_notify_products() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  r products;
  owner uuid;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  SELECT s.owner_id INTO owner FROM stores s WHERE s.id = r.store_id;
  IF NOT FOUND THEN
    owner := (vectabase_deleted_parent(r.store_id) ->> 'ownerId')::uuid;
  END IF;
  PERFORM vectabase_notify_change(jsonb_build_object(
    'topic', 'products', 'table', TG_TABLE_NAME, 'action', lower(TG_OP), 'id', r.id,
    'storeId', r.store_id, 'ownerId', owner,
    'public', r.is_active OR (TG_OP = 'UPDATE' AND OLD.is_active),
    'record', jsonb_build_object('id', r.id, 'storeId', r.store_id, 'name', r.name,
      'description', r.description, 'priceCents', r.price_cents, 'currency', r.currency,
      'robloxAssetId', r.roblox_asset_id, 'isActive', r.is_active, 'metadata', r.metadata,
      'whitelistSystemId', r.whitelist_system_id, 'developerProductId', r.developer_product_id,
      'createdAt', r.created_at, 'updatedAt', r.updated_at)));
  RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION vectabase_notify_whitelist_entries() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  r whitelist_entries;
  owner uuid;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  SELECT d.developer_id INTO owner FROM developer_products d WHERE d.id = r.developer_product_id;
  PERFORM vectabase_notify_change(jsonb_build_object(
    'topic', 'whitelist', 'table', TG_TABLE_NAME, 'action', lower(TG_OP), 'id', r.id,
    'productId', r.developer_product_id, 'ownerId', owner, 'buyerId', r.buyer_id,
    'record', jsonb_build_object('id', r.id, 'developerProductId', r.developer_product_id,
      'robloxUserId', r.roblox_user_id, 'discordId', r.discord_id, 'expiresAt', r.expires_at,
      'status', r.status, 'saleId', r.sale_id, 'buyerId', r.buyer_id, 'revokedAt', r.revoked_at,
      'revokedReason', r.revoked_reason, 'keyRevealedAt', r.key_revealed_at, 'createdAt', r.created_at)));
  RETURN NULL;
END;
$$;
-- +goose StatementEnd

DROP TRIGGER vectabase_realtime_update ON whitelist_users;
CREATE TRIGGER vectabase_realtime_update AFTER UPDATE ON whitelist_users
  FOR EACH ROW WHEN ((to_jsonb(OLD) - 'license_key' - 'license_key_bidx' - 'hwid' - 'hwid_bidx') IS DISTINCT FROM (to_jsonb(NEW) - 'license_key' - 'license_key_bidx' - 'hwid' - 'hwid_bidx'))
  EXECUTE FUNCTION vectabase_notify_whitelist_users();
CREATE TRIGGER vectabase_realtime AFTER INSERT OR DELETE ON whitelist_entries
  FOR EACH ROW EXECUTE FUNCTION vectabase_notify_whitelist_entries();
CREATE TRIGGER vectabase_realtime_update AFTER UPDATE ON whitelist_entries
  FOR EACH ROW WHEN ((to_jsonb(OLD) - 'license_key' - 'license_key_bidx' - 'hwid' - 'hwid_bidx') IS DISTINCT FROM (to_jsonb(NEW) - 'license_key' - 'license_key_bidx' - 'hwid' - 'hwid_bidx'))
  EXECUTE FUNCTION vectabase_notify_whitelist_entries();

-- +goose Down
DROP TRIGGER vectabase_realtime_update ON whitelist_entries;
DROP TRIGGER vectabase_realtime ON whitelist_entries;
DROP FUNCTION vectabase_notify_whitelist_entries();
DROP TRIGGER vectabase_realtime_update ON whitelist_users;
CREATE TRIGGER vectabase_realtime_update AFTER UPDATE ON whitelist_users
  FOR EACH ROW WHEN ((to_jsonb(OLD) - 'license_key' - 'license_key_bidx' - 'hwid') IS DISTINCT FROM (to_jsonb(NEW) - 'license_key' - 'license_key_bidx' - 'hwid'))
  EXECUTE FUNCTION vectabase_notify_whitelist_users();
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION vectabase_notify_whitelist_users() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  r whitelist_users;
  owner uuid;
  store uuid;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  SELECT w.owner_id, w.store_id INTO owner, store FROM whitelist_systems w WHERE w.id = r.system_id;
  IF NOT FOUND THEN
    owner := (vectabase_deleted_parent(r.system_id) ->> 'ownerId')::uuid;
    store := (vectabase_deleted_parent(r.system_id) ->> 'storeId')::uuid;
  END IF;
  PERFORM vectabase_notify_change(jsonb_build_object(
    'topic', 'whitelist', 'table', TG_TABLE_NAME, 'action', lower(TG_OP), 'id', r.id,
    'systemId', r.system_id, 'storeId', store, 'ownerId', owner,
    'record', jsonb_build_object('id', r.id, 'systemId', r.system_id, 'robloxUserId', r.roblox_user_id,
      'robloxUsername', r.roblox_username, 'discordId', r.discord_id, 'expiresAt', r.expires_at,
      'createdAt', r.created_at)));
  RETURN NULL;
END;
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION vectabase_notify_products() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  r products;
  owner uuid;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  SELECT s.owner_id INTO owner FROM stores s WHERE s.id = r.store_id;
  IF NOT FOUND THEN
    owner := (vectabase_deleted_parent(r.store_id) ->> 'ownerId')::uuid;
  END IF;
  PERFORM vectabase_notify_change(jsonb_build_object(
    'topic', 'products', 'table', TG_TABLE_NAME, 'action', lower(TG_OP), 'id', r.id,
    'storeId', r.store_id, 'ownerId', owner,
    'public', r.is_active OR (TG_OP = 'UPDATE' AND OLD.is_active),
    'record', jsonb_build_object('id', r.id, 'storeId', r.store_id, 'name', r.name,
      'description', r.description, 'priceCents', r.price_cents, 'currency', r.currency,
      'robloxAssetId', r.roblox_asset_id, 'isActive', r.is_active, 'metadata', r.metadata,
      'createdAt', r.created_at, 'updatedAt', r.updated_at)));
  RETURN NULL;
END;
$$;
-- +goose StatementEnd
DROP VIEW licenses;
DROP INDEX sales_store_id_created_at_day_idx;
DROP INDEX sales_stripe_session_hash_key;
ALTER TABLE sales DROP COLUMN stripe_session_hash;
ALTER TABLE products DROP CONSTRAINT products_one_license_target,
  DROP COLUMN developer_product_id, DROP COLUMN whitelist_system_id;
DROP INDEX whitelist_entries_buyer_idx;
DROP INDEX whitelist_entries_product_player_idx;
DROP INDEX whitelist_entries_product_player_manual_key;
DELETE FROM whitelist_entries WHERE sale_id IS NOT NULL;
ALTER TABLE whitelist_entries ADD CONSTRAINT whitelist_entries_developer_product_id_roblox_user_id_key UNIQUE (developer_product_id, roblox_user_id);
ALTER TABLE whitelist_entries DROP COLUMN key_revealed_at, DROP COLUMN revoked_reason, DROP COLUMN revoked_at,
  DROP COLUMN buyer_id, DROP COLUMN sale_id, DROP COLUMN hwid_bidx, DROP COLUMN discord_id;
DROP INDEX whitelist_users_buyer_idx;
DROP INDEX whitelist_users_system_player_idx;
DROP INDEX whitelist_users_system_player_manual_key;
DELETE FROM whitelist_users WHERE sale_id IS NOT NULL;
ALTER TABLE whitelist_users ADD CONSTRAINT whitelist_users_system_id_roblox_user_id_key UNIQUE (system_id, roblox_user_id);
ALTER TABLE whitelist_users DROP COLUMN key_revealed_at, DROP COLUMN revoked_reason, DROP COLUMN revoked_at,
  DROP COLUMN buyer_id, DROP COLUMN sale_id, DROP COLUMN hwid_bidx, DROP COLUMN status;
