package payments_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/vectabase/vectabase/server/payments"
)

// shop is a store with an account and one product, ready to sell.
type shop struct {
	owner, buyer, store, product, account string
}

func newShop(t *testing.T, e *env) shop { return newShopTB(t, e) }

func newShopTB(t testing.TB, e *env) shop {
	t.Helper()
	s := shop{owner: e.user(t), buyer: e.user(t), account: "acct_1" + strings.ReplaceAll(uuid.NewString(), "-", "")[:15]}
	s.store = e.storeOf(t, s.owner)
	e.onboarded(t, s.store, s.account, 500)
	s.product = e.product(t, s.owner, s.store, 2500, true)
	return s
}

// session is a completed Checkout session as Stripe sends it for a
// session our checkout route opened.
func (s shop) session(sessionID, pi string) map[string]any {
	return map[string]any{
		"id": sessionID, "object": "checkout.session", "mode": "payment", "status": "complete",
		"payment_status": "paid", "amount_total": 2500, "currency": "usd", "payment_intent": pi,
		"customer_details": map[string]any{"email": "buyer@example.com"},
		"metadata": map[string]any{
			"vectabase_product_id": s.product, "vectabase_store_id": s.store, "vectabase_buyer_id": s.buyer,
			"vectabase_roblox_user_id": "987654", "vectabase_platform_fee_cents": "125",
		},
	}
}

func newID(prefix string) string {
	return prefix + strings.ReplaceAll(uuid.NewString(), "-", "")[:24]
}

func (e *env) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// metric reads vectabase_stripe_webhooks_total{type,result} from the
// env's registry (0 when the series does not exist).
func (e *env) metric(typ, result string) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != "vectabase_stripe_webhooks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["type"] == typ && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func configWithSecret() payments.Config { return payments.Config{WebhookSecret: testWebhookSecret} }

// send signs and delivers an event, failing unless it is answered 200 with
// result want.
func (e *env) send(t *testing.T, payload []byte, want string) {
	t.Helper()
	r := e.deliver(t, payload, sign(payload, testWebhookSecret, time.Now()))
	if r.Status != 200 || r.Body["result"] != want {
		t.Fatalf("webhook = %d %s, want 200 result %s", r.Status, r.Raw, want)
	}
}

func TestWebhookCheckoutCompletedRecordsSaleAndTransactionOnce(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	s := newShop(t, e)
	evt, sess, pi := newID("evt_"), newID("cs_test_"), newID("pi_")
	payload := event(t, evt, "checkout.session.completed", s.session(sess, pi))
	e.send(t, payload, "processed")
	e.send(t, payload, "duplicate")

	ctx := context.Background()
	var saleID, status, currency string
	var buyer *string
	var email *string
	var roblox *int64
	var amount, fee int
	if err := e.db.Pool.QueryRow(ctx, `SELECT id, status, currency, buyer_id::text, buyer_email, roblox_user_id, amount_cents, platform_fee_cents
		FROM sales WHERE store_id = $1 AND product_id = $2`, s.store, s.product).Scan(&saleID, &status, &currency, &buyer, &email, &roblox, &amount, &fee); err != nil {
		t.Fatalf("read the sale: %v", err)
	}
	if status != "completed" || currency != "usd" || amount != 2500 || fee != 125 || buyer == nil || *buyer != s.buyer ||
		email == nil || *email != "buyer@example.com" || roblox == nil || *roblox != 987654 {
		t.Fatalf("sale = status %s %s amount %d fee %d buyer %v email %v roblox %v", status, currency, amount, fee, buyer, email, roblox)
	}
	if got := e.decrypt(t, "sales", "stripe_payment_intent_id", saleID); got != pi {
		t.Fatalf("sales.stripe_payment_intent_id decrypts to %q, want %q", got, pi)
	}
	var txID, typ, txStatus, eventID string
	var txAmount int
	if err := e.db.Pool.QueryRow(ctx, `SELECT id, type, status, stripe_event_id, amount_cents FROM payment_transactions WHERE sale_id = $1`, saleID).
		Scan(&txID, &typ, &txStatus, &eventID, &txAmount); err != nil {
		t.Fatalf("read the transaction: %v", err)
	}
	if typ != "checkout" || txStatus != "completed" || eventID != evt || txAmount != 2500 {
		t.Fatalf("transaction = %s %s %s %d", typ, txStatus, eventID, txAmount)
	}
	if got := e.decrypt(t, "payment_transactions", "stripe_session_id", txID); got != sess {
		t.Fatalf("payment_transactions.stripe_session_id decrypts to %q, want %q", got, sess)
	}
	if got := e.decrypt(t, "payment_transactions", "stripe_payment_intent_id", txID); got != pi {
		t.Fatalf("payment_transactions.stripe_payment_intent_id decrypts to %q, want %q", got, pi)
	}
	if n := e.count(t, `SELECT count(*) FROM sales`); n != 1 {
		t.Fatalf("sales = %d after a duplicate delivery, want 1", n)
	}
	if n := e.count(t, `SELECT count(*) FROM payment_transactions`); n != 1 {
		t.Fatalf("payment_transactions = %d after a duplicate delivery, want 1", n)
	}
	if e.metric("checkout.session.completed", "processed") != 1 || e.metric("checkout.session.completed", "duplicate") != 1 {
		t.Fatal("vectabase_stripe_webhooks_total does not count one processed and one duplicate delivery")
	}
	for _, id := range []string{pi, sess, evt, s.account} {
		if strings.Contains(e.logs.String(), id) {
			t.Fatalf("logs hold the full Stripe id %s", id[:4])
		}
	}

	// Another event for the same payment intent cannot make a second sale.
	e.send(t, event(t, newID("evt_"), "checkout.session.completed", s.session(newID("cs_test_"), pi)), "ignored")
	if n := e.count(t, `SELECT count(*) FROM sales`); n != 1 {
		t.Fatalf("sales = %d after a second event for one payment intent, want 1", n)
	}
}

func TestWebhookConcurrentDuplicatesInsertOnce(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	s := newShop(t, e)
	payload := event(t, newID("evt_"), "checkout.session.completed", s.session(newID("cs_test_"), newID("pi_")))
	header := sign(payload, testWebhookSecret, time.Now())
	const n = 8
	results := make(chan string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := e.deliver(t, payload, header)
			if r.Status != 200 {
				t.Errorf("concurrent delivery = %d %s", r.Status, r.Raw)
			}
			res, _ := r.Body["result"].(string)
			results <- res
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	got := map[string]int{}
	for r := range results {
		got[r]++
	}
	if got["processed"] != 1 || got["duplicate"] != n-1 {
		t.Fatalf("results = %v, want 1 processed and %d duplicate", got, n-1)
	}
	if c := e.count(t, `SELECT count(*) FROM sales`); c != 1 {
		t.Fatalf("sales = %d after %d concurrent deliveries, want 1", c, n)
	}
	if c := e.count(t, `SELECT count(*) FROM payment_transactions`); c != 1 {
		t.Fatalf("payment_transactions = %d after %d concurrent deliveries, want 1", c, n)
	}
}

func TestWebhookChargeRefunded(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	s := newShop(t, e)
	pi := newID("pi_")
	e.send(t, event(t, newID("evt_"), "checkout.session.completed", s.session(newID("cs_test_"), pi)), "processed")
	charge := func(refunded int, full bool) map[string]any {
		return map[string]any{"id": newID("ch_"), "object": "charge", "amount": 2500, "amount_refunded": refunded,
			"refunded": full, "currency": "usd", "payment_intent": pi}
	}
	status := func() string {
		var st string
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT status FROM sales`).Scan(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}

	partial := event(t, newID("evt_"), "charge.refunded", charge(1000, false))
	e.send(t, partial, "processed")
	if st := status(); st != "partially_refunded" {
		t.Fatalf("sale status after a partial refund = %s", st)
	}
	full := event(t, newID("evt_"), "charge.refunded", charge(2500, true))
	e.send(t, full, "processed")
	e.send(t, full, "duplicate")
	if st := status(); st != "refunded" {
		t.Fatalf("sale status after a full refund = %s", st)
	}
	rows, err := e.db.Pool.Query(context.Background(), `SELECT t.id, t.amount_cents, t.status FROM payment_transactions t
		JOIN sales x ON x.id = t.sale_id WHERE t.type = 'refund' ORDER BY t.amount_cents`)
	if err != nil {
		t.Fatal(err)
	}
	type refund struct {
		id     string
		amount int
		status string
	}
	var refunds []refund
	for rows.Next() {
		var r refund
		if err := rows.Scan(&r.id, &r.amount, &r.status); err != nil {
			t.Fatal(err)
		}
		refunds = append(refunds, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(refunds) != 2 || refunds[0].amount != 1000 || refunds[1].amount != 2500 || refunds[1].status != "refunded" {
		t.Fatalf("refund transactions = %+v, want 1000 (partial) and 2500 (refunded)", refunds)
	}
	if got := e.decrypt(t, "payment_transactions", "stripe_payment_intent_id", refunds[1].id); got != pi {
		t.Fatalf("refund's payment intent decrypts to %q, want %q", got, pi)
	}

	// A refund of a payment this server never recorded is acknowledged.
	other := charge(100, true)
	other["payment_intent"] = newID("pi_")
	e.send(t, event(t, newID("evt_"), "charge.refunded", other), "ignored")
}

func TestWebhookAccountUpdated(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	owner := e.user(t)
	storeID := e.storeOf(t, owner)
	account := newID("acct_")
	if _, err := e.pay.SetStripeAccount(context.Background(), storeID, account); err != nil {
		t.Fatal(err)
	}
	onboarded := func() bool {
		var b bool
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT stripe_onboarded FROM stores WHERE id = $1`, storeID).Scan(&b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	acct := func(charges, details bool) map[string]any {
		return map[string]any{"id": account, "object": "account", "charges_enabled": charges, "details_submitted": details, "payouts_enabled": charges}
	}
	e.send(t, event(t, newID("evt_"), "account.updated", acct(false, true)), "processed")
	if onboarded() {
		t.Fatal("stripe_onboarded with charges disabled")
	}
	e.send(t, event(t, newID("evt_"), "account.updated", acct(true, true)), "processed")
	if !onboarded() {
		t.Fatal("stripe_onboarded is false after the account could take charges")
	}
	e.send(t, event(t, newID("evt_"), "account.updated", acct(false, true)), "processed")
	if onboarded() {
		t.Fatal("stripe_onboarded stays true after Stripe disabled charges")
	}
	unknown := acct(true, true)
	unknown["id"] = newID("acct_")
	e.send(t, event(t, newID("evt_"), "account.updated", unknown), "ignored")
}

func TestWebhookSignature(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	s := newShop(t, e)
	payload := event(t, newID("evt_"), "checkout.session.completed", s.session(newID("cs_test_"), newID("pi_")))
	tampered := []byte(strings.Replace(string(payload), `"amount_total":2500`, `"amount_total":1`, 1))
	if string(tampered) == string(payload) {
		t.Fatal("tampering changed nothing")
	}
	for _, c := range []struct {
		name    string
		payload []byte
		header  string
	}{
		{"tampered body", tampered, sign(payload, testWebhookSecret, time.Now())},
		{"wrong secret", payload, sign(payload, "whsec_not_ours", time.Now())},
		{"expired timestamp", payload, sign(payload, testWebhookSecret, time.Now().Add(-6*time.Minute))},
		{"no signature", payload, ""},
		{"garbage header", payload, "t=abc,v1=zz"},
	} {
		r := e.deliver(t, c.payload, c.header)
		checkErrorBody(t, c.name, r, 400, "BAD_REQUEST")
		if strings.Contains(string(r.Raw), testWebhookSecret) {
			t.Fatalf("%s: the answer holds the webhook secret", c.name)
		}
	}
	if n := e.count(t, `SELECT count(*) FROM sales`); n != 0 {
		t.Fatalf("sales = %d after only badly signed deliveries", n)
	}
	if n := e.count(t, `SELECT count(*) FROM stripe_events`); n != 0 {
		t.Fatalf("stripe_events = %d after only badly signed deliveries", n)
	}
	if got := e.metric("unknown", "invalid_signature"); got != 5 {
		t.Fatalf("invalid_signature count = %v, want 5", got)
	}
	// Within the tolerance the same event is accepted.
	r := e.deliver(t, payload, sign(payload, testWebhookSecret, time.Now().Add(-4*time.Minute)))
	if r.Status != 200 {
		t.Fatalf("delivery signed 4 minutes ago = %d %s, want 200", r.Status, r.Raw)
	}
	if strings.Contains(e.logs.String(), testWebhookSecret) {
		t.Fatal("logs hold the webhook secret")
	}
}

func TestWebhookUnknownTypeIsAcknowledgedAndCounted(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	payload := event(t, newID("evt_"), "customer.created", map[string]any{"id": newID("cus_"), "object": "customer"})
	e.send(t, payload, "ignored")
	e.send(t, payload, "duplicate")
	if e.metric("other", "ignored") != 1 || e.metric("other", "duplicate") != 1 {
		t.Fatal("unknown event types are not counted under type=other")
	}
	// A session this server did not open (no metadata) changes nothing.
	foreign := map[string]any{"id": newID("cs_test_"), "object": "checkout.session", "amount_total": 100, "currency": "usd", "payment_status": "paid"}
	e.send(t, event(t, newID("evt_"), "checkout.session.completed", foreign), "ignored")
	if n := e.count(t, `SELECT count(*) FROM sales`); n != 0 {
		t.Fatalf("sales = %d after a foreign session", n)
	}
}

// FuzzWebhook: whatever a correctly signed body holds, the webhook answers
// 200 or a 4xx in the contract's format, never a 500 or a panic.
func FuzzWebhook(f *testing.F) {
	e := newEnv(f, configWithSecret(), nil)
	product := uuid.NewString()
	f.Add([]byte(`{}`))
	f.Add([]byte(`not json`))
	f.Add([]byte(`{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"id":"cs_1","metadata":{"vectabase_product_id":"` + product + `","vectabase_store_id":"` + product + `"},"amount_total":1,"currency":"usd"}}}`))
	f.Add([]byte(`{"id":"evt_2","type":"charge.refunded","data":{"object":{"payment_intent":"pi_1","amount_refunded":-5,"currency":"usd"}}}`))
	f.Add([]byte(`{"id":"evt_3","type":"account.updated","data":{"object":"acct_1"}}`))
	f.Add([]byte(`{"id":"evt_6","type":"charge.dispute.created","data":{"object":{"payment_intent":"pi_1","amount":100,"currency":"usd"}}}`))
	f.Add([]byte(`{"id":"evt_7","type":"charge.dispute.created","data":{"object":{"payment_intent":{"id":"pi_1"},"amount":-1,"currency":"USD"}}}`))
	f.Add([]byte(`{"id":"evt_8","type":"checkout.session.completed","data":{"object":{"id":"cs_2","payment_status":"paid","metadata":{"vectabase_product_id":"` + product + `","vectabase_store_id":"` + product + `","vectabase_roblox_user_id":"1","vectabase_discord_id":"x\u0000"},"amount_total":1,"currency":"usd"}}}`))
	f.Add([]byte(`{"id":"evt_4","type":"account.updated","data":null}`))
	f.Add([]byte(`{"id":"evt\u0000","type":"x\u0000"}`))
	f.Add([]byte(`{"id":"evt_5","type":"checkout.session.completed","data":{"object":{"id":"cs_1","customer_details":{"email":"a\u0000b"},"amount_total":99999999999,"currency":"usd"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := e.deliver(t, body, sign(body, testWebhookSecret, time.Now()))
		if r.Status != 200 && (r.Status < 400 || r.Status >= 500) {
			t.Fatalf("signed body %q = %d %s, want 200 or a 4xx", body, r.Status, r.Raw)
		}
		if r.Status != 200 && r.Body["error"] == nil {
			t.Fatalf("signed body %q = %d without the error body", body, r.Status)
		}
		if u := e.deliver(t, body, "t=1,v1=00"); u.Status != 400 {
			t.Fatalf("unsigned body %q = %d, want 400", body, u.Status)
		}
	})
}

// Distinct events naming one payment intent, delivered at once, make one
// sale: the rest are acknowledged as ignored.
func TestWebhookConcurrentEventsForOnePaymentIntentMakeOneSale(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	s := newShop(t, e)
	pi := newID("pi_")
	const n = 6
	var wg sync.WaitGroup
	results := make(chan string, n)
	start := make(chan struct{})
	for range n {
		payload := event(t, newID("evt_"), "checkout.session.completed", s.session(newID("cs_test_"), pi))
		header := sign(payload, testWebhookSecret, time.Now())
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := e.deliver(t, payload, header)
			res, _ := r.Body["result"].(string)
			results <- res
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	got := map[string]int{}
	for r := range results {
		got[r]++
	}
	if got["processed"] != 1 || got["ignored"] != n-1 {
		t.Fatalf("results = %v, want 1 processed and %d ignored", got, n-1)
	}
	if c := e.count(t, `SELECT count(*) FROM sales`); c != 1 {
		t.Fatalf("sales = %d, want 1", c)
	}
}

// A Connect endpoint signs with its own secret: every listed secret is
// accepted, anything else is not.
func TestWebhookAcceptsEachListedSecret(t *testing.T) {
	t.Parallel()
	const connect = "whsec_connect_endpoint"
	e := newEnv(t, payments.Config{WebhookSecret: testWebhookSecret + ", " + connect}, nil)
	for _, secret := range []string{testWebhookSecret, connect} {
		payload := event(t, newID("evt_"), "customer.created", map[string]any{"id": newID("cus_")})
		if r := e.deliver(t, payload, sign(payload, secret, time.Now())); r.Status != 200 {
			t.Fatalf("signed with a listed secret = %d %s, want 200", r.Status, r.Raw)
		}
	}
	payload := event(t, newID("evt_"), "customer.created", map[string]any{"id": newID("cus_")})
	checkErrorBody(t, "unlisted secret", e.deliver(t, payload, sign(payload, "whsec_other", time.Now())), 400, "BAD_REQUEST")
	r := e.deliver(t, payload, sign(payload, connect, time.Now().Add(-10*time.Minute)))
	checkErrorBody(t, "expired under the second secret", r, 400, "BAD_REQUEST")
}

// failingVault cannot be read.
type failingVault struct{}

func (failingVault) Credential(context.Context, string, string) (string, error) {
	return "", errors.New("keyring sealed")
}

func TestVaultFailureIsUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, payments.Config{}, failingVault{})
	payload := event(t, newID("evt_"), "customer.created", map[string]any{"id": newID("cus_")})
	checkErrorBody(t, "webhook", e.deliver(t, payload, sign(payload, testWebhookSecret, time.Now())), 503, "UNAVAILABLE")
	checkErrorBody(t, "checkout", e.call(t, "POST", "/api/stripe/checkout", "", map[string]any{"productId": uuid.NewString(), "successUrl": "https://a.example/", "cancelUrl": "https://a.example/"}), 503, "UNAVAILABLE")
}

// A checkout paid by a delayed method completes unpaid: the sale waits as
// pending until the async payment event settles it, once.
func TestWebhookAsyncPaymentSettlesPendingSale(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	s := newShop(t, e)
	status := func() string {
		var st string
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT status FROM sales`).Scan(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	for _, c := range []struct{ typ, want string }{
		{"checkout.session.async_payment_succeeded", "completed"},
		{"checkout.session.async_payment_failed", "failed"},
	} {
		if _, err := e.db.Pool.Exec(context.Background(), `DELETE FROM payment_transactions; DELETE FROM sales`); err != nil {
			t.Fatal(err)
		}
		sess, pi := newID("cs_test_"), newID("pi_")
		unpaid := s.session(sess, pi)
		unpaid["payment_status"] = "unpaid"
		e.send(t, event(t, newID("evt_"), "checkout.session.completed", unpaid), "processed")
		if st := status(); st != "pending" {
			t.Fatalf("unpaid session made a %s sale, want pending", st)
		}
		paid := s.session(sess, pi)
		settle := event(t, newID("evt_"), c.typ, paid)
		e.send(t, settle, "processed")
		e.send(t, settle, "duplicate")
		if st := status(); st != c.want {
			t.Fatalf("%s: sale status = %s, want %s", c.typ, st, c.want)
		}
		if n := e.count(t, `SELECT count(*) FROM payment_transactions WHERE status = $1`, c.want); n != 1 {
			t.Fatalf("%s: %d transactions with status %s, want 1", c.typ, n, c.want)
		}
		// A settled sale is not settled again by another event.
		e.send(t, event(t, newID("evt_"), c.typ, paid), "ignored")
	}
}
