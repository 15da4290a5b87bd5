package store

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring"
)

// MarketStore is a row of stores as its owner sees it. The Stripe account id
// is decrypted only to be masked: StripeAccountMasked is "acct_****1234" or
// "" when the store has no account.
type MarketStore struct {
	ID                  string
	OwnerID             string
	Name                string
	Slug                string
	Description         *string
	LogoURL             *string
	StripeAccountMasked string
	StripeOnboarded     bool
	CommissionBps       int
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

// StoreFields are the columns an owner may set. On update a nil field is
// left unchanged.
type StoreFields struct {
	Name        *string
	Slug        *string
	Description *string
	LogoURL     *string
}

const storeColumns = `s.id, s.owner_id, s.name, s.slug, s.description, s.logo_url, s.stripe_account_id, s.stripe_onboarded, s.commission_bps, s.created_at, s.updated_at`

func (m *Marketplace) scanStore(ctx context.Context, row pgx.Row) (MarketStore, error) {
	var s MarketStore
	var acct []byte
	if err := row.Scan(&s.ID, &s.OwnerID, &s.Name, &s.Slug, &s.Description, &s.LogoURL, &acct, &s.StripeOnboarded, &s.CommissionBps, &s.CreatedAt, &s.UpdatedAt); err != nil {
		return s, err
	}
	if acct != nil {
		pt, err := m.kr.Decrypt(ctx, keyring.Location{Table: "stores", Column: "stripe_account_id", RowID: s.ID}, acct)
		if err != nil {
			return s, err
		}
		s.StripeAccountMasked = maskTail(string(pt))
	}
	return s, nil
}

func storeCursor(s MarketStore) Cursor {
	return Cursor{CreatedAt: s.CreatedAt, ID: uuid.MustParse(s.ID)}
}

// CreateStore creates a store owned by ownerID. A taken slug is ErrConflict.
func (m *Marketplace) CreateStore(ctx context.Context, ownerID string, f StoreFields) (MarketStore, error) {
	row := m.db.Pool.QueryRow(ctx, `INSERT INTO stores AS s (owner_id, name, slug, description, logo_url)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+storeColumns, ownerID, deref(f.Name), deref(f.Slug), f.Description, f.LogoURL)
	s, err := m.scanStore(ctx, row)
	return s, MapError(err)
}

// GetStore returns ownerID's store id; another owner's store is ErrNotFound.
func (m *Marketplace) GetStore(ctx context.Context, ownerID, id string) (MarketStore, error) {
	row := m.db.Pool.QueryRow(ctx, `SELECT `+storeColumns+` FROM stores s WHERE s.id = $1 AND s.owner_id = $2`, id, ownerID)
	s, err := m.scanStore(ctx, row)
	return s, MapError(err)
}

// ListStores returns a page of ownerID's stores, newest first, and the
// cursor of the next page.
func (m *Marketplace) ListStores(ctx context.Context, ownerID string, p Page) ([]MarketStore, *Cursor, error) {
	t, id := pageArgs(p)
	rows, err := m.db.Pool.Query(ctx, `SELECT `+storeColumns+` FROM stores s WHERE s.owner_id = $1`+pageClause("s", 2), ownerID, t, id, p.Limit+1)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var out []MarketStore
	for rows.Next() {
		s, err := m.scanStore(ctx, rows)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	items, next := trimPage(out, p.Limit, storeCursor)
	return items, next, nil
}

// UpdateStore changes the set fields of ownerID's store id.
func (m *Marketplace) UpdateStore(ctx context.Context, ownerID, id string, f StoreFields) (MarketStore, error) {
	row := m.db.Pool.QueryRow(ctx, `UPDATE stores AS s SET
			name = coalesce($3, s.name), slug = coalesce($4, s.slug),
			description = coalesce($5, s.description), logo_url = coalesce($6, s.logo_url),
			updated_at = now()
		WHERE s.id = $1 AND s.owner_id = $2 RETURNING `+storeColumns, id, ownerID, f.Name, f.Slug, f.Description, f.LogoURL)
	s, err := m.scanStore(ctx, row)
	return s, MapError(err)
}

// DeleteStore deletes ownerID's store id with its products. A store with
// sales is ErrInUse: sales are the record of money received and stay.
func (m *Marketplace) DeleteStore(ctx context.Context, ownerID, id string) error {
	tag, err := m.db.Pool.Exec(ctx, `DELETE FROM stores WHERE id = $1 AND owner_id = $2`, id, ownerID)
	if isForeignKeyViolation(err) {
		return ErrInUse
	}
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
