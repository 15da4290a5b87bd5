package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring"
)

// Subscription is the state of a developer's newest subscription
// (developer_subscriptions): the plan it pays for, Stripe's status and the
// end of the period paid for. Which limits it gives is the caller's rule
// (server/marketplace.Plans), computed from these three and the clock, so
// a lapsed subscription drops to the free plan at its period end without
// any timer.
type Subscription struct {
	ID               string
	Plan             string
	Status           string
	CurrentPeriodEnd *time.Time
	UpdatedAt        time.Time
}

// DeveloperSubscription returns developerID's newest subscription, nil when
// they have none, and the database's clock.
func (m *Marketplace) DeveloperSubscription(ctx context.Context, developerID string) (*Subscription, time.Time, error) {
	var s Subscription
	var now time.Time
	err := m.db.Pool.QueryRow(ctx, `SELECT d.id, d.plan, d.status, d.current_period_end, d.updated_at, now()
		FROM developer_subscriptions d WHERE d.developer_id = $1 ORDER BY d.updated_at DESC, d.id DESC LIMIT 1`, developerID).
		Scan(&s.ID, &s.Plan, &s.Status, &s.CurrentPeriodEnd, &s.UpdatedAt, &now)
	if errors.Is(err, pgx.ErrNoRows) {
		err = m.db.Pool.QueryRow(ctx, `SELECT now()`).Scan(&now)
		return nil, now, err
	}
	if err != nil {
		return nil, now, err
	}
	return &s, now, nil
}

// SubscriptionEvent is a customer.subscription.* or invoice.* event reduced
// to what developer_subscriptions records.
type SubscriptionEvent struct {
	EventID        string
	Type           string
	SubscriptionID string
	CustomerID     string     // "" when the event does not name one
	DeveloperID    string     // from the subscription's metadata; "" when none
	Plan           string     // "" keeps the recorded plan (invoice events)
	Status         string     // Stripe's subscription status
	PeriodEnd      *time.Time // nil keeps the recorded one
	// OnlyKnown: the event may update a recorded subscription but not
	// create one (invoices name no plan or developer).
	OnlyKnown bool
}

// SubscriptionChange is what a recorded event changed, for the audit trail:
// no Stripe id.
type SubscriptionChange struct {
	RowID       string
	DeveloperID string
	Plan        string
	Status      string
	Created     bool
}

func subscriptionLoc(rowID, column string) keyring.Location {
	return keyring.Location{Table: "developer_subscriptions", Column: column, RowID: rowID}
}

// RecordSubscription applies a subscription or invoice event once (the
// stripe_events ledger, as every webhook event). The subscription is found
// by its blind index; an unknown one is created for e.DeveloperID (a user
// that exists) unless e.OnlyKnown. A canceled subscription stays canceled:
// Stripe never revives one, so an older event delivered late cannot either.
// audit runs inside the transaction, before it commits: a change whose audit
// row cannot be written is rolled back (and Stripe delivers it again).
func (p *Payments) RecordSubscription(ctx context.Context, e SubscriptionEvent, audit func(SubscriptionChange) error) (EventResult, error) {
	res := EventProcessed
	bidx, err := p.kr.BlindIndex("developer_subscriptions", "stripe_subscription_id", []byte(e.SubscriptionID))
	if err != nil {
		return "", err
	}
	err = p.db.InTx(ctx, func(tx pgx.Tx) error {
		ok, err := claimEvent(ctx, tx, e.EventID, e.Type, EventProcessed)
		if err != nil || !ok {
			res = EventDuplicate
			return err
		}
		ch := SubscriptionChange{Status: e.Status}
		var status string
		err = tx.QueryRow(ctx, `SELECT id, developer_id, plan, status FROM developer_subscriptions
			WHERE stripe_subscription_bidx = $1 FOR UPDATE`, bidx).Scan(&ch.RowID, &ch.DeveloperID, &ch.Plan, &status)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if e.OnlyKnown || uuid.Validate(e.DeveloperID) != nil || e.Plan == "" {
				res = EventIgnored
				return setEventResult(ctx, tx, e.EventID, EventIgnored)
			}
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, e.DeveloperID).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				res = EventIgnored
				return setEventResult(ctx, tx, e.EventID, EventIgnored)
			}
			ch.RowID, ch.DeveloperID, ch.Plan, ch.Created = uuid.NewString(), e.DeveloperID, e.Plan, true
			// The developer's Stripe ids are personal values: sealed under
			// the developer's own key too, shredded with the account.
			subCT, err := SealPersonal(ctx, tx, p.kr, ch.DeveloperID, subscriptionLoc(ch.RowID, "stripe_subscription_id"), []byte(e.SubscriptionID))
			if err != nil {
				return err
			}
			var custCT []byte
			if e.CustomerID != "" {
				if custCT, err = SealPersonal(ctx, tx, p.kr, ch.DeveloperID, subscriptionLoc(ch.RowID, "stripe_customer_id"), []byte(e.CustomerID)); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO developer_subscriptions (id, developer_id, plan, status, stripe_customer_id,
					stripe_subscription_id, stripe_subscription_bidx, current_period_end)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
				ch.RowID, ch.DeveloperID, ch.Plan, e.Status, custCT, subCT, bidx, e.PeriodEnd); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if status == "canceled" && e.Status != "canceled" {
				res = EventIgnored
				return setEventResult(ctx, tx, e.EventID, EventIgnored)
			}
			if e.Plan != "" {
				ch.Plan = e.Plan
			}
			// An invoice's period never shortens the one recorded.
			if _, err := tx.Exec(ctx, `UPDATE developer_subscriptions SET plan = $2, status = $3,
					current_period_end = CASE WHEN $5 THEN greatest(current_period_end, $4::timestamptz) ELSE coalesce($4::timestamptz, current_period_end) END,
					updated_at = now()
				WHERE id = $1`, ch.RowID, ch.Plan, e.Status, e.PeriodEnd, e.OnlyKnown); err != nil {
				return err
			}
		}
		return audit(ch)
	})
	return res, MapError(err)
}
