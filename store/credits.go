package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Obfuscation credits are a ledger: obfuscation_credits holds each
// developer's balance (CHECK balance >= 0), obfuscation_credit_grants what
// was granted and obfuscation_usage what was consumed. A balance imported
// from Supabase is the opening balance; from then on it moves only with a
// grant or a consumption written in the same transaction.

// ErrInsufficientCredits is returned by ConsumeCredits when the balance does
// not cover the units asked for; nothing is consumed.
var ErrInsufficientCredits = errors.New("store: insufficient credits")

// Consumption is one request to consume credits.
type Consumption struct {
	DeveloperID    string
	APIKeyID       string
	Units          int
	ScriptSHA256   string // "" when not given
	IdempotencyKey string // "" for none: every such request consumes
	RequestHash    string // identifies the request's body, compared on a retry
	RequestID      string
}

// Consumed is the result of a consumption, or of the first request with the
// same idempotency key when Replayed.
type Consumed struct {
	UsageID     string
	Units       int
	Balance     int // the balance right after this consumption
	CreatedAt   time.Time
	Replayed    bool
	RequestHash string // of the first request, when Replayed
}

// ConsumeCredits consumes c.Units of c.DeveloperID's credits atomically, in
// one round trip (vectabase_consume_credits, migration 00014): the balance
// never goes below zero under any concurrency, and a request repeating an
// idempotency key already used with the same API key consumes nothing and
// returns the first request's result with Replayed set (the caller compares
// RequestHash). ErrInsufficientCredits when the balance is short; Balance
// is then the current balance.
func (m *Marketplace) ConsumeCredits(ctx context.Context, c Consumption) (Consumed, error) {
	var id *string
	var bal *int
	var at *time.Time
	out := Consumed{Units: c.Units}
	err := m.db.Pool.QueryRow(ctx, `SELECT o_usage_id, o_balance, o_created_at, o_replayed, o_hash
		FROM vectabase_consume_credits($1, $2, $3, $4, $5, $6, $7)`,
		c.DeveloperID, c.APIKeyID, nullString(c.IdempotencyKey), c.RequestHash, c.Units,
		nullString(c.ScriptSHA256), nullString(c.RequestID)).Scan(&id, &bal, &at, &out.Replayed, &out.RequestHash)
	if err != nil {
		return Consumed{}, MapError(err)
	}
	if bal != nil {
		out.Balance = *bal
	}
	if id == nil {
		return out, ErrInsufficientCredits
	}
	out.UsageID = *id
	if at != nil {
		out.CreatedAt = *at
	}
	if out.Replayed {
		// The first request's units, not this one's: a retry with another
		// body is the caller's to refuse, but the answer is the first one.
		if err := m.db.Pool.QueryRow(ctx, `SELECT credits_used FROM obfuscation_usage WHERE id = $1`, out.UsageID).Scan(&out.Units); err != nil {
			return Consumed{}, MapError(err)
		}
	}
	return out, nil
}

// CreditBalance returns developerID's balance (0 when they never had
// credits).
func (m *Marketplace) CreditBalance(ctx context.Context, developerID string) (int, error) {
	var b int
	err := m.db.Pool.QueryRow(ctx, `SELECT coalesce((SELECT balance FROM obfuscation_credits WHERE developer_id = $1), 0)`, developerID).Scan(&b)
	return b, err
}

// Usage is a row of obfuscation_usage: an imported one or a consumption
// through the API.
type Usage struct {
	ID           string
	APIKeyID     *string
	Units        int
	ScriptSHA256 *string
	BytesIn      *int
	CreatedAt    time.Time
}

// ListUsage returns a page of developerID's consumptions, newest first.
func (m *Marketplace) ListUsage(ctx context.Context, developerID string, p Page) ([]Usage, *Cursor, error) {
	t, id := pageArgs(p)
	rows, err := m.db.Pool.Query(ctx, `SELECT u.id, u.api_key_id, u.credits_used, u.script_sha256, u.bytes_in, u.created_at
		FROM obfuscation_usage u WHERE u.developer_id = $1`+pageClause("u", 2), developerID, t, id, p.Limit+1)
	if err != nil {
		return nil, nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Usage, error) {
		var u Usage
		err := r.Scan(&u.ID, &u.APIKeyID, &u.Units, &u.ScriptSHA256, &u.BytesIn, &u.CreatedAt)
		return u, err
	})
	if err != nil {
		return nil, nil, err
	}
	items, next := trimPage(out, p.Limit, func(u Usage) Cursor { return Cursor{CreatedAt: u.CreatedAt, ID: uuid.MustParse(u.ID)} })
	return items, next, nil
}

// GrantSaleCredits grants the credits of sale saleID inside tx, the sale's
// own transaction: when the sale is completed, has a buyer, and its product
// is a credit pack (products.credit_units), the buyer's balance grows by the
// pack's units and an obfuscation_credit_grants row records it. A sale
// grants at most once (the grant's sale_id is UNIQUE), so calling this again
// for the same sale, from a redelivered or a later event, changes nothing.
// It reports the units granted (0: none).
func GrantSaleCredits(ctx context.Context, tx pgx.Tx, saleID, eventID string) (int, error) {
	var units int
	err := tx.QueryRow(ctx, `WITH g AS (
			INSERT INTO obfuscation_credit_grants (developer_id, units, source, sale_id, stripe_event_id)
			SELECT s.buyer_id, p.credit_units, 'purchase', s.id, $2
			FROM sales s JOIN products p ON p.id = s.product_id
			WHERE s.id = $1 AND s.status = 'completed' AND s.buyer_id IS NOT NULL AND p.credit_units IS NOT NULL
			ON CONFLICT (sale_id) DO NOTHING
			RETURNING developer_id, units
		), b AS (
			INSERT INTO obfuscation_credits AS c (developer_id, balance) SELECT developer_id, units FROM g
			ON CONFLICT (developer_id) DO UPDATE SET balance = c.balance + excluded.balance, updated_at = now()
			RETURNING 1
		)
		SELECT coalesce((SELECT units FROM g), 0)`, saleID, nullString(eventID)).Scan(&units)
	return units, err
}

// Grant is a row of obfuscation_credit_grants.
type Grant struct {
	ID          string
	DeveloperID string
	Units       int
	Source      string
	SaleID      *string
	CreatedAt   time.Time
}

// AuditGrants calls record for each grant of Stripe event eventID whose
// audit row is not written yet, and marks it audited once record returned
// nil, in one transaction that holds the grants' row locks: concurrent
// deliveries of one event skip the grants another is auditing, so each is
// audited once. On an error nothing is marked, and the event's next
// delivery audits what is left.
func (p *Payments) AuditGrants(ctx context.Context, eventID string, record func(Grant) error) error {
	return p.db.InTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, developer_id, units, source, sale_id, created_at
			FROM obfuscation_credit_grants WHERE stripe_event_id = $1 AND audited_at IS NULL
			FOR UPDATE SKIP LOCKED`, eventID)
		if err != nil {
			return err
		}
		grants, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Grant, error) {
			var g Grant
			err := r.Scan(&g.ID, &g.DeveloperID, &g.Units, &g.Source, &g.SaleID, &g.CreatedAt)
			return g, err
		})
		if err != nil {
			return err
		}
		for _, g := range grants {
			if err := record(g); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE obfuscation_credit_grants SET audited_at = now() WHERE id = $1`, g.ID); err != nil {
				return err
			}
		}
		return nil
	})
}

// GrantCredits adds units to developerID's balance outside any sale,
// recording a grant row of source, in one transaction, and returns the new
// balance. No route or command calls it yet (tests and the benchmark fund
// developers with it); a caller that does must audit the grant.
func (m *Marketplace) GrantCredits(ctx context.Context, developerID string, units int, source string) (int, error) {
	var bal int
	err := m.db.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO obfuscation_credit_grants (developer_id, units, source, audited_at)
			VALUES ($1, $2, $3, now())`, developerID, units, source); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO obfuscation_credits AS c (developer_id, balance) VALUES ($1, $2)
			ON CONFLICT (developer_id) DO UPDATE SET balance = c.balance + excluded.balance, updated_at = now()
			RETURNING balance`, developerID, units).Scan(&bal)
	})
	return bal, MapError(err)
}
