package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring"
)

// Payments is the repository of the Stripe area: stores' Connect accounts,
// and the sales and payment transactions Stripe's webhooks record. Every
// Stripe id it writes (stores.stripe_account_id, sales.stripe_payment_intent_id,
// payment_transactions.stripe_session_id and stripe_payment_intent_id) is
// encrypted through the keyring, bound to its row; the two the webhook has
// to find rows by carry a blind index beside them.
type Payments struct {
	db *DB
	kr *keyring.Keyring

	onLicense func(ctx context.Context, ch LicenseChange) error
}

// NewPayments returns the payments repository on db, encrypting with kr.
func NewPayments(db *DB, kr *keyring.Keyring) *Payments {
	return &Payments{db: db, kr: kr}
}

// EventResult says what recording a webhook event did.
type EventResult string

// The results of recording an event; they are also the `result` label of
// vectabase_stripe_webhooks_total.
const (
	EventProcessed EventResult = "processed" // its effects are recorded
	EventDuplicate EventResult = "duplicate" // the event id was processed before
	EventIgnored   EventResult = "ignored"   // nothing of ours it applies to
)

// PaymentStore is what the Stripe area needs of a store. AccountID is the
// decrypted Connect account id, "" when the store has none: callers mask it
// before it leaves the process.
type PaymentStore struct {
	ID            string
	OwnerID       string
	AccountID     string
	Onboarded     bool
	CommissionBps int
}

func accountLoc(storeID string) keyring.Location {
	return keyring.Location{Table: "stores", Column: "stripe_account_id", RowID: storeID}
}

func (p *Payments) scanPaymentStore(ctx context.Context, row pgx.Row) (PaymentStore, error) {
	var s PaymentStore
	var acct []byte
	if err := row.Scan(&s.ID, &s.OwnerID, &acct, &s.Onboarded, &s.CommissionBps); err != nil {
		return s, MapError(err)
	}
	if acct != nil {
		pt, err := p.kr.Decrypt(ctx, accountLoc(s.ID), acct)
		if err != nil {
			return s, err
		}
		s.AccountID = string(pt)
	}
	return s, nil
}

// OwnedPaymentStore returns ownerID's store storeID. Another owner's store,
// or a store id that is not a UUID, is ErrNotFound.
func (p *Payments) OwnedPaymentStore(ctx context.Context, ownerID, storeID string) (PaymentStore, error) {
	if uuid.Validate(storeID) != nil || uuid.Validate(ownerID) != nil {
		return PaymentStore{}, ErrNotFound
	}
	row := p.db.Pool.QueryRow(ctx, `SELECT id, owner_id, stripe_account_id, stripe_onboarded, commission_bps
		FROM stores WHERE id = $1 AND owner_id = $2`, storeID, ownerID)
	return p.scanPaymentStore(ctx, row)
}

// SetStripeAccount links accountID to storeID unless the store already has
// an account, and returns the account the store has afterwards: when two
// onboardings race, both callers get the winner's account.
func (p *Payments) SetStripeAccount(ctx context.Context, storeID, accountID string) (string, error) {
	ct, err := p.kr.Encrypt(ctx, accountLoc(storeID), []byte(accountID))
	if err != nil {
		return "", err
	}
	bidx, err := p.kr.BlindIndex("stores", "stripe_account_id", []byte(accountID))
	if err != nil {
		return "", err
	}
	tag, err := p.db.Pool.Exec(ctx, `UPDATE stores SET stripe_account_id = $2, stripe_account_bidx = $3, updated_at = now()
		WHERE id = $1 AND stripe_account_id IS NULL`, storeID, ct, bidx)
	if err != nil {
		return "", err
	}
	if tag.RowsAffected() == 1 {
		return accountID, nil
	}
	row := p.db.Pool.QueryRow(ctx, `SELECT id, owner_id, stripe_account_id, stripe_onboarded, commission_bps FROM stores WHERE id = $1`, storeID)
	s, err := p.scanPaymentStore(ctx, row)
	if err != nil {
		return "", err
	}
	if s.AccountID == "" {
		return "", errors.New("store: stripe account not set")
	}
	return s.AccountID, nil
}

// SetOnboarded records whether storeID's account can take payments.
func (p *Payments) SetOnboarded(ctx context.Context, storeID string, onboarded bool) error {
	_, err := p.db.Pool.Exec(ctx, `UPDATE stores SET stripe_onboarded = $2, updated_at = now()
		WHERE id = $1 AND stripe_onboarded IS DISTINCT FROM $2`, storeID, onboarded)
	return err
}

// CheckoutProduct is a product as checkout needs it, with its store.
type CheckoutProduct struct {
	ID         string
	Name       string
	PriceCents int64
	Currency   string
	Active     bool
	Store      PaymentStore
	// CreditUnits is set when the product is a credit pack (credits.go).
	CreditUnits *int
	// Licenses is true when a purchase issues a license (the product is
	// linked to a whitelist system or a developer product).
	Licenses bool
	// SystemFull is true when the linked whitelist system already holds
	// max_users active licenses.
	SystemFull bool
}

// CheckoutProduct returns product productID with its store. A product id
// that is not a UUID is ErrNotFound.
func (p *Payments) CheckoutProduct(ctx context.Context, productID string) (CheckoutProduct, error) {
	var c CheckoutProduct
	if uuid.Validate(productID) != nil {
		return c, ErrNotFound
	}
	var acct []byte
	err := p.db.Pool.QueryRow(ctx, `SELECT p.id, p.name, p.price_cents, p.currency, p.is_active,
			s.id, s.owner_id, s.stripe_account_id, s.stripe_onboarded, s.commission_bps, p.credit_units,
			num_nonnulls(p.whitelist_system_id, p.developer_product_id) > 0,
			coalesce((SELECT w.max_users <= (SELECT count(*) FROM whitelist_users u WHERE u.system_id = w.id AND u.status = 'active')
				FROM whitelist_systems w WHERE w.id = p.whitelist_system_id), false)
		FROM products p JOIN stores s ON s.id = p.store_id WHERE p.id = $1`, productID).
		Scan(&c.ID, &c.Name, &c.PriceCents, &c.Currency, &c.Active,
			&c.Store.ID, &c.Store.OwnerID, &acct, &c.Store.Onboarded, &c.Store.CommissionBps, &c.CreditUnits, &c.Licenses, &c.SystemFull)
	if err != nil {
		return c, MapError(err)
	}
	if acct != nil {
		pt, err := p.kr.Decrypt(ctx, accountLoc(c.Store.ID), acct)
		if err != nil {
			return c, err
		}
		c.Store.AccountID = string(pt)
	}
	return c, nil
}

// claimEvent records eventID as processed inside tx. It reports false when
// the id was processed before: a concurrent delivery of the same id blocks
// on the primary key until the first transaction ends, then conflicts, so
// an event's effects are written once however often it arrives.
func claimEvent(ctx context.Context, tx pgx.Tx, eventID, typ string, result EventResult) (bool, error) {
	tag, err := tx.Exec(ctx, `INSERT INTO stripe_events (id, type, result) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`, eventID, typ, string(result))
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

func setEventResult(ctx context.Context, tx pgx.Tx, eventID string, result EventResult) error {
	_, err := tx.Exec(ctx, `UPDATE stripe_events SET result = $2 WHERE id = $1`, eventID, string(result))
	return err
}

// RecordIgnored marks an event of a type this server does not act on as
// processed, so that its redeliveries count as duplicates.
func (p *Payments) RecordIgnored(ctx context.Context, eventID, typ string) (EventResult, error) {
	res := EventIgnored
	err := p.db.InTx(ctx, func(tx pgx.Tx) error {
		ok, err := claimEvent(ctx, tx, eventID, typ, EventIgnored)
		if !ok && err == nil {
			res = EventDuplicate
		}
		return err
	})
	return res, err
}

// CompletedCheckout is a checkout.session.completed event reduced to what
// a sale records. ProductID and StoreID come from the metadata the checkout
// route put on the session.
type CompletedCheckout struct {
	EventID         string
	SessionID       string
	PaymentIntentID string
	ProductID       string
	StoreID         string
	BuyerID         string // "" for an anonymous buyer
	BuyerEmail      string
	RobloxUserID    *int64
	DiscordID       string // "" when the buyer gave none
	AmountCents     int64
	FeeCents        int64
	Currency        string
	Status          string // sales.status: completed, or pending until paid
	// LicenseKey is the key a license issued for this sale gets, when the
	// product licenses anything (the caller generates one for every
	// checkout; it is stored only if a license is issued).
	LicenseKey string
}

// RecordCheckout records a completed checkout once: a sales row and a
// payment_transactions row of type checkout, and when it is paid the sale's
// effects (completeSale: the buyer's license) in the same transaction. A
// session whose product is not in the named store, or whose payment intent
// or session already has a sale, is EventIgnored.
func (p *Payments) RecordCheckout(ctx context.Context, e CompletedCheckout) (EventResult, error) {
	res := EventProcessed
	err := p.db.InTx(ctx, func(tx pgx.Tx) error {
		ok, err := claimEvent(ctx, tx, e.EventID, "checkout.session.completed", EventProcessed)
		if err != nil || !ok {
			res = EventDuplicate
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM products WHERE id = $1 AND store_id = $2)`, e.ProductID, e.StoreID).Scan(&exists); err != nil {
			return err
		}
		var piBidx []byte
		if e.PaymentIntentID != "" {
			if piBidx, err = p.kr.BlindIndex("sales", "stripe_payment_intent_id", []byte(e.PaymentIntentID)); err != nil {
				return err
			}
		}
		sessionHash, err := p.SessionHash(e.SessionID)
		if err != nil {
			return err
		}
		if exists {
			// Serialise sales of one payment intent (or, without one, of
			// one session): two different events naming it must not both
			// find it unsold.
			lock := piBidx
			if lock == nil {
				lock = sessionHash
			}
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended(encode($1, 'hex'), 0))`, lock); err != nil {
				return err
			}
			var taken bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sales WHERE stripe_payment_intent_bidx = $1 OR stripe_session_hash = $2)`,
				piBidx, sessionHash).Scan(&taken); err != nil {
				return err
			}
			exists = !taken
		}
		if !exists {
			res = EventIgnored
			return setEventResult(ctx, tx, e.EventID, EventIgnored)
		}
		saleID := uuid.NewString()
		salePI, err := p.encryptOptional(ctx, keyring.Location{Table: "sales", Column: "stripe_payment_intent_id", RowID: saleID}, e.PaymentIntentID)
		if err != nil {
			return err
		}
		var buyer *string
		if e.BuyerID != "" {
			// A buyer deleted since checkout leaves the sale anonymous.
			var found bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, e.BuyerID).Scan(&found); err != nil {
				return err
			}
			if found {
				buyer = &e.BuyerID
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sales (id, product_id, store_id, buyer_id, buyer_email, roblox_user_id,
				amount_cents, platform_fee_cents, currency, status, stripe_payment_intent_id, stripe_payment_intent_bidx, stripe_session_hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			saleID, e.ProductID, e.StoreID, buyer, nullString(e.BuyerEmail), e.RobloxUserID,
			e.AmountCents, e.FeeCents, e.Currency, e.Status, salePI, piBidx, sessionHash); err != nil {
			return err
		}
		if err := p.insertTransaction(ctx, tx, transaction{
			saleID: saleID, storeID: e.StoreID, eventID: e.EventID, sessionID: e.SessionID,
			paymentIntentID: e.PaymentIntentID, typ: "checkout", amount: e.AmountCents, currency: e.Currency, status: e.Status,
		}); err != nil {
			return err
		}
		if e.Status != "completed" {
			// Paid later: checkout.session.async_payment_succeeded
			// completes it (RecordSettlement).
			return nil
		}
		return p.completeSale(ctx, tx, paidSale{ID: saleID, ProductID: e.ProductID, BuyerID: buyer,
			RobloxUserID: e.RobloxUserID, DiscordID: e.DiscordID, LicenseKey: e.LicenseKey, EventID: e.EventID})
	})
	return res, MapError(err)
}

// Refund is a charge.refunded event: the payment intent the charge belongs
// to and how much of it has been refunded so far.
type Refund struct {
	EventID         string
	PaymentIntentID string
	AmountRefunded  int64
	Currency        string
	Full            bool
}

// RecordRefund marks the sale paid by e.PaymentIntentID refunded (fully or
// partially) and records a payment_transactions row of type refund, once.
// A payment intent with no sale here is EventIgnored.
func (p *Payments) RecordRefund(ctx context.Context, e Refund) (EventResult, error) {
	res := EventProcessed
	err := p.db.InTx(ctx, func(tx pgx.Tx) error {
		ok, err := claimEvent(ctx, tx, e.EventID, "charge.refunded", EventProcessed)
		if err != nil || !ok {
			res = EventDuplicate
			return err
		}
		status := "partially_refunded"
		if e.Full {
			status = "refunded"
		}
		all, saleID, storeID, err := p.markIntentSales(ctx, tx, e.PaymentIntentID, status)
		if err != nil {
			return err
		}
		if saleID == "" {
			res = EventIgnored
			return setEventResult(ctx, tx, e.EventID, EventIgnored)
		}
		if err := p.insertTransaction(ctx, tx, transaction{
			saleID: saleID, storeID: storeID, eventID: e.EventID, paymentIntentID: e.PaymentIntentID,
			typ: "refund", amount: e.AmountRefunded, currency: e.Currency, status: status,
		}); err != nil {
			return err
		}
		if !e.Full {
			// A partial refund keeps what was bought.
			return nil
		}
		return p.revokeSaleLicenses(ctx, tx, all, "refund", e.EventID)
	})
	return res, MapError(err)
}

// markIntentSales sets the status of every sale paid by paymentIntentID
// (sales imported from Supabase may share one) and returns their ids and
// the oldest one with its store, which the refund or dispute is recorded
// against. No sale: all is empty.
func (p *Payments) markIntentSales(ctx context.Context, tx pgx.Tx, paymentIntentID, status string) (all []string, oldestID, oldestStore string, err error) {
	bidx, err := p.kr.BlindIndex("sales", "stripe_payment_intent_id", []byte(paymentIntentID))
	if err != nil {
		return nil, "", "", err
	}
	rows, err := tx.Query(ctx, `UPDATE sales SET status = $2 WHERE stripe_payment_intent_bidx = $1 RETURNING id, store_id, created_at`, bidx, status)
	if err != nil {
		return nil, "", "", err
	}
	defer rows.Close()
	var first time.Time
	for rows.Next() {
		var id, st string
		var at time.Time
		if err := rows.Scan(&id, &st, &at); err != nil {
			return nil, "", "", err
		}
		all = append(all, id)
		if oldestID == "" || at.Before(first) {
			oldestID, oldestStore, first = id, st, at
		}
	}
	return all, oldestID, oldestStore, rows.Err()
}

// Dispute is a charge.dispute.created event: the buyer's bank disputes the
// payment of PaymentIntentID.
type Dispute struct {
	EventID         string
	PaymentIntentID string
	AmountCents     int64
	Currency        string
}

// RecordDispute marks the sales paid by e.PaymentIntentID disputed, revokes
// the licenses they issued and records a payment_transactions row of type
// dispute, once. A payment intent with no sale here is EventIgnored.
func (p *Payments) RecordDispute(ctx context.Context, e Dispute) (EventResult, error) {
	res := EventProcessed
	err := p.db.InTx(ctx, func(tx pgx.Tx) error {
		ok, err := claimEvent(ctx, tx, e.EventID, "charge.dispute.created", EventProcessed)
		if err != nil || !ok {
			res = EventDuplicate
			return err
		}
		all, saleID, storeID, err := p.markIntentSales(ctx, tx, e.PaymentIntentID, "disputed")
		if err != nil {
			return err
		}
		if len(all) == 0 {
			res = EventIgnored
			return setEventResult(ctx, tx, e.EventID, EventIgnored)
		}
		if err := p.insertTransaction(ctx, tx, transaction{
			saleID: saleID, storeID: storeID, eventID: e.EventID, paymentIntentID: e.PaymentIntentID,
			typ: "dispute", amount: e.AmountCents, currency: e.Currency, status: "disputed",
		}); err != nil {
			return err
		}
		return p.revokeSaleLicenses(ctx, tx, all, "dispute", e.EventID)
	})
	return res, MapError(err)
}

// SettledCheckout is a checkout.session.async_payment_succeeded or
// async_payment_failed event: a pending sale's delayed payment settled.
type SettledCheckout struct {
	EventID         string
	Type            string
	SessionID       string
	PaymentIntentID string
	AmountCents     int64
	Currency        string
	Status          string // completed or failed
	DiscordID       string // from the session's metadata, as at checkout
	LicenseKey      string // as CompletedCheckout.LicenseKey
}

// RecordSettlement moves the pending sale paid by e.PaymentIntentID to
// e.Status and records a payment_transactions row, once. A payment intent
// with no pending sale here is EventIgnored.
func (p *Payments) RecordSettlement(ctx context.Context, e SettledCheckout) (EventResult, error) {
	res := EventProcessed
	err := p.db.InTx(ctx, func(tx pgx.Tx) error {
		ok, err := claimEvent(ctx, tx, e.EventID, e.Type, EventProcessed)
		if err != nil || !ok {
			res = EventDuplicate
			return err
		}
		bidx, err := p.kr.BlindIndex("sales", "stripe_payment_intent_id", []byte(e.PaymentIntentID))
		if err != nil {
			return err
		}
		var saleID, storeID, productID string
		var buyer *string
		var roblox *int64
		err = tx.QueryRow(ctx, `UPDATE sales SET status = $2 WHERE id = (
				SELECT id FROM sales WHERE stripe_payment_intent_bidx = $1 AND status = 'pending' ORDER BY created_at LIMIT 1
			) RETURNING id, store_id, product_id, buyer_id, roblox_user_id`, bidx, e.Status).Scan(&saleID, &storeID, &productID, &buyer, &roblox)
		if errors.Is(err, pgx.ErrNoRows) {
			res = EventIgnored
			return setEventResult(ctx, tx, e.EventID, EventIgnored)
		}
		if err != nil {
			return err
		}
		if err := p.insertTransaction(ctx, tx, transaction{
			saleID: saleID, storeID: storeID, eventID: e.EventID, sessionID: e.SessionID, paymentIntentID: e.PaymentIntentID,
			typ: "checkout", amount: e.AmountCents, currency: e.Currency, status: e.Status,
		}); err != nil {
			return err
		}
		if e.Status != "completed" {
			return nil
		}
		return p.completeSale(ctx, tx, paidSale{ID: saleID, ProductID: productID, BuyerID: buyer,
			RobloxUserID: roblox, DiscordID: e.DiscordID, LicenseKey: e.LicenseKey, EventID: e.EventID})
	})
	return res, MapError(err)
}

// AccountUpdate is an account.updated event: whether the Connect account
// can now take payments.
type AccountUpdate struct {
	EventID   string
	AccountID string
	Onboarded bool
}

// RecordAccountUpdate sets stripe_onboarded on the stores linked to
// e.AccountID, once. An account no store is linked to is EventIgnored.
func (p *Payments) RecordAccountUpdate(ctx context.Context, e AccountUpdate) (EventResult, error) {
	res := EventProcessed
	err := p.db.InTx(ctx, func(tx pgx.Tx) error {
		ok, err := claimEvent(ctx, tx, e.EventID, "account.updated", EventProcessed)
		if err != nil || !ok {
			res = EventDuplicate
			return err
		}
		bidx, err := p.kr.BlindIndex("stores", "stripe_account_id", []byte(e.AccountID))
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE stores SET stripe_onboarded = $2, updated_at = now() WHERE stripe_account_bidx = $1`, bidx, e.Onboarded)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			res = EventIgnored
			return setEventResult(ctx, tx, e.EventID, EventIgnored)
		}
		return nil
	})
	return res, MapError(err)
}

type transaction struct {
	saleID, storeID, eventID   string
	sessionID, paymentIntentID string
	typ                        string
	amount                     int64
	currency, status           string
}

// insertTransaction writes a payment_transactions row; raw_event stays
// NULL, because the raw event carries Stripe ids and customer details in
// clear.
func (p *Payments) insertTransaction(ctx context.Context, tx pgx.Tx, t transaction) error {
	id := uuid.NewString()
	session, err := p.encryptOptional(ctx, keyring.Location{Table: "payment_transactions", Column: "stripe_session_id", RowID: id}, t.sessionID)
	if err != nil {
		return err
	}
	pi, err := p.encryptOptional(ctx, keyring.Location{Table: "payment_transactions", Column: "stripe_payment_intent_id", RowID: id}, t.paymentIntentID)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO payment_transactions (id, sale_id, store_id, stripe_event_id, stripe_session_id,
			stripe_payment_intent_id, type, amount_cents, currency, status)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		id, t.saleID, t.storeID, t.eventID, session, pi, t.typ, t.amount, t.currency, t.status)
	return err
}

// encryptOptional encrypts v at loc; an empty v stays NULL.
func (p *Payments) encryptOptional(ctx context.Context, loc keyring.Location, v string) ([]byte, error) {
	if v == "" {
		return nil, nil
	}
	return p.kr.Encrypt(ctx, loc, []byte(v))
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
