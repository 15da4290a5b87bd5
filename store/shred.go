package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Account deletion. ShredUser records the user in the shredding ledger
// (shredded_users), destroys the user's personal key (user_keys) and
// deletes or anonymises every row that holds the user's personal data, in
// one transaction. ShredReplaySQL gives the same statements for every id
// in the ledger, for a restore to run in its own transaction, so a backup
// made before a deletion never brings the user back.

// shredStatements take the ids being shredded as $1 (uuid[]). The order
// matters: rows are found through the user's email, Discord id and sales
// before the users row and its cascade go.
var shredStatements = []string{
	// Stripe's event payloads name the buyer (customer email and name).
	`UPDATE payment_transactions SET raw_event = NULL
		WHERE raw_event IS NOT NULL AND sale_id IN (SELECT id FROM sales WHERE buyer_id = ANY($1))`,
	// Sales stay, for the seller's accounting, with the buyer anonymised:
	// the sales the user made signed in, and those made as a guest with
	// the user's address.
	`UPDATE sales SET buyer_id = NULL, buyer_email = NULL, roblox_user_id = NULL
		WHERE buyer_id = ANY($1)
		   OR lower(buyer_email) IN (SELECT lower(email) FROM users WHERE id = ANY($1) AND email IS NOT NULL)`,
	// A seller's whitelist keeps the entry, not the buyer's Discord id.
	`UPDATE whitelist_users SET discord_id = NULL
		WHERE discord_id IN (SELECT discord_id FROM users WHERE id = ANY($1) AND discord_id IS NOT NULL)`,
	// Mails to the user, sent or not, hold the address.
	`DELETE FROM mail_outbox
		WHERE lower(to_address) IN (SELECT lower(email) FROM users WHERE id = ANY($1) AND email IS NOT NULL)`,
	// The IPs of the user's API calls.
	`DELETE FROM api_request_logs
		WHERE api_key_id IN (SELECT id FROM developer_api_keys WHERE developer_id = ANY($1))`,
	// A seller's stores that have sales stay, for the buyers' purchase
	// records, closed and anonymised: their products stop selling, the
	// store loses its owner, name, description, logo and Stripe account.
	// Stores without sales go with the account's cascade.
	`UPDATE products SET is_active = false, updated_at = now()
		WHERE is_active AND store_id IN (SELECT s.id FROM stores s WHERE s.owner_id = ANY($1) AND EXISTS (SELECT 1 FROM sales x WHERE x.store_id = s.id))`,
	`UPDATE stores s SET owner_id = NULL, name = 'Deleted store', slug = 'deleted-' || s.id::text, description = NULL, logo_url = NULL,
			stripe_account_id = NULL, stripe_onboarded = false, updated_at = now()
		WHERE s.owner_id = ANY($1) AND EXISTS (SELECT 1 FROM sales x WHERE x.store_id = s.id)`,
	// Secrets the user owns (owner_id would only be set to NULL).
	`DELETE FROM secrets WHERE owner_id = ANY($1)`,
	// The personal key: what it sealed is unreadable from here on.
	`DELETE FROM user_keys WHERE id = ANY($1)`,
	// The account; the cascade takes the profile, sessions (IPs, user
	// agents), tokens, stores without sales, whitelist systems, Discord
	// servers, developer keys, subscriptions and credits.
	`DELETE FROM users WHERE id = ANY($1)`,
}

// shredLicenseStatements revoke the licenses a purchase issued to the user
// and clear the hardware and Discord ids they were bound to (the licenses
// schema, migration 00013, which adds buyer_id and the revocation
// columns). They run before the users row goes (its cascade would only
// set buyer_id to NULL). Against a schema without those columns they are
// skipped, each in its own savepoint.
var shredLicenseStatements = []string{
	`UPDATE whitelist_users SET status = 'revoked', revoked_at = coalesce(revoked_at, now()),
		revoked_reason = coalesce(revoked_reason, 'account_deleted'), hwid = NULL, hwid_bidx = NULL, discord_id = NULL, buyer_id = NULL
		WHERE buyer_id = ANY($1)`,
	`UPDATE whitelist_entries SET status = 'revoked', revoked_at = coalesce(revoked_at, now()),
		revoked_reason = coalesce(revoked_reason, 'account_deleted'), hwid = NULL, hwid_bidx = NULL, discord_id = NULL, buyer_id = NULL
		WHERE buyer_id = ANY($1)`,
	// Sellers' Discord bots keep a record of whom they whitelisted and
	// which roles they gave, by Discord id: the user's records go (a
	// pending role change stays, so Discord is not left out of step).
	`DELETE FROM bot_whitelisted_users
		WHERE discord_user_id IN (SELECT discord_id FROM users WHERE id = ANY($1) AND discord_id IS NOT NULL)`,
	`DELETE FROM bot_role_grants
		WHERE state <> 'pending' AND discord_user_id IN (SELECT discord_id FROM users WHERE id = ANY($1) AND discord_id IS NOT NULL)`,
}

// shredSellerStatements keep what buyers paid for when its seller goes
// (the licenses schema, migration 00013; stores' blind index, 00010): a
// whitelist system or developer product holding a sold license loses its
// owner but stays, with its sold licenses, so buyers keep them (listed at
// /api/me/licenses with their keys); the licenses the seller made by hand
// in it go. They run after shredStatements' store updates and before the
// users row goes; like shredLicenseStatements, each is skipped against a
// schema without its columns.
var shredSellerStatements = []string{
	`UPDATE stores SET stripe_account_bidx = NULL WHERE owner_id IS NULL AND stripe_account_bidx IS NOT NULL AND cardinality($1::uuid[]) > 0`,
	`UPDATE whitelist_systems w SET owner_id = NULL, description = NULL
		WHERE w.owner_id = ANY($1) AND EXISTS (SELECT 1 FROM whitelist_users u WHERE u.system_id = w.id AND u.sale_id IS NOT NULL)`,
	`DELETE FROM whitelist_users u USING whitelist_systems w
		WHERE w.id = u.system_id AND w.owner_id IS NULL AND u.sale_id IS NULL AND cardinality($1::uuid[]) > 0`,
	`UPDATE developer_products d SET developer_id = NULL, description = NULL
		WHERE d.developer_id = ANY($1) AND EXISTS (SELECT 1 FROM whitelist_entries e WHERE e.developer_product_id = d.id AND e.sale_id IS NOT NULL)`,
	`DELETE FROM whitelist_entries e USING developer_products d
		WHERE d.id = e.developer_product_id AND d.developer_id IS NULL AND e.sale_id IS NULL AND cardinality($1::uuid[]) > 0`,
}

// shredSellerSplit is where shredSellerStatements run: just before the
// users row goes, after the stores are anonymised.
const shredSellerSplit = "DELETE FROM users"

// execIfSchemaHas runs q in a savepoint, skipping it when the schema lacks
// a table or column it names.
func execIfSchemaHas(ctx context.Context, tx pgx.Tx, q string, args ...any) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	if _, err := sp.Exec(ctx, q, args...); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "42703" || pgErr.Code == "42P01") {
			return sp.Rollback(ctx)
		}
		_ = sp.Rollback(ctx)
		return err
	}
	return sp.Commit(ctx)
}

// ShredResult is what ShredUser did, for the audit row (no personal data).
type ShredResult struct {
	SalesAnonymised int64
	SecretsDeleted  int64
	KeyDestroyed    bool
	// StoresClosed counts the seller's stores with sales, kept closed and
	// anonymised for the buyers' records.
	StoresClosed int64
}

// ShredUser deletes userID as described above; a seller's stores with
// sales, and what buyers paid for, stay ownerless (shredSellerStatements).
// ErrNotFound for an unknown user. after runs in the transaction last, so
// a deletion whose audit row cannot be written does not happen; OnShred's
// functions run once it has committed.
func (db *DB) ShredUser(ctx context.Context, userID string, at time.Time, after func(tx pgx.Tx, r ShredResult) error) (ShredResult, error) {
	var r ShredResult
	if !isUUID(userID) {
		return r, ErrNotFound
	}
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM stores st WHERE st.owner_id = u.id AND EXISTS (SELECT 1 FROM sales s WHERE s.store_id = st.id))
			FROM users u WHERE u.id = $1 FOR UPDATE`, userID).Scan(&r.StoresClosed); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM sales WHERE buyer_id = $1`, userID).Scan(&r.SalesAnonymised); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM secrets WHERE owner_id = $1`, userID).Scan(&r.SecretsDeleted); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM user_keys WHERE id = $1)`, userID).Scan(&r.KeyDestroyed); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO shredded_users (user_id, shredded_at) VALUES ($1, $2)
			ON CONFLICT (user_id) DO NOTHING`, userID, at); err != nil {
			return err
		}
		ids := []string{userID}
		for _, q := range shredLicenseStatements {
			if err := execIfSchemaHas(ctx, tx, q, ids); err != nil {
				return fmt.Errorf("store: shred licenses: %w", err)
			}
		}
		for _, q := range shredStatements {
			if strings.HasPrefix(q, shredSellerSplit) {
				for _, sq := range shredSellerStatements {
					if err := execIfSchemaHas(ctx, tx, sq, ids); err != nil {
						return fmt.Errorf("store: shred seller: %w", err)
					}
				}
			}
			if _, err := tx.Exec(ctx, q, ids); err != nil {
				return fmt.Errorf("store: shred: %w", err)
			}
		}
		if after != nil {
			return after(tx, r)
		}
		return nil
	})
	if err == nil {
		db.shredded(userID)
	}
	return r, MapError(err)
}

// OnShred registers fn to be called with each user ShredUser deletes,
// after the deletion commits: a keyring over this database passes its
// ForgetPersonal, so this instance stops using the user's key at once.
func (db *DB) OnShred(fn func(userID string)) {
	db.shredMu.Lock()
	defer db.shredMu.Unlock()
	db.onShred = append(db.onShred, fn)
}

func (db *DB) shredded(userID string) {
	db.shredMu.Lock()
	fns := append([]func(string){}, db.onShred...)
	db.shredMu.Unlock()
	for _, fn := range fns {
		fn(userID)
	}
}

// ShreddedUsers lists the shredding ledger: user id -> when.
func (db *DB) ShreddedUsers(ctx context.Context) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	var exists bool
	if err := db.Pool.QueryRow(ctx, `SELECT to_regclass('shredded_users') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return out, err
	}
	rows, err := db.Pool.Query(ctx, `SELECT user_id::text, shredded_at FROM shredded_users`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return nil, err
		}
		out[id] = at
	}
	return out, rows.Err()
}

// ShredReplaySQL reads the live ledger and returns SQL that, run at the end
// of a restore's transaction, puts the ledger's entries into the restored
// database and shreds every user in it again ("" when the ledger is
// empty). A backup older than the ledger (or than a table a statement
// names) gets the tables it lacks; a statement over a table the backup
// does not have is skipped.
func (db *DB) ShredReplaySQL(ctx context.Context) (string, error) {
	ledger, err := db.ShreddedUsers(ctx)
	if err != nil || len(ledger) == 0 {
		return "", err
	}
	var b strings.Builder
	// The dump leaves search_path empty.
	b.WriteString(`SET search_path TO public;
CREATE TABLE IF NOT EXISTS user_keys (id uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  keyset bytea NOT NULL CONSTRAINT user_keys_keyset_is_ciphertext CHECK (length(keyset) >= 33 AND substring(keyset FROM 1 FOR 1) = '\x01'::bytea),
  created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS shredded_users (user_id uuid PRIMARY KEY, shredded_at timestamptz NOT NULL DEFAULT now());
INSERT INTO shredded_users (user_id, shredded_at) VALUES `)
	first := true
	for id, at := range ledger {
		if !isUUID(id) {
			continue
		}
		if !first {
			b.WriteString(", ")
		}
		first = false
		fmt.Fprintf(&b, "('%s', '%s')", id, at.UTC().Format(time.RFC3339Nano))
	}
	b.WriteString(" ON CONFLICT (user_id) DO NOTHING;\n")
	// A backup older than migration 00027 has owner columns that cannot
	// be NULL: a seller's kept stores need them to.
	for _, t := range [][2]string{{"stores", "owner_id"}, {"whitelist_systems", "owner_id"}, {"developer_products", "developer_id"}} {
		fmt.Fprintf(&b, "DO $shred$ BEGIN ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL; EXCEPTION WHEN undefined_table OR undefined_column THEN NULL; END $shred$;\n", t[0], t[1])
	}
	var all []string
	all = append(all, shredLicenseStatements...)
	for _, q := range shredStatements {
		if strings.HasPrefix(q, shredSellerSplit) {
			all = append(all, shredSellerStatements...)
		}
		all = append(all, q)
	}
	for _, q := range all {
		q = strings.ReplaceAll(q, "$1", "ARRAY(SELECT user_id FROM shredded_users)")
		fmt.Fprintf(&b, "DO $shred$ BEGIN EXECUTE $q$%s$q$; EXCEPTION WHEN undefined_table OR undefined_column THEN NULL; END $shred$;\n", q)
	}
	return b.String(), nil
}
