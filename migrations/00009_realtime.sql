-- Realtime: every committed change to the tables clients can subscribe to
-- is announced on the channel vectabase_changes, which each server instance
-- LISTENs on over a direct connection and fans out to its WebSocket clients.
--
-- A notification carries the topic, the action, the row id, the keys that
-- decide who may see the change and which filters it matches (store, owner,
-- system, buyer, product, public) and, when it fits, the record. Never a
-- sensitive column: each record lists its columns explicitly. PostgreSQL
-- delivers notifications only when the transaction commits, in commit order.
--
-- The owner of a product, sale or whitelisted player is looked up through
-- its store or system. When that parent is deleted in the same statement
-- (ON DELETE CASCADE), the parent row is already gone by the time the
-- child's trigger runs; so a BEFORE DELETE trigger on stores and
-- whitelist_systems notes each deleted parent's routing keys in a
-- transaction-local setting, where the child's trigger finds them.

-- +goose Up
-- The record (the row's columns under camelCase names, never a sensitive
-- one) rides along when the payload fits NOTIFY's 8000-byte limit, so each
-- event shows the row as that change left it; a larger row (a long
-- description, big metadata) is announced without it and the listening side
-- loads it by id.
-- +goose StatementBegin
CREATE FUNCTION vectabase_notify_change(payload jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  -- Nulls stay: stripping them would also rewrite the nulls inside a
  -- product's metadata.
  t text := payload::text;
BEGIN
  IF octet_length(t) > 7900 THEN
    t := (payload - 'record')::text;
  END IF;
  PERFORM pg_notify('vectabase_changes', t);
END;
$$;
-- +goose StatementEnd

-- vectabase_deleted_parent returns the routing keys a BEFORE DELETE trigger
-- noted for a parent row deleted earlier in this transaction, or NULL.
-- +goose StatementBegin
CREATE FUNCTION vectabase_deleted_parent(id uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT nullif(current_setting('vectabase.realtime_deleted_parents', true), '')::jsonb -> id::text;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION vectabase_note_deleted_parent() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  keys jsonb;
BEGIN
  IF TG_TABLE_NAME = 'whitelist_systems' THEN
    keys := jsonb_build_object('ownerId', OLD.owner_id, 'storeId', OLD.store_id);
  ELSE
    keys := jsonb_build_object('ownerId', OLD.owner_id);
  END IF;
  PERFORM set_config('vectabase.realtime_deleted_parents',
    (coalesce(nullif(current_setting('vectabase.realtime_deleted_parents', true), '')::jsonb, '{}'::jsonb)
      || jsonb_build_object(OLD.id::text, keys))::text,
    true);
  RETURN OLD;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION vectabase_notify_stores() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  r stores;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  PERFORM vectabase_notify_change(jsonb_build_object(
    'topic', 'stores', 'table', TG_TABLE_NAME, 'action', lower(TG_OP), 'id', r.id,
    'ownerId', r.owner_id,
    'record', jsonb_build_object('id', r.id, 'ownerId', r.owner_id, 'name', r.name, 'slug', r.slug,
      'description', r.description, 'logoUrl', r.logo_url, 'stripeOnboarded', r.stripe_onboarded,
      'commissionBps', r.commission_bps, 'createdAt', r.created_at, 'updatedAt', r.updated_at)));
  RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION vectabase_notify_products() RETURNS trigger
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
    -- Active products are public. A product that stops being active is
    -- announced publicly once more, so listings can drop it.
    'public', r.is_active OR (TG_OP = 'UPDATE' AND OLD.is_active),
    'record', jsonb_build_object('id', r.id, 'storeId', r.store_id, 'name', r.name,
      'description', r.description, 'priceCents', r.price_cents, 'currency', r.currency,
      'robloxAssetId', r.roblox_asset_id, 'isActive', r.is_active, 'metadata', r.metadata,
      'createdAt', r.created_at, 'updatedAt', r.updated_at)));
  RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION vectabase_notify_sales() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  r sales;
  owner uuid;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  SELECT s.owner_id INTO owner FROM stores s WHERE s.id = r.store_id;
  IF NOT FOUND THEN
    owner := (vectabase_deleted_parent(r.store_id) ->> 'ownerId')::uuid;
  END IF;
  PERFORM vectabase_notify_change(jsonb_build_object(
    'topic', 'sales', 'table', TG_TABLE_NAME, 'action', lower(TG_OP), 'id', r.id,
    'storeId', r.store_id, 'ownerId', owner, 'productId', r.product_id,
    'buyerId', r.buyer_id,
    'record', jsonb_build_object('id', r.id, 'productId', r.product_id, 'storeId', r.store_id,
      'buyerId', r.buyer_id, 'buyerEmail', r.buyer_email, 'robloxUserId', r.roblox_user_id,
      'amountCents', r.amount_cents, 'platformFeeCents', r.platform_fee_cents, 'currency', r.currency,
      'status', r.status, 'createdAt', r.created_at)));
  RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION vectabase_notify_whitelist_systems() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  r whitelist_systems;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  PERFORM vectabase_notify_change(jsonb_build_object(
    'topic', 'whitelist', 'table', TG_TABLE_NAME, 'action', lower(TG_OP), 'id', r.id,
    'systemId', r.id, 'storeId', r.store_id, 'ownerId', r.owner_id,
    'record', jsonb_build_object('id', r.id, 'ownerId', r.owner_id, 'storeId', r.store_id, 'name', r.name,
      'description', r.description, 'maxUsers', r.max_users, 'isActive', r.is_active,
      'createdAt', r.created_at)));
  RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION vectabase_notify_whitelist_users() RETURNS trigger
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

CREATE TRIGGER vectabase_realtime_parent BEFORE DELETE ON stores
  FOR EACH ROW EXECUTE FUNCTION vectabase_note_deleted_parent();
CREATE TRIGGER vectabase_realtime_parent BEFORE DELETE ON whitelist_systems
  FOR EACH ROW EXECUTE FUNCTION vectabase_note_deleted_parent();
-- An UPDATE that changes only sensitive columns (the key rotation worker
-- re-encrypting them, which leaves the plaintext as it was) announces
-- nothing: no subscriber could see a difference, and a rotation would
-- otherwise send one notification per re-encrypted row. (The Stripe blind
-- indexes are added by 00010; removing a key a row lacks is a no-op.)
-- migrations/realtime_test.go keeps this list in step with the policy.
CREATE TRIGGER vectabase_realtime AFTER INSERT OR DELETE ON stores
  FOR EACH ROW EXECUTE FUNCTION vectabase_notify_stores();
CREATE TRIGGER vectabase_realtime_update AFTER UPDATE ON stores
  FOR EACH ROW WHEN ((to_jsonb(OLD) - 'stripe_account_id' - 'stripe_account_bidx') IS DISTINCT FROM (to_jsonb(NEW) - 'stripe_account_id' - 'stripe_account_bidx'))
  EXECUTE FUNCTION vectabase_notify_stores();
CREATE TRIGGER vectabase_realtime AFTER INSERT OR DELETE ON products
  FOR EACH ROW EXECUTE FUNCTION vectabase_notify_products();
CREATE TRIGGER vectabase_realtime_update AFTER UPDATE ON products
  FOR EACH ROW WHEN ((to_jsonb(OLD) - 'download_url') IS DISTINCT FROM (to_jsonb(NEW) - 'download_url'))
  EXECUTE FUNCTION vectabase_notify_products();
CREATE TRIGGER vectabase_realtime AFTER INSERT OR DELETE ON sales
  FOR EACH ROW EXECUTE FUNCTION vectabase_notify_sales();
CREATE TRIGGER vectabase_realtime_update AFTER UPDATE ON sales
  FOR EACH ROW WHEN ((to_jsonb(OLD) - 'stripe_payment_intent_id' - 'stripe_payment_intent_bidx') IS DISTINCT FROM (to_jsonb(NEW) - 'stripe_payment_intent_id' - 'stripe_payment_intent_bidx'))
  EXECUTE FUNCTION vectabase_notify_sales();
CREATE TRIGGER vectabase_realtime AFTER INSERT OR DELETE ON whitelist_systems
  FOR EACH ROW EXECUTE FUNCTION vectabase_notify_whitelist_systems();
CREATE TRIGGER vectabase_realtime_update AFTER UPDATE ON whitelist_systems
  FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW)
  EXECUTE FUNCTION vectabase_notify_whitelist_systems();
CREATE TRIGGER vectabase_realtime AFTER INSERT OR DELETE ON whitelist_users
  FOR EACH ROW EXECUTE FUNCTION vectabase_notify_whitelist_users();
CREATE TRIGGER vectabase_realtime_update AFTER UPDATE ON whitelist_users
  FOR EACH ROW WHEN ((to_jsonb(OLD) - 'license_key' - 'license_key_bidx' - 'hwid') IS DISTINCT FROM (to_jsonb(NEW) - 'license_key' - 'license_key_bidx' - 'hwid'))
  EXECUTE FUNCTION vectabase_notify_whitelist_users();

-- +goose Down
DROP TRIGGER vectabase_realtime_update ON whitelist_users;
DROP TRIGGER vectabase_realtime_update ON whitelist_systems;
DROP TRIGGER vectabase_realtime_update ON sales;
DROP TRIGGER vectabase_realtime_update ON products;
DROP TRIGGER vectabase_realtime_update ON stores;
DROP TRIGGER vectabase_realtime ON whitelist_users;
DROP TRIGGER vectabase_realtime ON whitelist_systems;
DROP TRIGGER vectabase_realtime ON sales;
DROP TRIGGER vectabase_realtime ON products;
DROP TRIGGER vectabase_realtime ON stores;
DROP TRIGGER vectabase_realtime_parent ON whitelist_systems;
DROP TRIGGER vectabase_realtime_parent ON stores;
DROP FUNCTION vectabase_notify_whitelist_users();
DROP FUNCTION vectabase_notify_whitelist_systems();
DROP FUNCTION vectabase_notify_sales();
DROP FUNCTION vectabase_notify_products();
DROP FUNCTION vectabase_notify_stores();
DROP FUNCTION vectabase_note_deleted_parent();
DROP FUNCTION vectabase_deleted_parent(uuid);
DROP FUNCTION vectabase_notify_change(jsonb);
