package store

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring"
)

// PersonalColumn names a sensitive column whose values are personal: each
// row's value is sealed under the key of the user the row belongs to
// (Owner, an SQL expression over the table's alias t; NULL when the row
// belongs to no account, and then the value stays keyring-only).
type PersonalColumn struct {
	Table   string
	Columns []string
	Owner   string
}

// PersonalColumns are the personal values: a buyer's license keys and
// hardware ids, the values of secrets a user owns, a user's Stripe
// customer id (profiles, imported from Supabase) and a developer's Stripe
// subscription ids. Blind indexes beside them are not personal values.
var PersonalColumns = []PersonalColumn{
	{Table: "whitelist_users", Columns: []string{"license_key", "hwid"}, Owner: "t.buyer_id"},
	{Table: "whitelist_entries", Columns: []string{"license_key", "hwid"}, Owner: "t.buyer_id"},
	{Table: "secret_versions", Columns: []string{"value"}, Owner: "(SELECT s.owner_id FROM secrets s WHERE s.id = t.secret_id)"},
	{Table: "profiles", Columns: []string{"stripe_customer_id"}, Owner: "t.id"},
	{Table: "developer_subscriptions", Columns: []string{"stripe_customer_id", "stripe_subscription_id"}, Owner: "t.developer_id"},
}

// resealFor returns ct sealed under userID's key: ct itself when it is nil
// or already personally sealed, else its keyring plaintext sealed again
// for the same location (a value written before personal keys).
func resealFor(ctx context.Context, q PersonalQuerier, kr *keyring.Keyring, userID string, loc keyring.Location, ct []byte) ([]byte, error) {
	if ct == nil {
		return nil, nil
	}
	pt, err := kr.Decrypt(ctx, loc, ct)
	if err != nil || keyring.IsPersonallySealed(pt) {
		return ct, err
	}
	return SealPersonal(ctx, q, kr, userID, loc, pt)
}

// SealCount is what one batch of SealPersonalValues sealed in one table.
type SealCount struct {
	Table   string `json:"table"`
	Scanned int    `json:"scanned"`
	Sealed  int    `json:"sealed"`
}

// sealRow is a row of a personal table as the seal pass reads it.
type sealRow struct {
	id      string // the row's id (secret_versions: secret_id)
	version int    // secret_versions only
	owner   string
	locID   string
	values  [][]byte
}

// nilUUID starts a pass: every id sorts after it.
const nilUUID = "00000000-0000-0000-0000-000000000000"

// SealPersonalValues seals every personal value still encrypted by the
// keyring alone (written before personal keys, or imported) under its
// owner's key, batch rows at a time. Each batch is one transaction that
// locks its rows, so the pass runs beside the API; a value already sealed
// is left as it is, so the pass can be stopped and run again at any point
// (resumable: a new run skips what an earlier one did, at the cost of one
// decryption per value). batchDone runs inside each batch's transaction
// that sealed anything, before it commits: an audit row that cannot be
// written rolls the batch back. It returns the totals per table.
func (db *DB) SealPersonalValues(ctx context.Context, kr *keyring.Keyring, batch int, batchDone func(ctx context.Context, tx pgx.Tx, c SealCount) error) ([]SealCount, error) {
	if batch <= 0 {
		batch = 500
	}
	var out []SealCount
	for _, pc := range PersonalColumns {
		total := SealCount{Table: pc.Table}
		after := sealRow{id: nilUUID}
		for {
			var c SealCount
			var last sealRow
			var n int
			err := db.InTx(ctx, func(tx pgx.Tx) error {
				c = SealCount{Table: pc.Table}
				rows, err := readSealBatch(ctx, tx, pc, after, batch)
				if err != nil {
					return err
				}
				n = len(rows)
				for _, r := range rows {
					last = r
					c.Scanned++
					changed := false
					next := make([][]byte, len(r.values))
					for i, ct := range r.values {
						loc := sealLoc(pc.Table, pc.Columns[i], r.locID)
						if next[i], err = resealFor(ctx, tx, kr, r.owner, loc, ct); err != nil {
							return fmt.Errorf("store: seal %s: %w", loc, err)
						}
						changed = changed || !bytes.Equal(next[i], ct)
					}
					if !changed {
						continue
					}
					if err := writeSealed(ctx, tx, pc, r, next); err != nil {
						return err
					}
					c.Sealed++
				}
				if c.Sealed > 0 && batchDone != nil {
					return batchDone(ctx, tx, c)
				}
				return nil
			})
			if err != nil {
				return out, MapError(err)
			}
			total.Scanned += c.Scanned
			total.Sealed += c.Sealed
			if n < batch {
				break
			}
			after = last
		}
		out = append(out, total)
	}
	return out, nil
}

// sealLoc is where a personal value lives, as the keyring binds it.
func sealLoc(table, column, locID string) keyring.Location {
	return keyring.Location{Table: table, Column: column, RowID: locID}
}

func readSealBatch(ctx context.Context, tx pgx.Tx, pc PersonalColumn, after sealRow, limit int) ([]sealRow, error) {
	// Keyset pagination on the primary key, so each batch is an index
	// range however large the table.
	id, version, locID, where, order := "t.id::text", "0", "t.id::text", "t.id > $1::uuid", "t.id"
	if pc.Table == "secret_versions" {
		id, version, order = "t.secret_id::text", "t.version", "t.secret_id, t.version"
		locID = "(SELECT s.name FROM secrets s WHERE s.id = t.secret_id) || '@' || t.version"
		where = "(t.secret_id, t.version) > ($1::uuid, $2::int)"
	}
	cols := ""
	for _, c := range pc.Columns {
		cols += ", t." + c
	}
	rows, err := tx.Query(ctx, `SELECT `+id+`, `+version+`, `+pc.Owner+`::text, `+locID+cols+`
		FROM `+pc.Table+` t WHERE `+where+` AND $2::int IS NOT NULL AND `+pc.Owner+` IS NOT NULL
		ORDER BY `+order+` LIMIT $3 FOR UPDATE OF t`, after.id, after.version, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []sealRow
	for rows.Next() {
		r := sealRow{values: make([][]byte, len(pc.Columns))}
		dst := []any{&r.id, &r.version, &r.owner, &r.locID}
		for i := range r.values {
			dst = append(dst, &r.values[i])
		}
		if err := rows.Scan(dst...); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func writeSealed(ctx context.Context, tx pgx.Tx, pc PersonalColumn, r sealRow, values [][]byte) error {
	var set strings.Builder
	args := []any{r.id, r.version}
	for i, c := range pc.Columns {
		if i > 0 {
			set.WriteString(", ")
		}
		args = append(args, values[i])
		fmt.Fprintf(&set, "%s = $%d", c, len(args))
	}
	where := "id = $1::uuid AND $2::int IS NOT NULL"
	if pc.Table == "secret_versions" {
		where = "secret_id = $1::uuid AND version = $2::int"
	}
	_, err := tx.Exec(ctx, `UPDATE `+pc.Table+` SET `+set.String()+` WHERE `+where, args...)
	return err
}

// personalSealedMarker names the keyring_meta row written once a sealing
// pass has gone over every personal table to the end: from then on every
// write seals as it goes, so serve does not scan again at each start.
const personalSealedMarker = "personal_values_sealed"

// PersonalValuesSealed reports whether a whole sealing pass has finished
// on this database (a restore of a backup from before one brings back a
// database without the marker, and the next serve seals it again).
func (db *DB) PersonalValuesSealed(ctx context.Context) (bool, error) {
	var ok bool
	err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keyring_meta WHERE name = $1)`, personalSealedMarker).Scan(&ok)
	return ok, MapError(err)
}

// MarkPersonalValuesSealed records that a whole sealing pass finished.
func (db *DB) MarkPersonalValuesSealed(ctx context.Context) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO keyring_meta (name, value) VALUES ($1, '\x01') ON CONFLICT (name) DO NOTHING`, personalSealedMarker)
	return MapError(err)
}
