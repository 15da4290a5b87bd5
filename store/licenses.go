package store

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring"
)

// Why a license check answers whitelisted:false (CheckResult.Reason).
const (
	CheckReasonNotFound     = "not_found"     // no license the key may see matches
	CheckReasonRevoked      = "revoked"       // revoked by its seller, a refund or a dispute
	CheckReasonExpired      = "expired"       // status expired, or its expiry has passed
	CheckReasonInactive     = "inactive"      // its whitelist system is switched off
	CheckReasonHWIDMismatch = "hwid_mismatch" // bound to another hardware id
)

// Table names of the two kinds of license, as the keyring binds their
// ciphertexts and blind indexes.
const (
	systemLicenses  = "whitelist_users"
	productLicenses = "whitelist_entries"
)

// NormalizeLicenseKey is the form a license key is looked up in: surrounding
// spaces dropped, uppercase (the importer indexes imported keys the same
// way, store/supabase's indexForm).
func NormalizeLicenseKey(k string) string { return strings.ToUpper(strings.TrimSpace(k)) }

// KeyCheck returns the check of license key key (normalised here) over both
// kinds of license.
func (m *Marketplace) KeyCheck(key string) (CheckQuery, error) {
	key = NormalizeLicenseKey(key)
	u, err := m.kr.BlindIndex(systemLicenses, "license_key", []byte(key))
	if err != nil {
		return CheckQuery{}, err
	}
	e, err := m.kr.BlindIndex(productLicenses, "license_key", []byte(key))
	if err != nil {
		return CheckQuery{}, err
	}
	return CheckQuery{LicenseIndex: u, EntryIndex: e}, nil
}

// SetHWID makes q compare bound licenses with hardware id hwid.
func (m *Marketplace) SetHWID(q *CheckQuery, hwid string) error {
	u, err := m.kr.BlindIndex(systemLicenses, "hwid", []byte(hwid))
	if err != nil {
		return err
	}
	e, err := m.kr.BlindIndex(productLicenses, "hwid", []byte(hwid))
	if err != nil {
		return err
	}
	q.HWIDIndex, q.EntryHWIDIndex = u, e
	return nil
}

// checkArrays are a batch of checks as the check statement's array
// parameters, one element per check (NULL where a check has no such part).
type checkArrays struct {
	systems, products []*string
	players           []*int64
	keys, entryKeys   [][]byte
	hwids, entryHWIDs [][]byte
}

func newCheckArrays(n int) checkArrays {
	return checkArrays{
		systems: make([]*string, n), products: make([]*string, n), players: make([]*int64, n),
		keys: make([][]byte, n), entryKeys: make([][]byte, n), hwids: make([][]byte, n), entryHWIDs: make([][]byte, n),
	}
}

// args are the arrays as the statement's $3 to $9. An array with no
// element set goes as NULL, which unnest reads as empty and pads with
// NULLs: most batches are of one kind of check, and this spares encoding
// the others.
func (a *checkArrays) args() []any {
	out := make([]any, 0, 7)
	for _, arr := range []any{a.systems, a.products, a.players, a.keys, a.entryKeys, a.hwids, a.entryHWIDs} {
		if !anySet(arr) {
			arr = nil
		}
		out = append(out, arr)
	}
	return out
}

func anySet(arr any) bool {
	switch v := arr.(type) {
	case []*string:
		for _, x := range v {
			if x != nil {
				return true
			}
		}
	case []*int64:
		for _, x := range v {
			if x != nil {
				return true
			}
		}
	case [][]byte:
		for _, x := range v {
			if x != nil {
				return true
			}
		}
	}
	return false
}

func (a *checkArrays) set(i int, q *CheckQuery) {
	if q.LicenseIndex != nil || q.EntryIndex != nil {
		a.keys[i], a.entryKeys[i] = q.LicenseIndex, q.EntryIndex
	} else {
		if q.SystemID != "" {
			a.systems[i] = &q.SystemID
		}
		if q.ProductID != "" {
			a.products[i] = &q.ProductID
		}
		a.players[i] = &q.RobloxUserID
	}
	a.hwids[i], a.entryHWIDs[i] = q.HWIDIndex, q.EntryHWIDIndex
}

// Why a row of either table does not whitelist, NULL when it does. A bound
// license is compared only when the game server reports a hardware id; a
// hardware id bound before it had a blind index cannot be compared, and is
// let through as before.
const (
	systemLicenseReason = `CASE WHEN NOT w.is_active THEN 'inactive'
			WHEN u.status = 'revoked' THEN 'revoked'
			WHEN u.status <> 'active' OR u.expires_at <= now() THEN 'expired'
			WHEN q.uhwid IS NOT NULL AND u.hwid_bidx IS NOT NULL AND u.hwid_bidx <> q.uhwid THEN 'hwid_mismatch' END`
	productLicenseReason = `CASE WHEN e.status = 'expired' OR (e.status = 'active' AND e.expires_at <= now()) THEN 'expired'
			WHEN e.status <> 'active' THEN 'revoked'
			WHEN q.ehwid IS NOT NULL AND e.hwid_bidx IS NOT NULL AND e.hwid_bidx <> q.ehwid THEN 'hwid_mismatch' END`
)

// checkStatement counts a batch of uses of one key ($1, $2 uses) and
// answers each check of the batch: the best matching license (a valid one
// first, then a hardware-id mismatch, then the latest expiry) among those
// the key may see. Each of the four look-ups (key or player, in either
// table) is a branch of its own on its own index, gated by which parts
// of the check are set.
var checkStatement = `WITH ` + useKeyCTEsN + `,
		q AS (SELECT * FROM unnest((SELECT $3::uuid[]), (SELECT $4::uuid[]), (SELECT $5::bigint[]), (SELECT $6::bytea[]),
			(SELECT $7::bytea[]), (SELECT $8::bytea[]), (SELECT $9::bytea[]))
			WITH ORDINALITY AS q(system_id, product_id, roblox_user_id, ubidx, ebidx, uhwid, ehwid, ord))
		SELECT ` + useKeyColumns + `, x.expires_at, coalesce(x.found AND x.reason IS NULL, false),
			coalesce(x.reason, CASE WHEN x.found THEN '' ELSE 'not_found' END)
		FROM k CROSS JOIN c CROSS JOIN q
		LEFT JOIN LATERAL (
			SELECT y.expires_at, y.reason, true AS found FROM (
				(SELECT u.expires_at, ` + systemLicenseReason + ` AS reason
				 FROM whitelist_systems w JOIN whitelist_users u ON u.system_id = w.id
				 WHERE q.ubidx IS NOT NULL AND w.owner_id = k.developer_id AND u.license_key_bidx = q.ubidx)
				UNION ALL
				(SELECT u.expires_at, ` + systemLicenseReason + `
				 FROM whitelist_systems w JOIN whitelist_users u ON u.system_id = w.id
				 WHERE q.system_id IS NOT NULL AND w.owner_id = k.developer_id
				   AND w.id = q.system_id AND u.roblox_user_id = q.roblox_user_id)
				UNION ALL
				(SELECT e.expires_at, ` + productLicenseReason + `
				 FROM developer_products d JOIN whitelist_entries e ON e.developer_product_id = d.id
				 WHERE q.ebidx IS NOT NULL AND d.developer_id = k.developer_id
				   AND (k.developer_product_id IS NULL OR d.id = k.developer_product_id) AND e.license_key_bidx = q.ebidx)
				UNION ALL
				(SELECT e.expires_at, ` + productLicenseReason + `
				 FROM developer_products d JOIN whitelist_entries e ON e.developer_product_id = d.id
				 WHERE q.product_id IS NOT NULL AND d.developer_id = k.developer_id
				   AND (k.developer_product_id IS NULL OR d.id = k.developer_product_id)
				   AND d.id = q.product_id AND e.roblox_user_id = q.roblox_user_id)
			) y
			ORDER BY y.reason IS NULL DESC, y.reason = 'hwid_mismatch' DESC, y.expires_at DESC NULLS FIRST
			LIMIT 1
		) x ON true
		ORDER BY q.ord`

// DeveloperProduct is a row of developer_products: something a developer
// sells licenses for through their API keys.
type DeveloperProduct struct {
	ID          string
	DeveloperID string
	Name        string
	Description *string
	CreatedAt   time.Time
}

// GetDeveloperProduct returns ownerID's developer product id; anyone
// else's, or an id that is not a UUID, is ErrNotFound.
func (m *Marketplace) GetDeveloperProduct(ctx context.Context, ownerID, id string) (DeveloperProduct, error) {
	var d DeveloperProduct
	if uuid.Validate(id) != nil || uuid.Validate(ownerID) != nil {
		return d, ErrNotFound
	}
	err := m.db.Pool.QueryRow(ctx, `SELECT id, developer_id, name, description, created_at FROM developer_products
		WHERE id = $1 AND developer_id = $2`, id, ownerID).Scan(&d.ID, &d.DeveloperID, &d.Name, &d.Description, &d.CreatedAt)
	return d, MapError(err)
}

// License is a row of the licenses view: a license of either kind, without
// its secrets. Key is filled only where the caller may see it (its buyer).
type License struct {
	ID                 string
	Kind               string // system or product
	SystemID           *string
	DeveloperProductID *string
	OwnerID            string
	RobloxUserID       int64
	DiscordID          *string
	Status             string // active, revoked or expired
	ExpiresAt          *time.Time
	HWIDBound          bool
	SaleID             *string
	BuyerID            *string
	RevokedAt          *time.Time
	RevokedReason      *string
	CreatedAt          time.Time
	Key                string
}

// owner_id is "" for a license whose seller deleted their account.
const licenseColumns = `l.id, l.kind, l.system_id, l.developer_product_id, coalesce(l.owner_id::text, ''), l.roblox_user_id, l.discord_id, l.status,
	l.expires_at, l.hwid_bound, l.sale_id, l.buyer_id, l.revoked_at, l.revoked_reason, l.created_at`

func scanLicense(row pgx.Row) (License, error) {
	var l License
	err := row.Scan(&l.ID, &l.Kind, &l.SystemID, &l.DeveloperProductID, &l.OwnerID, &l.RobloxUserID, &l.DiscordID, &l.Status,
		&l.ExpiresAt, &l.HWIDBound, &l.SaleID, &l.BuyerID, &l.RevokedAt, &l.RevokedReason, &l.CreatedAt)
	return l, err
}

// licenseTable is the table a license of kind lives in.
func licenseTable(kind string) string {
	if kind == "product" {
		return productLicenses
	}
	return systemLicenses
}

func licenseKeyLoc(kind, id string) keyring.Location {
	return keyring.Location{Table: licenseTable(kind), Column: "license_key", RowID: id}
}

// ListBuyerLicenses returns a page of the licenses buyerID bought, newest
// first, each with its key decrypted: a buyer's own license keys are theirs
// to see.
func (m *Marketplace) ListBuyerLicenses(ctx context.Context, buyerID string, p Page) ([]License, *Cursor, error) {
	t, id := pageArgs(p)
	rows, err := m.db.Pool.Query(ctx, `SELECT `+licenseColumns+`, coalesce(u.license_key, e.license_key)
		FROM licenses l
		LEFT JOIN whitelist_users u ON l.kind = 'system' AND u.id = l.id
		LEFT JOIN whitelist_entries e ON l.kind = 'product' AND e.id = l.id
		WHERE l.buyer_id = $1`+pageClause("l", 2), buyerID, t, id, p.Limit+1)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var out []License
	for rows.Next() {
		var l License
		var ct []byte
		if err := rows.Scan(&l.ID, &l.Kind, &l.SystemID, &l.DeveloperProductID, &l.OwnerID, &l.RobloxUserID, &l.DiscordID, &l.Status,
			&l.ExpiresAt, &l.HWIDBound, &l.SaleID, &l.BuyerID, &l.RevokedAt, &l.RevokedReason, &l.CreatedAt, &ct); err != nil {
			return nil, nil, err
		}
		// The buyer's own key seals it (store/personal.go); one written
		// before that, keyring-only, reads as it is.
		pt, err := openOwned(ctx, m.db.Pool, m.kr, &buyerID, licenseKeyLoc(l.Kind, l.ID), ct)
		if err != nil {
			return nil, nil, err
		}
		l.Key = string(pt)
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	items, next := trimPage(out, p.Limit, func(l License) Cursor { return Cursor{CreatedAt: l.CreatedAt, ID: uuid.MustParse(l.ID)} })
	return items, next, nil
}

// LicenseChange is a license a Stripe event issued or revoked, for the
// audit trail (Payments.OnLicenseChange). It holds no key.
type LicenseChange struct {
	Action    string // issued or revoked
	LicenseID string
	Kind      string
	SaleID    string
	BuyerID   string // "" for an anonymous buyer
	Reason    string // revoked: refund or dispute
	EventID   string
}

// paidSale is a sale whose payment has arrived, as the effects of a
// completed checkout see it.
type paidSale struct {
	ID           string
	ProductID    string
	BuyerID      *string
	RobloxUserID *int64
	DiscordID    string
	LicenseKey   string // the key to issue, when the product licenses anything
	EventID      string
}

// completeSale applies every effect of a paid sale, each one function
// called here inside the sale's transaction, so that a sale and what it
// gives the buyer commit together or not at all.
func (p *Payments) completeSale(ctx context.Context, tx pgx.Tx, s paidSale) error {
	if err := p.issueLicense(ctx, tx, s); err != nil {
		return err
	}
	_, err := GrantSaleCredits(ctx, tx, s.ID, s.EventID) // a credit pack's credits (credits.go)
	return err
}

// issueLicense gives the buyer of sale s a license in the whitelist system
// or developer product that s's product licenses, if any: a new row with a
// new key (encrypted, blind-indexed), never a change to a license the
// player already holds. A sale issues at most one license (UNIQUE sale_id:
// a second attempt conflicts and changes nothing). A sale without a Roblox
// user id issues none: the checkout route requires one for such products.
func (p *Payments) issueLicense(ctx context.Context, tx pgx.Tx, s paidSale) error {
	var system, product *string
	if err := tx.QueryRow(ctx, `SELECT whitelist_system_id, developer_product_id FROM products WHERE id = $1`, s.ProductID).Scan(&system, &product); err != nil {
		return err
	}
	if (system == nil && product == nil) || s.RobloxUserID == nil || s.LicenseKey == "" {
		return nil
	}
	kind, target := "system", system
	if product != nil {
		kind, target = "product", product
	}
	table := licenseTable(kind)
	id := uuid.NewString()
	key := NormalizeLicenseKey(s.LicenseKey)
	// A signed-in buyer's license key is personal: sealed under their key,
	// so deleting their account shreds it. An anonymous buyer's gets
	// sealed when they claim the purchase.
	ct, err := sealOwned(ctx, tx, p.kr, s.BuyerID, licenseKeyLoc(kind, id), []byte(key))
	if err != nil {
		return err
	}
	bidx, err := p.kr.BlindIndex(table, "license_key", []byte(key))
	if err != nil {
		return err
	}
	var sql string
	if kind == "system" {
		sql = `INSERT INTO whitelist_users (id, system_id, roblox_user_id, discord_id, license_key, license_key_bidx, sale_id, buyer_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (sale_id) DO NOTHING`
	} else {
		sql = `INSERT INTO whitelist_entries (id, developer_product_id, roblox_user_id, discord_id, license_key, license_key_bidx, sale_id, buyer_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (sale_id) DO NOTHING`
	}
	tag, err := tx.Exec(ctx, sql, id, *target, *s.RobloxUserID, nullString(s.DiscordID), ct, bidx, s.ID, s.BuyerID)
	if err != nil || tag.RowsAffected() == 0 {
		return err
	}
	ch := LicenseChange{Action: "issued", LicenseID: id, Kind: kind, SaleID: s.ID, EventID: s.EventID}
	if s.BuyerID != nil {
		ch.BuyerID = *s.BuyerID
	}
	return p.licenseChanged(ctx, ch)
}

// revokeSaleLicenses revokes at once every license the sales saleIDs
// issued, for reason (refund or dispute); the next check answers false.
func (p *Payments) revokeSaleLicenses(ctx context.Context, tx pgx.Tx, saleIDs []string, reason, eventID string) error {
	rows, err := tx.Query(ctx, `WITH u AS (
			UPDATE whitelist_users SET status = 'revoked', revoked_at = now(), revoked_reason = $2
			WHERE sale_id = ANY($1::uuid[]) AND status <> 'revoked' RETURNING id, 'system' AS kind, sale_id, buyer_id
		), e AS (
			UPDATE whitelist_entries SET status = 'revoked', revoked_at = now(), revoked_reason = $2
			WHERE sale_id = ANY($1::uuid[]) AND status <> 'revoked' RETURNING id, 'product' AS kind, sale_id, buyer_id
		) SELECT * FROM u UNION ALL SELECT * FROM e`, saleIDs, reason)
	if err != nil {
		return err
	}
	var changes []LicenseChange
	for rows.Next() {
		var ch LicenseChange
		var buyer *string
		if err := rows.Scan(&ch.LicenseID, &ch.Kind, &ch.SaleID, &buyer); err != nil {
			rows.Close()
			return err
		}
		if buyer != nil {
			ch.BuyerID = *buyer
		}
		ch.Action, ch.Reason, ch.EventID = "revoked", reason, eventID
		changes = append(changes, ch)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, ch := range changes {
		if err := p.licenseChanged(ctx, ch); err != nil {
			return err
		}
	}
	return nil
}

// OnLicenseChange sets what is called, inside the event's transaction
// before it commits, for every license an event issues or revokes: the
// service audits it there, and an error rolls the event back (Stripe
// delivers it again). Set it before the first event.
func (p *Payments) OnLicenseChange(fn func(ctx context.Context, ch LicenseChange) error) {
	p.onLicense = fn
}

func (p *Payments) licenseChanged(ctx context.Context, ch LicenseChange) error {
	if p.onLicense == nil {
		return nil
	}
	return p.onLicense(ctx, ch)
}

// CheckoutLicense is what the checkout success page learns of its sale.
type CheckoutLicense struct {
	SaleID     string
	SaleStatus string
	ProductID  string
	License    *License // nil when the sale issued none
	// KeyShown is true on the one look-up that reveals the key (then in
	// License.Key); later look-ups see the license without it.
	KeyShown bool
	// Claimed is true when this look-up attached an anonymous purchase to
	// the signed-in caller.
	Claimed bool
}

// SessionHash is the keyed hash a sale is found by its Checkout Session id.
func (p *Payments) SessionHash(sessionID string) ([]byte, error) {
	return p.kr.MAC("checkout_session", []byte(sessionID))
}

// ClaimCheckoutLicense returns the sale paid through Checkout Session
// sessionID and the license it issued, revealing the license's key on the
// first look-up only (key_revealed_at is set in the same statement that
// reads the key, so two concurrent look-ups cannot both get it) and only
// while the license is active. audit runs inside the transaction for each
// write it makes (sale.claimed, license.key_revealed) before it commits; its
// error rolls the look-up back and keeps the key unrevealed. A session with
// no sale here (unknown, or its webhook has not arrived yet) is ErrNotFound.
//
// A signed-in caller (buyerID not "") looking up an anonymous purchase
// becomes its buyer: the sale and its license are attached to their
// account (Claimed), so the license appears at /api/me/licenses.
func (p *Payments) ClaimCheckoutLicense(ctx context.Context, sessionID, buyerID string, audit func(ctx context.Context, action, resourceID string, details map[string]any) error) (CheckoutLicense, error) {
	var out CheckoutLicense
	hash, err := p.SessionHash(sessionID)
	if err != nil {
		return out, err
	}
	err = p.db.InTx(ctx, func(tx pgx.Tx) error {
		var buyer *string
		if err := tx.QueryRow(ctx, `SELECT id, status, product_id, buyer_id FROM sales WHERE stripe_session_hash = $1 FOR UPDATE`, hash).
			Scan(&out.SaleID, &out.SaleStatus, &out.ProductID, &buyer); err != nil {
			return err
		}
		if buyer == nil && buyerID != "" {
			if _, err := tx.Exec(ctx, `UPDATE sales SET buyer_id = $2 WHERE id = $1`, out.SaleID, buyerID); err != nil {
				return err
			}
			for _, t := range []string{systemLicenses, productLicenses} {
				if err := p.claimLicense(ctx, tx, t, out.SaleID, buyerID); err != nil {
					return err
				}
			}
			out.Claimed = true
			if err := audit(ctx, "sale.claimed", out.SaleID, nil); err != nil {
				return err
			}
		}
		l, err := scanLicense(tx.QueryRow(ctx, `SELECT `+licenseColumns+` FROM licenses l WHERE l.sale_id = $1`, out.SaleID))
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		out.License = &l
		if l.Status != "active" {
			return nil
		}
		var ct []byte
		err = tx.QueryRow(ctx, `UPDATE `+licenseTable(l.Kind)+` SET key_revealed_at = now()
			WHERE id = $1 AND key_revealed_at IS NULL RETURNING license_key`, l.ID).Scan(&ct)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		pt, err := openOwned(ctx, tx, p.kr, l.BuyerID, licenseKeyLoc(l.Kind, l.ID), ct)
		if err != nil {
			return err
		}
		if err := audit(ctx, "license.key_revealed", l.ID, map[string]any{"kind": l.Kind, "saleId": out.SaleID, "via": "checkout_session"}); err != nil {
			return err
		}
		l.Key, out.KeyShown = string(pt), true
		out.License = &l
		return nil
	})
	return out, MapError(err)
}

// claimLicense makes buyerID the buyer of the license sale saleID issued in
// table (if any), sealing its key and hardware id under the buyer's key:
// from now on they are the buyer's personal values.
func (p *Payments) claimLicense(ctx context.Context, tx pgx.Tx, table, saleID, buyerID string) error {
	var id string
	var key, hwid []byte
	err := tx.QueryRow(ctx, `SELECT id, license_key, hwid FROM `+table+` WHERE sale_id = $1 FOR UPDATE`, saleID).Scan(&id, &key, &hwid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	key, err = resealFor(ctx, tx, p.kr, buyerID, keyring.Location{Table: table, Column: "license_key", RowID: id}, key)
	if err != nil {
		return err
	}
	if hwid, err = resealFor(ctx, tx, p.kr, buyerID, keyring.Location{Table: table, Column: "hwid", RowID: id}, hwid); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE `+table+` SET buyer_id = $2, license_key = $3, hwid = $4 WHERE id = $1`, id, buyerID, key, hwid)
	return err
}
