package store

import (
	"context"
	"time"
)

// StoreDay is one UTC day of a store's sales, as GET /api/stores/:id/stats
// shows it.
type StoreDay struct {
	Date time.Time // midnight UTC
	// Sales are the sales paid that day (pending and failed payments left
	// out), whatever happened to them afterwards.
	Sales int
	// RevenueCents is their amount per currency (lowercase ISO code).
	RevenueCents map[string]int64
	// Refunds counts refund events recorded that day (full or partial),
	// Disputes the disputes opened.
	Refunds  int
	Disputes int
	// LicensesIssued counts the licenses the store's sales issued that day.
	LicensesIssued int
}

// StoreStats returns ownerID's store storeID's figures for each UTC day
// from from to to (both dates, inclusive), every day present, computed in
// one statement. Another owner's store is ErrNotFound.
func (m *Marketplace) StoreStats(ctx context.Context, ownerID, storeID string, from, to time.Time) ([]StoreDay, error) {
	if _, err := m.GetStore(ctx, ownerID, storeID); err != nil {
		return nil, err
	}
	rows, err := m.db.Pool.Query(ctx, `WITH days AS (
			SELECT generate_series($2::date, $3::date, interval '1 day')::date AS day
		), paid AS (
			SELECT (s.created_at AT TIME ZONE 'UTC')::date AS day, s.currency, count(*) AS n, sum(s.amount_cents) AS cents
			FROM sales s
			WHERE s.store_id = $1 AND s.status NOT IN ('pending', 'failed')
			  AND s.created_at >= ($2::date)::timestamp AT TIME ZONE 'UTC' AND s.created_at < ($3::date + 1)::timestamp AT TIME ZONE 'UTC'
			GROUP BY 1, 2
		), tx AS (
			SELECT (t.created_at AT TIME ZONE 'UTC')::date AS day,
				count(*) FILTER (WHERE t.type = 'refund') AS refunds, count(*) FILTER (WHERE t.type = 'dispute') AS disputes
			FROM payment_transactions t
			WHERE t.store_id = $1 AND t.type IN ('refund', 'dispute')
			  AND t.created_at >= ($2::date)::timestamp AT TIME ZONE 'UTC' AND t.created_at < ($3::date + 1)::timestamp AT TIME ZONE 'UTC'
			GROUP BY 1
		), lic AS (
			SELECT (l.created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
			FROM licenses l JOIN sales s ON s.id = l.sale_id
			WHERE s.store_id = $1
			  AND l.created_at >= ($2::date)::timestamp AT TIME ZONE 'UTC' AND l.created_at < ($3::date + 1)::timestamp AT TIME ZONE 'UTC'
			GROUP BY 1
		)
		SELECT d.day,
			coalesce((SELECT sum(p.n) FROM paid p WHERE p.day = d.day), 0)::int,
			coalesce((SELECT jsonb_object_agg(p.currency, p.cents) FROM paid p WHERE p.day = d.day), '{}'::jsonb),
			coalesce(tx.refunds, 0)::int, coalesce(tx.disputes, 0)::int, coalesce(lic.n, 0)::int
		FROM days d LEFT JOIN tx ON tx.day = d.day LEFT JOIN lic ON lic.day = d.day
		ORDER BY d.day`, storeID, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StoreDay
	for rows.Next() {
		var d StoreDay
		if err := rows.Scan(&d.Date, &d.Sales, &d.RevenueCents, &d.Refunds, &d.Disputes, &d.LicensesIssued); err != nil {
			return nil, err
		}
		d.Date = d.Date.UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}
